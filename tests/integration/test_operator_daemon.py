"""The daemon as an on-call admin meets it (session 12): a second ``ebts-gateway run`` on the
data directory of a running one, and a restart after a ``kill -9``."""

from __future__ import annotations

import re
import signal
import smtplib

from tests.integration.helpers import gateway_config
from tests.integration.test_first_start import LISTENING, Daemon, _free_port, write_config

STARTED = re.compile(r"gateway started; data in ")


def _smtp_port(daemon: Daemon) -> int:
    while True:
        found = daemon.wait_for(LISTENING)
        daemon.lines.remove(found.string)  # the next wait_for reads on
        if found.group(1) == "smtp":
            return int(found.group(3))


def test_a_second_daemon_on_the_same_data_dir_stops_at_once(tmp_path):
    # both on ephemeral ports: nothing but the data directory is shared
    raw = gateway_config(tmp_path, _free_port()).raw
    first = Daemon(write_config(tmp_path / "first.toml", raw))
    try:
        port = _smtp_port(first)
        first.wait_for(STARTED)
        arriving = tmp_path / "data" / "spool" / "arriving.spool"  # a DATA the first receives
        arriving.write_bytes(b"half a message")

        code, log = Daemon(write_config(tmp_path / "second.toml", raw)).finish()
        assert code == 2, log
        assert (
            f"ebts-gateway: cannot start: data directory {tmp_path / 'data'} is in use by "
            f"another ebts-gateway run (pid {first.proc.pid}, " in log
        ), log
        assert "listening:" not in log and "Traceback" not in log, log
        assert arriving.exists()  # the second did not clear the first's spool
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:  # the first serves on
            assert client.noop()[0] == 250
    finally:
        first.finish(signal.SIGKILL)

    # killed with -9, the first held the directory no longer: a restart takes it
    again = Daemon(write_config(tmp_path / "again.toml", raw))
    again.wait_for(STARTED)
    code, log = again.finish(signal.SIGINT)
    assert code == 0, log
