"""The SMTP intake with an authenticated peer doing odd but legal things (session 12), over a
loopback socket."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import threads

from gateway.transports.smtp import MAX_RECIPIENTS
from tests.integration.cars import make_car
from tests.integration.helpers import gateway_config, send_smtp, started

WAIT = 30.0  # seconds a blocking read waits at most (a hang fails the test; nothing is timed)


def _replies(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[:count]


@pytest_twisted.ensureDeferred
async def test_recipients_past_100_get_452_and_the_message_goes_through(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    port = gateway.port("smtp")
    extra = 400

    def pipelined():
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            assert _replies(sock, 1)[0].startswith(b"220")
            sock.sendall(b"HELO tester\r\nMAIL FROM:<livescan@ny.example>\r\n")
            assert [r[:3] for r in _replies(sock, 2)] == [b"250", b"250"]
            rcpts = b"".join(
                b"RCPT TO:<r%d@gateway.example>\r\n" % i for i in range(MAX_RECIPIENTS + extra)
            )
            sock.sendall(rcpts)
            codes = [r[:3] for r in _replies(sock, MAX_RECIPIENTS + extra)]
            sock.sendall(
                b"RSET\r\nMAIL FROM:<livescan@ny.example>\r\nRCPT TO:<again@x>\r\nQUIT\r\n"
            )
            after = [r[:3] for r in _replies(sock, 4)]
            return codes, after

    try:
        codes, after = await threads.deferToThread(pipelined)
        assert codes == [b"250"] * MAX_RECIPIENTS + [b"452"] * extra
        assert after == [b"250", b"250", b"250", b"221"]  # a new transaction starts afresh
        # an ordinary submission on the same listener is untouched by it
        assert await send_smtp(port, [make_car(tcn="NY-RCPT-0000001")]) == {}
        assert len(gateway.journal.messages()) == 1
    finally:
        await gateway.stopService()
