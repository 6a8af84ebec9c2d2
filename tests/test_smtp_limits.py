"""The SMTP intake's DATA handling and connection clock on a StringTransport and a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from gateway.config import Limits
from gateway.transports.limits import Budget
from gateway.transports.smtp import IntakeFactory


class _Intake:
    def __init__(self):
        self.stored: list[bytes] = []

    def identify(self, fingerprint, **kwargs):
        from gateway.routing.authz import LOCAL

        return LOCAL  # TLS off: tests/integration/test_tls_gateway.py covers identities

    def accept(self, items, **kwargs):
        self.stored.extend(items)
        return [f"M{i}" for i in range(len(items))]

    def accept_async(self, items, **kwargs):
        return defer.maybeDeferred(self.accept, items, **kwargs)


def _session(tmp_path):
    factory = IntakeFactory(
        _Intake(), domain="gw.example", max_size=1 << 20, spool_directory=tmp_path
    )
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO x\r\nMAIL FROM:<a@ny.example>\r\nRCPT TO:<i@gw>\r\nDATA\r\n")
    return proto, transport


@pytest.mark.parametrize(
    "pieces",
    [
        [b"Subject: x\r\n\r\n..dot\r\n.x\r\nend\r\n.\r\n"],
        [b"Subject: x\r\n\r\n..dot\r\n.x\r\nen", b"d\r", b"\n.", b"\r\nQUIT\r\n"],
        [b"Subject: x\r\n\r\n..dot\r\n", b".x\r\nend\r\n", b".\r\n"],
    ],
)
def test_data_blocks_are_unstuffed_and_the_end_found_across_reads(tmp_path, pieces):
    proto, transport = _session(tmp_path)
    collector = proto.delivery._collector
    got = []

    def eom():
        got.append(collector.spool.getvalue())
        return defer.succeed(["M1"])

    collector.eomReceived = eom
    for piece in pieces:
        proto.dataReceived(piece)
    assert got == [b"Subject: x\r\n\r\n.dot\r\nx\r\nend\r\n"]
    assert b"250 2.0.0 stored 1 transaction(s): M1" in transport.value()
    proto.connectionLost(None)


def test_an_overlong_line_in_data_is_refused_as_before(tmp_path):
    proto, transport = _session(tmp_path)
    proto.dataReceived(b"x" * (proto.MAX_LENGTH + 10))
    assert transport.value().endswith(b"500 Line too long\r\n")
    proto.connectionLost(None)


def _budget(**limits):
    clock = task.Clock()
    fired: list[str] = []
    budget = Budget(Limits(**limits), fired.append, clock.callLater)
    return budget, clock, fired


def test_budget_command_must_end_in_time():
    budget, clock, fired = _budget(command_timeout=5)
    budget.enter("command")
    clock.advance(4.9)
    budget.enter("idle")  # ended in time
    clock.advance(10)
    assert fired == []
    budget.enter("command")
    clock.advance(5.1)
    assert fired == ["command"]


def test_budget_rate_is_averaged_over_each_window():
    budget, clock, fired = _budget(min_data_rate=100, data_rate_window=10)
    budget.enter("message")
    budget.feed(1000)  # exactly 100 bytes/s over the first window
    clock.advance(10)
    assert fired == []
    budget.feed(999)
    clock.advance(10)
    assert fired == ["rate"]


def test_budget_deadline_holds_whatever_the_rate():
    budget, clock, fired = _budget(min_data_rate=0, max_message_seconds=30)
    budget.enter("message")
    for _ in range(29):
        budget.feed(10**6)
        clock.advance(1)
    assert fired == []
    clock.advance(1.5)
    assert fired == ["deadline"]


def _mail(*files: bytes) -> bytes:
    import email.policy
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["Subject"] = "station@ny.example", "EBTS"
    message.set_content("EBTS files attached")
    for data in files:
        message.add_attachment(data, maintype="application", subtype="octet-stream")
    return message.as_bytes(policy=email.policy.SMTP)


def test_a_large_message_is_read_from_its_spool_like_the_email_package_reads_it(
    tmp_path, monkeypatch
):
    import os

    from gateway.transports import smtp
    from gateway.transports.spool import Spool

    raw = _mail(os.urandom(300_000), b"", os.urandom(70_001))
    expected = [data for _, data in smtp.extract_attachments(raw)]
    spool = Spool(tmp_path, 1024)
    spool.write(raw)
    monkeypatch.setattr(smtp, "LARGE_MESSAGE", 100_000)  # this one counts as large
    monkeypatch.setattr(
        smtp, "extract_attachments", lambda raw: pytest.fail("the email package was used")
    )
    got = [data for _, data in smtp.read_message(spool, Limits())]
    spool.close()
    assert got == expected and len(got) == 2


def test_a_spool_file_is_written_and_removed_by_the_writer_thread(tmp_path, monkeypatch):
    import os
    import threading

    from gateway.transports import spool as spool_module
    from gateway.transports.spool import Spool

    writers = set()
    real_write_now = Spool._write_now

    def write_now(self, data):
        writers.add(threading.get_ident())
        real_write_now(self, data)

    monkeypatch.setattr(Spool, "_write_now", write_now)
    monkeypatch.setattr(spool_module, "MAX_PENDING", 10_000)  # the caller waits past this
    data = os.urandom(100_000)
    spool = Spool(tmp_path, 1024)
    for start in range(0, len(data), 4096):
        spool.write(memoryview(data)[start : start + 4096])
        assert spool._pending <= 10_000 + 4096
    assert spool.on_disk and spool.getvalue() == data  # reading waits for the writes
    assert writers and threading.get_ident() not in writers
    path = spool.path
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    spool.close()
    spool._last.result()  # the removal is queued after the writes
    assert not path.exists()


def test_a_failed_spool_write_reaches_the_reader(tmp_path, monkeypatch):
    from gateway.transports.spool import Spool

    spool = Spool(tmp_path, 10)
    spool.write(b"x" * 20)
    spool._sync()

    def full(data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool._file, "write", full)
    spool.write(b"y" * 20)
    with pytest.raises(OSError, match="No space"):
        spool.getvalue()
    spool.close()
