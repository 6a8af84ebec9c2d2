"""The console in a real browser (issue 19): headless Chromium driven by Selenium.

Steps, each with a screenshot under ``tests/screenshots/`` (not committed): an operator logs
in and sees the Overview with its charts; filters the Message browser to an agency's ERRTs;
opens the ERRT, then the hit with its timeline and match picture; downloads the submission
(an audit record); a viewer sees the same message without a personal field; an auditor sees
the download in the audit trail with the chain verified.

The gateway runs with ``[tls] mode = "off"`` on loopback, and Chromium resolves no other host
(``--host-resolver-rules``): the pages render from the gateway alone.  Every Selenium call
blocks, so it runs in a thread while the reactor (and the gateway) keep running.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.helpers import PASSWORD
from tests.integration.test_console import NAME, SSN, traffic

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="chromium and chromium-driver are not installed (apt-get install chromium "
        "chromium-driver; .ci/run does)",
    ),
]
os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver
SHOTS = Path(__file__).resolve().parents[1] / "screenshots"


def _browser(downloads: Path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        # no network beyond the gateway: every other name fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def _wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))


def _login(driver, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.TAG_NAME, "button").click()
    try:
        _wait(driver, lambda d: "/login" not in d.current_url)
    except Exception as exc:  # name what the browser shows instead
        shown = driver.page_source[:400]
        raise AssertionError(f"{user} stayed at {driver.current_url}: {shown}") from exc


def _foreign_resources(driver, base: str) -> list[str]:
    """Resources the page loaded from anywhere but the gateway."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [n for n in names if not n.startswith(base)]


@pytest_twisted.ensureDeferred
async def test_the_console_in_headless_chromium(tmp_path, sink):
    gateway, ids = await traffic(tmp_path, sink)
    for role in ("operator", "viewer", "auditor"):
        gateway.users.add(f"browser-{role}", role, PASSWORD)
    base = f"http://127.0.0.1:{gateway.port('admin')}"
    hit, errt = ids["NY-CONSOLE-0002"], ids["WV-CONSOLE-0003"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = await threads.deferToThread(_browser, downloads)
    try:
        await threads.deferToThread(_operator_steps, driver, base, hit, errt, downloads)
        records = list(gateway.audit.records(event="message.download"))
        assert [(r["user"], r["message_id"], r["what"]) for r in records] == [
            ("browser-operator", hit, "payload")
        ]
        await threads.deferToThread(_viewer_steps, driver, base, hit)
        await threads.deferToThread(_auditor_steps, driver, base)
    finally:
        await threads.deferToThread(driver.quit)
        await gateway.stopService()


def _operator_steps(driver, base: str, hit: str, errt: str, downloads: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # 1. log in: the Overview with its charts
    _login(driver, base, "browser-operator")
    assert driver.current_url == base + "/"
    charts = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    assert len(charts) == 6 and all(c.is_displayed() for c in charts)
    throughput = driver.find_element(By.ID, "throughput-hour")
    assert throughput.find_elements(By.TAG_NAME, "circle")  # the answers are plotted
    assert "WV0000000" in driver.find_element(By.ID, "agencies").text
    assert _foreign_resources(driver, base) == []
    _shot(driver, "01-overview.png")

    # 2. the Message browser filtered to one agency's ERRTs
    driver.find_element(By.LINK_TEXT, "Messages").click()
    _wait(driver, lambda d: "of 3" in d.find_element(By.ID, "range").text)
    form = driver.find_element(By.ID, "f")
    form.find_element(By.NAME, "ori").send_keys("wv")
    Select(form.find_element(By.NAME, "outcome")).select_by_value("errt")
    driver.find_element(By.ID, "apply").click()
    _wait(driver, lambda d: d.find_element(By.ID, "range").text == "1-1 of 1")
    rows = driver.find_elements(By.CSS_SELECTOR, "#msgs tbody tr.row")
    assert [r.get_attribute("data-id") for r in rows] == [errt]
    assert "bad" in rows[0].get_attribute("class").split()  # an ERRT stands out
    assert "ERRT" in rows[0].find_element(By.CSS_SELECTOR, "td.o").text
    assert "ori=wv" in driver.current_url and "outcome=errt" in driver.current_url
    _shot(driver, "02-browser-errts.png")

    # 3. open it: the timeline and the finding (rule and field)
    rows[0].click()
    _wait(driver, lambda d: d.current_url.endswith(f"/message/{errt}"))
    timeline = driver.find_element(By.ID, "timeline").text
    assert "REJECTED" in timeline and "RESPONDED" in timeline
    assert "2.022" in driver.find_element(By.ID, "findings").text
    _shot(driver, "03-message-errt.png")

    # 4. the hit: searches against the threshold and the match picture
    driver.get(f"{base}/message/{hit}")
    assert "SEARCHED" in driver.find_element(By.ID, "timeline").text
    search = driver.find_element(By.ID, "search").text
    assert "HIT" in search and "threshold 0.3000" in search
    picture = driver.find_element(By.ID, "match")
    _wait(driver, lambda d: d.execute_script("return arguments[0].complete", picture))
    assert driver.execute_script("return arguments[0].naturalWidth", picture) > 500
    driver.execute_script("arguments[0].scrollIntoView()", picture)
    _shot(driver, "04-message-hit-match.png")
    driver.execute_script("window.scrollTo(0, 0)")

    # 5. download the submission (audited; checked by the caller)
    driver.find_element(By.ID, "dl-payload").click()
    _wait(driver, lambda d: any(p.suffix == ".eft" for p in downloads.iterdir()))


def _viewer_steps(driver, base: str, hit: str) -> None:
    from selenium.webdriver.common.by import By

    _login(driver, base, "browser-viewer")
    driver.get(f"{base}/message/{hit}")
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "RESPONDED" in text and "HIT" in text
    source = driver.page_source
    for secret in (NAME, SSN, "QUAILMARKER"):
        assert secret not in source
    assert not driver.find_elements(By.ID, "match")
    assert not driver.find_elements(By.ID, "dl-payload")
    _shot(driver, "05-viewer-message.png")


def _auditor_steps(driver, base: str) -> None:
    from selenium.webdriver.common.by import By

    _login(driver, base, "browser-auditor")
    assert driver.current_url == base + "/audit"
    _wait(driver, lambda d: "chain whole" in d.find_element(By.ID, "chain").text)
    _wait(driver, lambda d: "message.download" in d.find_element(By.ID, "rows").text)
    _shot(driver, "06-auditor-trail.png")
