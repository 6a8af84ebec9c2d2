"""The store thread: the journal's per-byte work on large payloads, off the reactor thread.

Hashing, sealing, inserting and committing a 45 MB payload, and reading and unsealing it
again, took the reactor about 1.5 s per message (issue 14: ``/health`` p99 over a second when
eight such e-mails ended together).  :class:`StoreThread` runs that work in ONE dedicated thread
on the journal's second connection (:meth:`gateway.store.journal.Journal.store_payload`, the
design is described there); the reactor keeps the small commits that reference the payloads,
so a submission is still acknowledged only after its messages are committed with fsync.

One thread, not a pool: SQLite has one writer at a time anyway, the memory of large payloads
does not multiply, and the connection is confined to it.  Payloads of at most ``threshold``
bytes are stored by the reactor as before (a thread hop costs more than their commit).
The thread also takes the WAL checkpoints (every ``checkpoint_seconds``) that the reactor's
connection no longer does.  Before :meth:`StoreThread.start` and after :meth:`StoreThread.stop`
the work runs in the caller's thread.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer, task, threads
from twisted.internet import reactor as _reactor
from twisted.python.threadpool import ThreadPool

from gateway.store.journal import Journal, StoredPayload
from gateway.transports.limits import trimmed

log = logging.getLogger("gateway.store")

# The global reactor provides its interfaces through zope.interface, which mypy does not follow.
reactor: Any = _reactor


class StoreThread:
    """One thread owning the journal's second connection (see the module docstring)."""

    def __init__(
        self, journal: Journal, *, threshold: int, checkpoint_seconds: float = 1.0, clock=None
    ):
        self.journal = journal
        self.threshold = threshold
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock or reactor
        self._pool: ThreadPool | None = None
        self._loop: task.LoopingCall | None = None
        self.stored = 0  # payloads stored by the thread (counted for tests and the console)
        self.read = 0

    @property
    def running(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="gateway-store")
        self._pool.start()
        self.journal.offload_checkpoints()
        self._loop = task.LoopingCall(self._checkpoint)
        self._loop.clock = self.clock
        self._loop.start(self.checkpoint_seconds, now=False)

    def stop(self) -> None:
        """Finish the queued work, close the thread's connection and join the thread."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.callInThread(self.journal.close_store_connection)
            pool.stop()  # FIFO: the close runs after the queued work, then the thread ends

    def run(self, function, *args) -> defer.Deferred:
        """``function(*args)`` in the store thread (a Deferred firing in the reactor thread)."""
        if self._pool is None:
            return defer.maybeDeferred(function, *args)
        return threads.deferToThreadPool(self.clock, self._pool, trimmed, function, *args)

    def store(self, items: list[bytes]) -> defer.Deferred:
        """The items with every one larger than ``threshold`` replaced by its
        :class:`StoredPayload` (committed by the thread; nothing refers to it yet)."""
        large = [n for n, data in enumerate(items) if len(data) > self.threshold]
        if not large or self._pool is None:
            return defer.succeed(list(items))

        def store_all() -> list[bytes | StoredPayload]:
            out: list[bytes | StoredPayload] = list(items)
            for n in large:
                out[n] = self.journal.store_payload(items[n])
            return out

        def counted(out):
            self.stored += len(large)
            return out

        return self.run(store_all).addCallback(counted)

    def read_payload(self, digest: str) -> defer.Deferred:
        """The bytes of a payload, read and unsealed in the thread (KeyError when gone)."""
        if self._pool is None:
            return defer.maybeDeferred(self.journal.payload, digest)
        self.read += 1
        return self.run(self.journal.read_payload, digest)

    def _checkpoint(self) -> defer.Deferred:
        def failed(failure):  # a busy database: the next tick tries again
            log.warning("WAL checkpoint failed: %s", failure.getErrorMessage())

        return self.run(self.journal.checkpoint).addErrback(failed)
