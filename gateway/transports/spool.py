"""Message bodies held in memory up to a small threshold, then spooled to a file.

A :class:`Spool` is file-like (``write``, ``seek``, ``tell``, ``read``, ``close``): SMTP DATA
and HTTP request bodies are written to it as they arrive, so the memory a connection costs
does not grow with the size of its message.  Past ``threshold`` bytes the content moves to a
file created with mode 0600 in the spool directory (under the data directory); the file is
removed when the spool is closed, after the message is committed to the journal or abandoned.
Files left by a crash are removed by :func:`clear_spool` at start.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import cast

SPOOL_DIR = "spool"  # under the data directory


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
        self.path: Path | None = None
        self.size = 0

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
        if self.path is None and self.size + count > self.threshold:
            self._to_disk()
        self._file.write(data)
        self.size += count
        return count

    def _to_disk(self) -> None:
        fd, name = tempfile.mkstemp(suffix=".spool", dir=self.directory)  # mode 0600
        self.path = Path(name)
        # "w+b" with a buffer: a BufferedRandom (typeshed's overload says only BinaryIO)
        disk = cast(io.BufferedRandom, os.fdopen(fd, "w+b", buffering=64 * 1024))
        assert isinstance(self._file, io.BytesIO)  # path was None: still in memory
        disk.write(self._file.getbuffer())
        disk.seek(self._file.tell())
        self._file = disk

    # -- reading ---------------------------------------------------------------------------
    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._file.readline(size)

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def getvalue(self) -> bytes:
        """All the bytes (for a consumer that needs them in memory, e.g. after the checks)."""
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def close(self) -> None:
        """Drop the content and remove the spool file (idempotent)."""
        if self.closed:
            return
        try:
            self._file.close()
        finally:
            if self.path is not None:
                try:
                    self.path.unlink()
                except OSError:
                    pass
            super().close()
