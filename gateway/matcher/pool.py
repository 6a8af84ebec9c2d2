"""Worker processes for CPU work, as Twisted Deferreds (the matcher's one Twisted boundary).

Decoding, extraction and search run in a :class:`concurrent.futures.ProcessPoolExecutor`
(``spawn`` start method: the children share nothing with the reactor).  A worker that dies
(a native decoder crashing on hostile input, the OOM killer) breaks the executor: the pool
replaces it and fails only the jobs that were running, with :class:`WorkerCrashed`.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from twisted.internet import defer, reactor

WORKER_NICE = 5  # CPU work yields to the reactor: intake and /health stay responsive


def _worker_init() -> None:
    from gateway.imaging.codecs import prefer_in_process

    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError):  # not on this platform / not permitted: run as is
        pass
    # A worker is disposable (the pool replaces it if a native decoder crashes), so it decodes
    # WSQ and lossless JPEG in process rather than in a fork per image.
    prefer_in_process()


class WorkerCrashed(RuntimeError):
    """The worker process running a job died."""


class WorkerPool:
    def __init__(self, processes: int = 2, *, clock=None):
        self.processes = max(1, int(processes))
        self._reactor = clock or reactor
        self._executor: ProcessPoolExecutor | None = None
        self.crashes = 0
        self.running = 0

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # one BLAS thread per worker: the workers already fill the cores, and OpenBLAS
            # threads spinning beside another worker cost more than they give (read by the
            # spawned children at start; this process's BLAS is already initialised)
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(var, "1")
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )
        return self._executor

    def run(self, fn, *args) -> defer.Deferred:
        """Run ``fn(*args)`` in a worker; the Deferred fires in the reactor thread."""
        d = defer.Deferred()
        try:
            future = self._pool().submit(fn, *args)
        except (BrokenProcessPool, RuntimeError):
            self._replace()
            future = self._pool().submit(fn, *args)
        self.running += 1

        def done(f):
            self._reactor.callFromThread(self._finish, d, f)

        future.add_done_callback(done)
        return d

    def _finish(self, d: defer.Deferred, future) -> None:
        self.running -= 1
        try:
            result = future.result()
        except BrokenProcessPool as exc:
            self.crashes += 1
            self._replace()
            d.errback(WorkerCrashed(str(exc) or "a worker process died"))
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            d.errback(exc)
            return
        d.callback(result)

    @property
    def alive(self) -> int:
        """Worker processes alive now (0 before the first job: the pool starts them on demand).

        Read from the executor's process table (concurrent.futures has no public count)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sum(1 for p in list(processes.values()) if p.is_alive())

    def _replace(self) -> None:
        old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
