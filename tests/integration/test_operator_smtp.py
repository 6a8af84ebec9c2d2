"""The SMTP intake with an authenticated peer doing odd but legal things (session 12), over a
loopback socket."""

from __future__ import annotations

import smtplib
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


def _mime_with(content_type_tail: bytes, car: bytes) -> bytes:
    import base64

    data = base64.encodebytes(car).replace(b"\n", b"\r\n")
    return (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB"
        + content_type_tail
        + b"\r\n\r\n--BB\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=a.eft\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--BB--\r\n"
    )


@pytest_twisted.ensureDeferred
async def test_a_mime_header_of_many_parameters_is_refused_before_parsing(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    port = gateway.port("smtp")
    car = make_car(tcn="NY-PARAM-0000001")
    # the email package's cost grows with the square of a field's parameters: 200,000 of
    # them in one Content-Type held the parser thread (every submission waits for it) for hours
    many = b"".join(b";\r\n p%d=v" % i for i in range(65))

    def send(message: bytes):
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
            client.ehlo()
            client.mail("livescan@ny.example")
            client.rcpt("ident@gateway.example")
            return client.data(message)

    try:
        code, text = await threads.deferToThread(send, _mime_with(many, car))
        assert code == 554, text
        assert b"MIME header field Content-Type of more than 4096 bytes or 64 parameters" in text
        assert gateway.journal.messages() == []
        code, text = await threads.deferToThread(send, _mime_with(b'; charset="us-ascii"', car))
        assert code == 250, text
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_commands_pipelined_behind_a_message_are_answered_after_it(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    port = gateway.port("smtp")
    first = _mime_with(b"", make_car(tcn="NY-PIPE-0000001")) + b".\r\n"
    second = _mime_with(b"", make_car(tcn="NY-PIPE-0000002")) + b".\r\n"

    def pipelined():
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            assert _replies(sock, 1)[0].startswith(b"220")
            sock.sendall(
                b"HELO tester\r\nMAIL FROM:<livescan@ny.example>\r\nRCPT TO:<i@x>\r\nDATA\r\n"
            )
            assert [r[:3] for r in _replies(sock, 4)] == [b"250", b"250", b"250", b"354"]
            # RFC 2920 3.1: the message content first in a group, DATA (or QUIT) last
            sock.sendall(first + b"MAIL FROM:<livescan@ny.example>\r\nRCPT TO:<i@x>\r\nDATA\r\n")
            group = _replies(sock, 4)
            sock.sendall(second + b"QUIT\r\n")
            return group, _replies(sock, 2)

    try:
        group, last = await threads.deferToThread(pipelined)
        # the reply to the message first (was: MAIL's 250, RCPT's, DATA's 354, then it)
        assert group[0].startswith(b"250 2.0.0 stored 1 transaction(s): "), group
        assert [r[:3] for r in group[1:]] == [b"250", b"250", b"354"], group
        # and QUIT did not close the connection before the second message's reply
        assert last[0].startswith(b"250 2.0.0 stored 1 transaction(s): "), last
        assert last[1].startswith(b"221"), last
        assert len(gateway.journal.messages()) == 2
    finally:
        await gateway.stopService()
