"""``ebts-gateway replay`` against a running gateway over SMTP, with the JUnit report."""

from __future__ import annotations

import shutil
import socket
import xml.etree.ElementTree as ET

import pytest_twisted
from twisted.internet import threads

from gateway.cli import main
from tests.conftest import FIXTURES
from tests.integration.helpers import gateway_config, started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_twisted.ensureDeferred
async def test_replay_fixture_folder_over_smtp(tmp_path, capsys):
    relay = _free_port()
    gateway = await started(gateway_config(tmp_path, relay))
    try:
        folder = tmp_path / "fixtures"
        shutil.copytree(FIXTURES, folder)
        report = tmp_path / "junit.xml"
        args = [
            "replay",
            str(folder),
            "--to",
            f"smtp://127.0.0.1:{gateway.port('smtp')}",
            "--listen",
            f"127.0.0.1:{relay}",
            "--junit",
            str(report),
            "--grace",
            "1",
            "--timeout",
            "120",
        ]
        code = await threads.deferToThread(main, args)
        out = capsys.readouterr().out
        assert code == 0, out
        suite = ET.parse(report).getroot()
        assert int(suite.get("tests")) == len(list(FIXTURES.glob("*.expect.json")))
        assert suite.get("failures") == "0"

        # A wrong expectation makes replay fail and say why.
        (folder / "car-valid.expect.json").write_text('{"response_tot": "ERRT"}')
        code = await threads.deferToThread(main, args)
        out = capsys.readouterr().out
        assert code == 1
        assert "car-valid.eft" in out and "expected ERRT, got SRE" in out
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_replay_fixture_folder_over_soap(tmp_path, capsys):
    receive = _free_port()
    config = gateway_config(
        tmp_path,
        _free_port(),
        agency=[
            {"ori": "WV0340000", "response_soap": f"http://127.0.0.1:{receive}/receiveResponse"}
        ],
    )
    gateway = await started(config)
    try:
        report = tmp_path / "junit.xml"
        args = [
            "replay",
            str(FIXTURES),
            "--to",
            f"soap://127.0.0.1:{gateway.port('soap')}",
            "--listen-soap",
            f"127.0.0.1:{receive}",
            "--junit",
            str(report),
            "--grace",
            "1",
            "--timeout",
            "120",
        ]
        code = await threads.deferToThread(main, args)
        out = capsys.readouterr().out
        # Over SOAP, files the service refuses as requests (no transaction at all) are answered
        # by a SOAP fault at once: replay reports them as not accepted.
        suite = ET.parse(report).getroot()
        failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
        assert code == (1 if failed else 0), out
        assert all(
            "not accepted" in c.find("failure").get("message")
            for c in suite.iter("testcase")
            if c.find("failure") is not None
        ), out
        assert int(suite.get("tests")) - len(failed) >= 30, out
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_replay_uses_the_demo_identity_against_a_tls_gateway(tmp_path, capsys):
    """The README's end-to-end: TLS on (the default), replay finds the demo identity itself."""
    relay = _free_port()
    config = gateway_config(tmp_path, relay, tls={"mode": "on"})
    gateway = await started(config)
    try:
        folder = tmp_path / "fixtures"
        folder.mkdir()
        for name in ("car-valid", "l1-bad-len", "car-valid-xml"):
            for path in FIXTURES.glob(f"{name}.*"):
                shutil.copy(path, folder / path.name)
        args = [
            "replay",
            str(folder),
            "--to",
            f"smtp://127.0.0.1:{gateway.port('smtp')}",
            "--listen",
            f"127.0.0.1:{relay}",
            "--junit",
            str(tmp_path / "junit.xml"),
            "--grace",
            "1",
            "--data-dir",
            str(config.data_dir),
        ]
        code = await threads.deferToThread(main, args)
        out = capsys.readouterr().out
        assert code == 0, out
        assert "3 passed, 0 failed" in out
        # Without the identity the same replay is refused at MAIL (no client certificate).
        code = await threads.deferToThread(
            main, [*args[:-2], "--data-dir", str(tmp_path / "nowhere")]
        )
        out = capsys.readouterr().out
        assert code == 1 and "refused" in out
    finally:
        await gateway.stopService()
