"""``ebts-gateway replay`` against a running gateway over SMTP, with the JUnit report."""

from __future__ import annotations

import shutil
import socket
import xml.etree.ElementTree as ET

import pytest_twisted
from twisted.internet import threads

from gateway.cli import main
from gateway.service import Gateway
from tests.conftest import REPO
from tests.integration.helpers import gateway_config

FIXTURES = REPO / "fixtures" / "validation"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_twisted.ensureDeferred
async def test_replay_fixture_folder_over_smtp(tmp_path, capsys):
    relay = _free_port()
    gateway = Gateway(gateway_config(tmp_path, relay))
    gateway.startService()
    for svc in gateway.ports.values():
        await svc._waitingForPort
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
