"""Work budgets without sockets: the pixel budget, decode depth, the fair share of the workers
and the worker time cap (issue 14)."""

from __future__ import annotations

import io
import os
import signal
import struct
import sys
import time
import zlib

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import defer

from gateway.ansinist import read
from gateway.config import ConfigError, Limits, parse_config
from gateway.imaging import declared_pixels, decode
from gateway.imaging.image import _to_uint8
from gateway.matcher.pool import WorkerPool, WorkTimeout
from gateway.routing.pipeline import FairShare
from gateway.routing.processing import Job, process
from gateway.transports.mime import MimeLimitError, check_structure
from gateway.transports.smtp import stored_reply
from tests.integration.cars import make_car


def _job(payload: bytes, **extra) -> Job:
    return Job(
        message_id="M-1",
        payload=payload,
        response_tcn="GWTCN1",
        gateway_ori="WVIAFIS0Z",
        today="2026-11-25",
        **extra,
    )


def test_declared_pixels_come_from_the_stream_headers():
    card = read(make_car("NY-PIXELS-000001"))
    pixels = [declared_pixels(r) for r in card.records]
    assert pixels[:2] == [0, 0]  # Type-1 and Type-2 carry no image
    assert all(500_000 < p < 700_000 for p in pixels[2:])


def test_pixel_budget_gives_an_errt_naming_the_record_before_any_decoding():
    payload = make_car("NY-PIXELS-000002")
    card = read(payload)
    first_two = sum(declared_pixels(r) for r in card.records[:4])
    result = process(_job(payload, max_pixels=first_two - 1))
    assert result.response_tot == "ERRT"
    assert [s[:2] for s in result.steps] == [("DECODED", "12 records"), ("REJECTED", "PIXEL_LIMIT")]
    msg = read(result.response).records[1].value("2.060")
    assert f"RECORD 4 (TYPE-14): IMAGES EXCEED THE LIMIT OF {first_two - 1} PIXELS" in str(msg)


def test_pixel_budget_lets_a_card_within_it_through():
    payload = make_car("NY-PIXELS-000003")
    total = sum(declared_pixels(r) for r in read(payload).records)
    result = process(_job(payload, max_pixels=total))
    assert "PIXEL_LIMIT" not in [s[1] for s in result.steps]
    assert result.response_tot == "SRE"


