"""The budgets of issue 14 over real sockets, with small configured values.

Each test provokes one limit, checks the refusal the peer reads, and that nothing was stored
(no message in the journal, no file left in the spool directory).
"""

from __future__ import annotations

import smtplib
import socket
import sys
import time
from email.message import EmailMessage

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import threads

from gateway.ansinist import read
from gateway.matcher import synthetic
from gateway.matcher.gallery import Gallery
from gateway.store.journal import Journal
from tests.integration.cars import make_car
from tests.integration.helpers import gateway_config, send_smtp, started

WAIT = 10.0  # seconds a blocking read waits at most (a hang fails the test; nothing is timed)


async def _start(tmp_path, sink, **limits):
    config = gateway_config(tmp_path, sink.port.getHost().port, limits=limits)
    return await started(config)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out


def _read_line(sock: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        out += chunk
    return out


def _smtp_open(port: int, commands=(b"EHLO tester", b"MAIL FROM:<a@ny.example>")) -> socket.socket:
    sock = _connect(port)
    assert _read_line(sock).startswith(b"220")
    for command in commands:
        sock.sendall(command + b"\r\n")
        line = _read_line(sock)
        while line[3:4] == b"-":
            line = _read_line(sock)
        assert line[:1] in (b"2", b"3"), line
    return sock


def _nothing_stored(gateway, tmp_path) -> None:
    assert gateway.journal.messages() == []
    spool = tmp_path / "data" / "spool"
    # the spool-writer thread removes the file after the answer
    _wait_until(lambda: not list(spool.iterdir()), "the spool file removed")


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


# -- connections -------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_smtp_connections_per_peer_get_421_and_are_counted_down(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_connections_per_peer=2)
    port = gateway.port("smtp")

    def run():
        first, second = _connect(port), _connect(port)
        assert _read_line(first).startswith(b"220")
        assert _read_line(second).startswith(b"220")
        third = _connect(port)
        refused = _read_until_closed(third)
        first.close()
        _wait_until(lambda: gateway.ports and _open_count(gateway, "smtp") < 2, "a slot freed")
        fourth = _connect(port)
        greeting = _read_line(fourth)
        second.close(), fourth.close()
        return refused, greeting

    refused, greeting = await threads.deferToThread(run)
    try:
        assert refused.startswith(b"421 4.7.0 too many connections")
        assert greeting.startswith(b"220")
    finally:
        await gateway.stopService()


def _open_count(gateway, name: str) -> int:
    return gateway.limiters[name].open


@pytest.mark.parametrize("listener", ["soap", "admin"])
@pytest_twisted.ensureDeferred
async def test_http_connections_over_the_limit_get_503(tmp_path, sink, listener):
    gateway = await _start(tmp_path, sink, max_connections=1)
    port = gateway.port(listener)

    def run():
        holder = _connect(port)
        path = b"/health" if listener == "admin" else b"/ngi/NativeEBTSService"
        holder.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert holder.recv(65536).startswith(b"HTTP/1.1 ")
        refused = _read_until_closed(_connect(port))
        holder.close()
        return refused

    try:
        refused = await threads.deferToThread(run)
        assert refused.startswith(b"HTTP/1.1 503 ")
    finally:
        await gateway.stopService()


# -- time --------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_smtp_command_trickled_is_cut_with_421(tmp_path, sink):
    gateway = await _start(tmp_path, sink, command_timeout=0.3)
    port = gateway.port("smtp")

    def run():
        sock = _connect(port)
        _read_line(sock)
        sock.sendall(b"HELO slow")  # and never the end of the line
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"421 4.4.2 ") and b"command not completed" in answer
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_smtp_data_below_the_minimum_rate_is_cut_and_its_spool_removed(tmp_path, sink):
    gateway = await _start(
        tmp_path, sink, min_data_rate=100_000, data_rate_window=0.5, spool_threshold=1024
    )
    port = gateway.port("smtp")
    spool = tmp_path / "data" / "spool"

    def run():
        sock = _smtp_open(port, (b"EHLO t", b"MAIL FROM:<a@ny.example>", b"RCPT TO:<i@gw>"))
        sock.sendall(b"DATA\r\n")
        assert _read_line(sock).startswith(b"354")
        sock.sendall(b"Subject: x\r\n\r\n" + b"A" * 70 + b"\r\n")  # then nothing more
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"421 4.4.2 ") and b"data slower than 100000 bytes/s" in answer
        _nothing_stored(gateway, tmp_path)
        assert list(spool.iterdir()) == []
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_smtp_message_deadline(tmp_path, sink):
    gateway = await _start(tmp_path, sink, min_data_rate=0, max_message_seconds=0.5)
    port = gateway.port("smtp")

    def run():
        sock = _smtp_open(port, (b"EHLO t", b"MAIL FROM:<a@ny.example>", b"RCPT TO:<i@gw>"))
        sock.sendall(b"DATA\r\n")
        _read_line(sock)
        sock.sendall(b"Subject: x\r\n\r\n")
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"421 4.4.2 ") and b"not completed within 0.5 seconds" in answer
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


