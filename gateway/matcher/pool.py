"""Worker processes for CPU work, as Twisted Deferreds (the matcher's one Twisted boundary).

Decoding, extraction and search run in worker processes, each its own single-process
:class:`concurrent.futures.ProcessPoolExecutor` (``spawn`` start method: the children share
nothing with the reactor).  A worker that dies (a native decoder crashing on hostile input, the
OOM killer) is replaced and only its job fails, with :class:`WorkerCrashed`; a job past its
time (``timeout``, ``[limits] max_work_seconds``) has its worker killed and replaced and fails
with :class:`WorkTimeout`.  ``memory`` (``[limits] max_work_memory``) caps each worker's private
memory (``RLIMIT_DATA``): an allocation past it raises :class:`MemoryError` inside the job, which
then ends as the job's own error (or its answer) instead of the kernel's OOM killer taking a
process, or the machine, down.  The worker that ran such a job is then retired (replaced once
the job's answer is back): a native library that failed an allocation half way (libxml2 under
lxml, a Pillow decoder) may hold memory it never frees or be left in a state that fails later
jobs oddly, so no other job runs in that process.  A job that caught the MemoryError itself
says so with a true ``retire_worker`` attribute on its result
(:class:`gateway.routing.processing.Result`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from twisted.internet import defer, reactor

WORKER_NICE = 5  # CPU work yields to the reactor: intake and /health stay responsive


def limit_memory(limit: int | None) -> bool:
    """Cap this process's private memory at ``limit`` bytes (``RLIMIT_DATA``, soft and hard);
    False where the platform has no such limit.

    On Linux 4.7 and later RLIMIT_DATA counts the heap and the private writable mappings (numpy's
    large arrays are anonymous mappings) and not the shared or read-only file mappings: a gallery
    opened with ``mmap_mode="r"`` (6 GB at a million subjects) does not count, which rules out
    RLIMIT_AS.  The caps of the calling process stay as they are when ``limit`` is None."""
    if not limit:
        return False
    try:
        import resource
    except ImportError:  # not on this platform
        return False
    if not sys.platform.startswith("linux") or not hasattr(resource, "RLIMIT_DATA"):
        return False  # elsewhere it may count the heap alone: no cap rather than a wrong one
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return True


def _worker_init(memory: int | None = None) -> None:
    from gateway.imaging.codecs import prefer_in_process

    limit_memory(memory)

    # Ctrl-C reaches every process of the terminal's group: only the daemon handles it (it
    # stops the pool), a worker printing its own KeyboardInterrupt would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError):  # not on this platform / not permitted: run as is
        pass
    # A worker is disposable (the pool replaces it if a native decoder crashes), so it decodes
    # WSQ and lossless JPEG in process rather than in a fork per image.
    prefer_in_process()


@contextlib.contextmanager
def _children_ignore_sigint():
    """SIGINT ignored while a worker process may be started (a submit starts one when the
    slot has none): the child inherits the disposition across exec and Python then installs no
    KeyboardInterrupt handler, so a Ctrl-C to the process group while a worker is still
    importing neither kills it nor prints a traceback; :func:`_worker_init` keeps it ignored.
    Only the main thread may set a handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class WorkerCrashed(RuntimeError):
    """The worker process running a job died."""


class WorkTimeout(RuntimeError):
    """The job ran past its time; its worker process was killed and is replaced."""


class _Slot:
    """One worker process (a single-process executor): killing it touches no other job."""

    def __init__(self, memory: int | None = None):
        self.memory = memory
        self.executor: ProcessPoolExecutor | None = None
        self.busy = False
        self.timed_out = False

    def pool(self) -> ProcessPoolExecutor:
        if self.executor is None:
            self.executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.memory,),
            )
        return self.executor

    def kill(self) -> None:
        """Kill the process (the running future then fails with BrokenProcessPool)."""
        executor = self.executor
        # concurrent.futures keeps its processes in _processes (pid -> Process); there is
        # no public way to stop the one process that runs a job.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()

    def replace(self) -> None:
        old, self.executor = self.executor, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)


class WorkerPool:
    """``processes`` worker processes; jobs beyond them wait in order of :meth:`run` calls.

    ``run(fn, *args, timeout=s)`` caps a job's time: past it the job's process is killed and
    replaced, and its Deferred fails with :class:`WorkTimeout`.  ``memory``: each worker's
    private memory in bytes (:func:`limit_memory`; None: no cap).
    """

    def __init__(self, processes: int = 2, *, clock=None, memory: int | None = None):
        self.processes = max(1, int(processes))
        self.memory = memory or None
        self._reactor = clock or reactor
        self._slots = [_Slot(self.memory) for _ in range(self.processes)]
        self._waiting: deque = deque()
        self.crashes = 0
        self.timeouts = 0
        self.retired = 0  # workers replaced after a job past their memory
        self.running = 0

    def run(self, fn, *args, timeout: float | None = None) -> defer.Deferred:
        """Run ``fn(*args)`` in a worker; the Deferred fires in the reactor thread."""
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiting.append((d, fn, args, timeout))
        self._dispatch()
        return d

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._waiting:
                return
            if not slot.busy:
                self._start(slot, *self._waiting.popleft())

    def _start(self, slot: _Slot, d, fn, args, timeout) -> None:
        # one BLAS thread per worker: the workers already fill the cores, and OpenBLAS
        # threads spinning beside another worker cost more than they give (read by the
        # spawned children at start; this process's BLAS is already initialised)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        with _children_ignore_sigint():
            try:
                future = slot.pool().submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):
                slot.replace()
                future = slot.pool().submit(fn, *args)
        slot.busy = True
        self.running += 1
        timer = None
        if timeout is not None:
            timer = self._reactor.callLater(timeout, self._expire, slot, future)

        def done(f):
            self._reactor.callFromThread(self._finish, slot, d, f, timer)

        future.add_done_callback(done)

    def _expire(self, slot: _Slot, future) -> None:
        if not future.done():
            slot.timed_out = True
            slot.kill()

    def _finish(self, slot: _Slot, d: defer.Deferred, future, timer) -> None:
        if timer is not None and timer.active():
            timer.cancel()
        self.running -= 1
        slot.busy = False
        timed_out, slot.timed_out = slot.timed_out, False
        try:
            result = future.result()
        except BrokenProcessPool as exc:
            slot.replace()
            self._dispatch()
            if timed_out:
                self.timeouts += 1
                d.errback(WorkTimeout("the job ran past its time; its worker was replaced"))
            else:
                self.crashes += 1
                d.errback(WorkerCrashed(str(exc) or "a worker process died"))
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            if isinstance(exc, MemoryError):
                self._retire(slot)
            self._dispatch()
            d.errback(exc)
            return
        if getattr(result, "retire_worker", False):
            self._retire(slot)
        self._dispatch()
        d.callback(result)

    def _retire(self, slot: _Slot) -> None:
        """Replace the worker of a job that ran past its memory (its job is over: the process
        ends once its executor shuts down; the next job starts a fresh one)."""
        slot.replace()
        self.retired += 1

    @property
    def alive(self) -> int:
        """Worker processes alive now (0 before the first job: processes start on demand).

        Read from each executor's process table (concurrent.futures has no public count)."""
        count = 0
        for slot in self._slots:
            processes = getattr(slot.executor, "_processes", None) or {}
            count += sum(1 for p in list(processes.values()) if p.is_alive())
        return count

    def stop(self) -> None:
        for slot in self._slots:
            if slot.executor is not None:
                slot.executor.shutdown(wait=False, cancel_futures=True)
                slot.executor = None
        self._waiting.clear()  # the process is stopping: jobs not started are resumed later