def _png_16bit_rgba(width: int, height: int) -> bytes:
    rows = zlib.compress((b"\x00" + b"\x12\x34" * 4 * width) * height, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_16_bit_rgba_png_decodes_to_gray_without_widening():
    image = decode(_png_16bit_rgba(64, 32), "PNG", gray=True)
    assert image.pixels.shape == (32, 64) and image.pixels.dtype == np.uint8
    assert int(image.pixels[0, 0]) == 0x12


def test_deep_samples_shift_in_their_own_width():
    deep = np.array([[0, 65535, 4095, 256]], np.uint16)
    assert _to_uint8(deep, 16).tolist() == [[0, 255, 15, 1]]
    assert _to_uint8(deep, 12).tolist() == [[0, 255, 255, 16]]  # clipped to 12 bits first
    assert _to_uint8(np.array([[-5, 70000]], np.int32), 16).tolist() == [[0, 255]]


def _granted(share: FairShare, key: str, log: list) -> defer.Deferred:
    return share.acquire(key).addCallback(lambda _: log.append(key))


def test_fair_share_keeps_a_worker_for_another_agency():
    share = FairShare(2, 0.5)
    log: list[str] = []
    for _ in range(5):
        _granted(share, "FLOOD", log)
    assert log == ["FLOOD"]  # the flood holds its share, one of two workers
    _granted(share, "HONEST", log)
    assert log == ["FLOOD", "HONEST"]  # at once: the other worker was kept free
    share.release("HONEST")
    assert log == ["FLOOD", "HONEST"] and share.free == 1
    share.release("FLOOD")
    assert log == ["FLOOD", "HONEST", "FLOOD"] and share.waiting == 3


def test_fair_share_without_reserve_uses_every_worker_and_takes_turns():
    share = FairShare(2, 0.5, reserve=False)
    log: list[str] = []
    for _ in range(5):
        _granted(share, "FLOOD", log)
    assert log == ["FLOOD", "FLOOD"]  # one agency configured: both workers
    _granted(share, "HONEST", log)
    share.release("FLOOD")
    assert log[-1] == "HONEST"  # the next free worker goes to the other agency first
    share.release("FLOOD")
    share.release("HONEST")
    assert log == ["FLOOD", "FLOOD", "HONEST", "FLOOD", "FLOOD"]
    assert share.waiting == 1


def test_fair_share_rotates_between_agencies():
    share = FairShare(1, 1.0)
    log: list[str] = []
    for key in ("A", "A", "A", "B", "B", "C"):
        _granted(share, key, log)
    for _ in range(5):
        share.release(log[-1])
    assert log == ["A", "A", "B", "C", "A", "B"]


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_a_job_past_its_time_is_killed_and_its_worker_replaced():
    pool = WorkerPool(1)
    try:
        with pytest.raises(WorkTimeout):
            await pool.run(time.sleep, 60, timeout=1.0)
        assert pool.timeouts == 1 and pool.crashes == 0
        assert await pool.run(abs, -3) == 3  # a fresh worker takes the next job
    finally:
        pool.stop()


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX")
@pytest_twisted.ensureDeferred
async def test_a_ctrl_c_while_a_worker_starts_does_not_kill_it():
    # Ctrl-C reaches the whole process group, workers included: one still starting (importing,
    # before its initializer) must not die of it or print a KeyboardInterrupt traceback
    pool = WorkerPool(1)
    try:
        done = pool.run(abs, -5)
        (process,) = pool._slots[0].executor._processes.values()  # started by the submit
        os.kill(process.pid, signal.SIGINT)
        assert await done == 5 and pool.crashes == 0
    finally:
        pool.stop()


def _allocate(megabytes: int) -> int:
    """Touch ``megabytes`` MB of fresh memory in the worker; returns the bytes held."""
    block = np.ones(megabytes * 2**20, np.uint8)
    return int(block.sum())


def _read_mapped(path: str) -> int:
    """Read every byte of a memory-mapped array (read-only file mapping, as galleries are)."""
    data = np.load(path, mmap_mode="r")
    return int(data[::4096].sum()) + int(data[-1])


_MEMORY_CAP = 400 * 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux's")
@pytest_twisted.ensureDeferred
async def test_a_job_past_the_worker_memory_fails_with_memory_error_and_its_worker_is_replaced(
    tmp_path,
):
    # a gallery-sized file bigger than the cap, mapped read-only: it must not count
    mapped = tmp_path / "big.npy"
    array = np.lib.format.open_memmap(mapped, mode="w+", dtype=np.uint8, shape=(600 * 2**20,))
    array[-1] = 7
    del array
    pool = WorkerPool(1, memory=_MEMORY_CAP)
    try:
        first = await pool.run(os.getpid)
        assert await pool.run(_allocate, 50) == 50 * 2**20  # within the cap
        assert await pool.run(os.getpid) == first  # a job within its memory keeps the worker
        with pytest.raises(MemoryError):
            await pool.run(_allocate, 600)
        assert pool.crashes == 0 and pool.timeouts == 0 and pool.retired == 1
        # a fresh worker (a native library may not have recovered), with the same cap
        assert await pool.run(os.getpid) != first
        assert await pool.run(_allocate, 50) == 50 * 2**20
        assert await pool.run(_read_mapped, str(mapped)) == 7
        with pytest.raises(MemoryError):  # the fresh worker has the same cap
            await pool.run(_allocate, 600)
        assert pool.retired == 2
    finally:
        pool.stop()
    # without the cap, the same allocation is no error (the test can fail)
    free = WorkerPool(1)
    try:
        assert await free.run(_allocate, 600) == 600 * 2**20
    finally:
        free.stop()


class _Answered:
    """A job's result that says its job ran past the worker's memory (as processing's does)."""

    retire_worker = True


def _answered_after_memory_error() -> _Answered:
    return _Answered()


@pytest_twisted.ensureDeferred
async def test_a_job_that_caught_its_memory_error_has_its_worker_replaced():
    pool = WorkerPool(1)
    try:
        first = await pool.run(os.getpid)
        assert isinstance(await pool.run(_answered_after_memory_error), _Answered)
        assert pool.retired == 1 and pool.crashes == 0
        assert await pool.run(os.getpid) != first
    finally:
        pool.stop()


def test_a_transaction_past_the_worker_memory_gets_an_errt_in_our_words(monkeypatch):
    import gateway.routing.processing as processing

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB for an array")

    monkeypatch.setattr(processing, "_process", exhausted)
    result = process(_job(make_car("NY-MEMORY-000001")))
    assert result.response_tot == "ERRT"
    assert result.steps[-1][:2] == ("REJECTED", "WORK_MEMORY")
    assert result.retire_worker  # its worker is replaced after the answer
    msg = str(read(result.response).records[1].value("2.060"))
    assert "TRANSACTION EXCEEDS THE MEMORY ALLOWED" in msg and "GiB" not in msg


@pytest.mark.parametrize(
    ("limits", "key"),
    [
        ({"max_connections": 0}, "limits.max_connections"),
        ({"max_attachments": 2.5}, "limits.max_attachments"),
        ({"min_data_rate": -1}, "limits.min_data_rate"),
        ({"idle_timeout": "soon"}, "limits.idle_timeout"),
        ({"agency_share": 1.5}, "limits.agency_share"),
        ({"max_pixels": 10}, "limits.max_pixels"),
        ({"max_work_memory": 1024}, "limits.max_work_memory"),
        ({"max_work_memory": -1}, "limits.max_work_memory"),
        ({"max_work_memory": 2.5e9}, "limits.max_work_memory"),
    ],
)
def test_limits_keys_are_checked(limits, key):
    with pytest.raises(ConfigError) as info:
        parse_config({"limits": limits})
    assert info.value.key == key


def test_limits_defaults_and_values():
    assert parse_config({}).limits == Limits()
    limits = parse_config({"limits": {"max_work_seconds": 5, "max_attachments": 3}}).limits
    assert limits.max_work_seconds == 5.0 and isinstance(limits.max_work_seconds, float)
    assert limits.max_attachments == 3
    assert parse_config({"limits": {"max_work_memory": 0}}).limits.max_work_memory == 0
    assert Limits().max_work_memory == 4 * 2**30


def _nested_messages(depth: int) -> bytes:
    """``depth`` e-mails each enclosing the next (message/rfc822), no multipart at all."""
    head = b"Subject: wrapper\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
    return head * depth + b"Subject: inner\r\n\r\nhello\r\n"


def test_enclosed_messages_count_as_depth():
    assert check_structure(io.BytesIO(_nested_messages(3)), max_depth=8, max_parts=10)["depth"] == 3
    with pytest.raises(MimeLimitError) as info:
        check_structure(io.BytesIO(_nested_messages(50)), max_depth=8, max_parts=10)
    assert info.value.what == "depth" and "(mime_max_depth)" in info.value.text


def test_stored_reply_stays_within_one_line_of_512_octets():
    ids = [f"M2026120600000{i:05d}" for i in range(1000)]
    text = stored_reply(ids)
    assert len(b"250 " + text + b"\r\n") <= 512
    assert text.startswith(b"2.0.0 stored 1000 transaction(s): M202612060000000000 ")
    assert text.endswith(b" more")
    assert stored_reply(ids[:2]) == f"2.0.0 stored 2 transaction(s): {ids[0]} {ids[1]}".encode()