@pytest.mark.parametrize("listener", ["soap", "admin"])
@pytest_twisted.ensureDeferred
async def test_http_slowloris_head_is_cut_with_408(tmp_path, sink, listener):
    gateway = await _start(tmp_path, sink, command_timeout=0.3)
    port = gateway.port(listener)

    def run():
        sock = _connect(port)
        sock.sendall(b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\n")  # no end of head
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"command not completed" in answer
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_http_body_below_the_minimum_rate_is_cut(tmp_path, sink):
    gateway = await _start(tmp_path, sink, min_data_rate=100_000, data_rate_window=0.5)
    port = gateway.port("soap")

    def run():
        sock = _connect(port)
        sock.sendall(
            b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 100000\r\n\r\n<soap"
        )
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"data slower" in answer
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


# -- sizes -------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_http_body_over_the_limit_is_refused_from_content_length(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_body_size=4096)
    port = gateway.port("soap")

    def run():
        sock = _connect(port)
        # 200 MB announced, not one byte of it sent: the answer comes from the head alone
        sock.sendall(
            b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"209715200 bytes exceeds the limit of 4096" in answer
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_http_chunked_body_is_refused_as_it_passes_the_limit(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_body_size=4096)
    port = gateway.port("soap")

    def run():
        sock = _connect(port)
        sock.sendall(
            b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):  # 6 KB in 2 KB chunks, and the body goes on (no last chunk)
            sock.sendall(b"800\r\n" + b"x" * 2048 + b"\r\n")
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"HTTP/1.1 413 ")
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_smtp_data_past_the_threshold_is_spooled_0600_and_removed_on_abort(tmp_path, sink):
    gateway = await _start(tmp_path, sink, spool_threshold=1024, min_data_rate=0)
    port = gateway.port("smtp")
    spool = tmp_path / "data" / "spool"

    def run():
        sock = _smtp_open(port, (b"EHLO t", b"MAIL FROM:<a@ny.example>", b"RCPT TO:<i@gw>"))
        sock.sendall(b"DATA\r\n")
        _read_line(sock)
        sock.sendall(b"Subject: x\r\n\r\n" + (b"B" * 76 + b"\r\n") * 200)  # 15 KB, no dot
        _wait_until(lambda: list(spool.iterdir()), "a spool file")
        (path,) = spool.iterdir()
        mode = path.stat().st_mode & 0o777
        sock.close()
        _wait_until(lambda: not list(spool.iterdir()), "the spool file removed")
        return mode

    try:
        mode = await threads.deferToThread(run)
        assert mode == 0o600
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


def _mime(attachments: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "livescan@ny.example"
    message["To"] = "ident@gateway.example"
    message["Subject"] = "EBTS submission"
    message.set_content("EBTS files attached")
    for i in range(attachments):
        message.add_attachment(
            b"not an EBTS file %d" % i,
            maintype="application",
            subtype="octet-stream",
            filename=f"sub{i}.eft",
        )
    return message


@pytest_twisted.ensureDeferred
async def test_too_many_attachments_get_one_554_and_nothing_is_stored(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_attachments=3)
    port = gateway.port("smtp")

    def run():
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
            try:
                client.send_message(_mime(4))
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error
        return None

    try:
        code, text = await threads.deferToThread(run)
        assert code == 554
        assert text.startswith(b"5.")  # one line, naming the limit
        assert b"more than 3 attachments: at most 3 per message (max_attachments)" in text
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_the_250_reply_of_many_transactions_stays_within_512_octets(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_attachments=40)
    port = gateway.port("smtp")

    def run():
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
            client.ehlo()
            client.mail("livescan@ny.example")
            client.rcpt("ident@gateway.example")
            return client.data(_mime(40).as_bytes())

    try:
        code, text = await threads.deferToThread(run)
        assert code == 250
        assert len(b"250 " + text + b"\r\n") <= 512
        assert text.startswith(b"2.0.0 stored 40 transaction(s): ") and b" more" in text
        assert len(gateway.journal.messages(limit=100)) == 40
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_mime_nested_5000_deep_is_refused_in_our_words(tmp_path, sink):
    gateway = await _start(tmp_path, sink, mime_max_depth=8)
    port = gateway.port("smtp")
    depth = 5000
    body = [b"MIME-Version: 1.0\r\nSubject: deep\r\n"]
    for i in range(depth):
        body.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    body.append(b"Content-Type: application/octet-stream\r\n\r\nxx\r\n")
    body.extend(b"--b%d--\r\n" % i for i in reversed(range(depth)))

    def run():
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
            client.ehlo()
            client.mail("livescan@ny.example")
            client.rcpt("ident@gateway.example")
            return client.data(b"".join(body))

    try:
        code, text = await threads.deferToThread(run)
        assert code == 554
        assert b"nested deeper than 8 levels" in text
        assert b"recursion" not in text.lower()
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_mime_part_count_is_bounded(tmp_path, sink):
    gateway = await _start(tmp_path, sink, mime_max_parts=5)
    try:
        with pytest.raises(smtplib.SMTPDataError) as info:
            await send_smtp(gateway.port("smtp"), [b"x"] * 6)
        assert info.value.smtp_code == 554
        assert b"more than 5 MIME parts" in info.value.smtp_error
        _nothing_stored(gateway, tmp_path)
    finally:
        await gateway.stopService()


# -- work --------------------------------------------------------------------------------------
def _errt_messages(sink, index: int = 0) -> str:
    errt = read(sink.messages[index]["attachments"][0])
    assert errt.tot == "ERRT"
    return str(errt.records[1].value("2.060"))


@pytest_twisted.ensureDeferred
async def test_pixel_budget_answers_an_errt_naming_the_record(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_pixels_per_transaction=1_000_000)
    try:
        await send_smtp(gateway.port("smtp"), [make_car("NY-LIMITS-000001")])
        await sink.wait_for(1)
        assert "RECORD 4 (TYPE-14): IMAGES EXCEED THE LIMIT OF 1000000 PIXELS" in _errt_messages(
            sink
        )
        (msg,) = gateway.journal.messages()
        outcomes = [t["outcome"] for t in gateway.journal.transitions(msg.id)]
        assert "PIXEL_LIMIT" in outcomes and "SEARCHED" not in outcomes
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_worker_time_cap_answers_an_errt_once_and_replaces_the_worker(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_work_seconds=0.2)
    try:
        await send_smtp(gateway.port("smtp"), [make_car("NY-LIMITS-000002")])
        await sink.wait_for(1)
        assert "EXCEEDS THE PROCESSING TIME ALLOWED" in _errt_messages(sink)
        (msg,) = gateway.journal.messages()
        outcomes = [t["outcome"] for t in gateway.journal.transitions(msg.id)]
        assert outcomes.count("worker attempt 1") == 1 and "worker attempt 2" not in outcomes
        assert "WORK_LIMIT" in outcomes
        assert gateway.pool.timeouts == 1
    finally:
        await gateway.stopService()


def _car_with_a_large_print(tcn: str, side: int = 2000) -> bytes:
    """A synthetic CAR whose first rolled image is a ``side`` x ``side`` ridge pattern,
    uncompressed (within the image-size and pixel limits; its extraction needs a few hundred MB)."""
    from gateway import synth
    from gateway.ansinist import write

    txn = synth.car_transaction(42, impression=1, ori="NY0303000", tcn=tcn)
    first = next(r for r in txn.records if r.type == 14)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    ridges = 128 + 100 * np.sin(2 * np.pi * np.hypot(x - side / 2, y - side / 3) / 9)
    first["14.006"], first["14.007"] = str(side), str(side)
    first["14.011"] = "NONE"
    first["14.999"] = ridges.astype(np.uint8).tobytes()
    return write(txn)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux's")
@pytest_twisted.ensureDeferred
async def test_worker_memory_cap_answers_an_errt_and_a_fresh_worker_goes_on(tmp_path, sink):
    gallery = Gallery()
    synthetic.populate(gallery, 5, seed=3)
    gallery.save(tmp_path / "fbi")
    config = gateway_config(
        tmp_path, sink.port.getHost().port, limits={"max_work_memory": 256 * 2**20}
    )
    gateway = await started(config, galleries={"fbi": str(tmp_path / "fbi")})
    try:
        port = gateway.port("smtp")
        await send_smtp(port, [_car_with_a_large_print("NY-LIMITS-000004")])
        await sink.wait_for(1)
        assert "TRANSACTION EXCEEDS THE MEMORY ALLOWED" in _errt_messages(sink)
        (msg,) = gateway.journal.messages()
        outcomes = [t["outcome"] for t in gateway.journal.transitions(msg.id)]
        assert "WORK_MEMORY" in outcomes and "worker attempt 2" not in outcomes
        assert gateway.pool.crashes == 0 and gateway.pool.timeouts == 0
        assert gateway.pool.retired == 1
        # a fresh worker answers the next transaction as usual
        await send_smtp(port, [make_car("NY-LIMITS-000005")])
        await sink.wait_for(2)
        answer = read(sink.messages[1]["attachments"][0])
        assert answer.tot == "SRE" and answer.tcr == "NY-LIMITS-000005"
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_a_transaction_run_twice_before_restarts_is_not_run_again(tmp_path, sink):
    # Twice the daemon died while a worker ran this message (e.g. the OOM killer took both):
    # the journal holds the two attempts, and the restart answers an ERRT without a third run.
    config = gateway_config(tmp_path, sink.port.getHost().port)
    config.data_dir.mkdir(parents=True)
    journal = Journal(config.data_dir / "journal.sqlite3")
    msg_id = journal.accept(make_car("NY-LIMITS-000003"), transport="smtp")
    journal.note(msg_id, outcome="worker attempt 1")
    journal.note(msg_id, outcome="worker attempt 2")
    journal.close()
    gateway = await started(config)
    try:
        await sink.wait_for(1)
        assert "COULD NOT BE PROCESSED" in _errt_messages(sink)
        outcomes = [t["outcome"] for t in gateway.journal.transitions(msg_id)]
        assert "worker attempt 3" not in outcomes
        assert all(slot.executor is None for slot in gateway.pool._slots)  # never started
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_http_expect_continue_over_the_limit_gets_413_and_no_continue(tmp_path, sink):
    gateway = await _start(tmp_path, sink, max_body_size=4096)
    port = gateway.port("soap")

    def run():
        sock = _connect(port)
        sock.sendall(
            b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Expect: 100-continue\r\nContent-Length: 209715200\r\n\r\n"
        )
        return _read_until_closed(sock)

    try:
        answer = await threads.deferToThread(run)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_a_large_submission_is_stored_by_the_store_thread_and_answered(tmp_path, sink):
    # issue 14: payloads past the threshold are hashed, sealed and committed by the store
    # thread (gateway.offload), read back there for the worker; the 250 comes after the commit
    from gateway.transports.soap.client import submit_soap

    gateway = await _start(tmp_path, sink, spool_threshold=1024)
    try:
        car = make_car("NY-LARGE-000001")
        assert len(car) > 100 * 1024
        refused = await send_smtp(gateway.port("smtp"), [car])
        assert refused == {}
        assert gateway.store_thread.stored == 1
        (msg,) = gateway.journal.messages()
        assert gateway.journal.payload(msg.payload) == car
        await sink.wait_for(1)
        assert gateway.journal.message(msg.id).response_tot == "SRE"  # answered
        assert gateway.store_thread.read >= 1  # the pipeline read it in the thread

        url = f"http://127.0.0.1:{gateway.port('soap')}/ngi/NativeEBTSService"
        soap_car = make_car("NY-LARGE-000002")
        control = await threads.deferToThread(submit_soap, url, soap_car)
        assert control and gateway.store_thread.stored == 2
        stored = {gateway.journal.payload(m.payload) for m in gateway.journal.messages()}
        assert stored == {car, soap_car}
    finally:
        await gateway.stopService()
