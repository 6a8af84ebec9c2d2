"""Message bodies held in memory up to a small threshold, then spooled to a file.

A :class:`Spool` is file-like (``write``, ``seek``, ``tell``, ``read``, ``close``): SMTP DATA
and HTTP request bodies are written to it as they arrive, so the memory a connection costs
does not grow with the size of its message.  Past ``threshold`` bytes the content moves to a
file created with mode 0600 in the spool directory (under the data directory); the file is
removed when the spool is closed, after the message is committed to the journal or abandoned.
Files left by a crash are removed by :func:`clear_spool` at start.

File work (creating, writing, closing and removing the file) is done by one spool-writer thread,
in order: the caller (the reactor thread) only queues the bytes.  A write to a file can wait
for the file system while another process fsyncs (tens of ms on a busy disk), and the reactor
serves every connection.  At most :data:`MAX_PENDING` bytes of a spool wait in the queue; past
that the caller waits for the writer (memory stays bounded).  Reading waits until every queued
write of the spool is done.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

SPOOL_DIR = "spool"  # under the data directory
MAX_PENDING = 4 * 1024 * 1024  # bytes of one spool queued for the writer thread at most

_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _spool_writer() -> ThreadPoolExecutor:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-spool")
        return _writer


def spool_dir(data_dir) -> Path:
    """The spool directory of a data directory (created 0700 when missing)."""
    path = Path(data_dir) / SPOOL_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def clear_spool(data_dir) -> int:
    """Remove what a crash left in the spool directory; returns the number of files."""
    removed = 0
    for entry in spool_dir(data_dir).glob("*.spool"):
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


class Spool(io.RawIOBase):
    """Bytes of one message: a BytesIO up to ``threshold``, then a 0600 file in ``directory``."""

    def __init__(self, directory, threshold: int):
        super().__init__()
        self.directory = Path(directory)
        self.threshold = threshold
        self._file: io.BufferedRandom | io.BytesIO = io.BytesIO()
        self.path: Path | None = None  # set by the writer thread when it creates the file
        self.size = 0
        self._disk = False  # past the threshold: the file's work is the writer thread's
        self._last: Future | None = None  # the last job queued for the writer
        self._pending = 0  # bytes queued and not written yet
        self._error: OSError | None = None  # the first failed write
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        """Append ``data`` (a spool is written from start to end, then read)."""
        count = len(data)
        if not self._disk and self.size + count > self.threshold:
            self._disk = True
            memory, self._file = cast(io.BytesIO, self._file), io.BytesIO()
            self._queue(self._to_disk, memory)
        if self._disk:
            data = bytes(data)
            with self._lock:
                self._pending += count
            self._queue(self._write_now, data)
            if self._pending > MAX_PENDING and self._last is not None:
                self._last.result()  # the disk is slower than the peer: wait for it
        else:
            self._file.write(data)
        self.size += count
        return count

    def _queue(self, job, *args) -> None:
        self._last = _spool_writer().submit(job, *args)

    def _to_disk(self, memory: io.BytesIO) -> None:  # writer thread
        fd, name = tempfile.mkstemp(suffix=".spool", dir=self.directory)  # mode 0600
        self.path = Path(name)
        # "w+b" with a buffer: a BufferedRandom (typeshed's overload says only BinaryIO)
        disk = cast(io.BufferedRandom, os.fdopen(fd, "w+b", buffering=64 * 1024))
        disk.write(memory.getbuffer())
        self._file = disk

    def _write_now(self, data: bytes) -> None:  # writer thread
        try:
            if self._error is None:
                self._file.write(data)
        except OSError as exc:  # e.g. the disk is full: the reader gets it
            self._error = exc
        finally:
            with self._lock:
                self._pending -= len(data)

    def _sync(self) -> None:
        """Wait until the writer thread has done every job queued for this spool; raises
        the first error it met (OSError)."""
        last = self._last
        if last is not None:
            last.result()
        if self._error is not None:
            raise self._error

    # -- reading ---------------------------------------------------------------------------
    def seek(self, offset: int, whence: int = 0) -> int:
        self._sync()
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        self._sync()
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        self._sync()
        return self._file.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        self._sync()
        return self._file.readline(size)

    def readinto(self, buffer) -> int:
        self._sync()
        return self._file.readinto(buffer)

    def getvalue(self) -> bytes:
        """All the bytes (for a consumer that needs them in memory, e.g. after the checks)."""
        self._sync()
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    @property
    def on_disk(self) -> bool:
        return self._disk

    def close(self) -> None:
        """Drop the content and remove the spool file (idempotent; the file's close and
        removal are queued for the writer thread, after its writes)."""
        if self.closed:
            return
        try:
            if self._disk:
                self._queue(self._remove)
            else:
                self._file.close()
        finally:
            super().close()

    def _remove(self) -> None:  # writer thread
        try:
            self._file.close()
        finally:
            if self.path is not None:
                try:
                    self.path.unlink()
                except OSError:
                    pass
