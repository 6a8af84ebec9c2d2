"""Outbound delivery: the durable queue of responses, retried with exponential backoff.

Each queued delivery (a row of the journal's ``outbound`` table) is sent by the sender
registered for its kind (``smtp``, ``soap``); success marks it SENT, failure RETRYING with the
next attempt at ``min(retry_max, retry_initial * 2**attempts)`` (+-10 % jitter), and FAILED
after ``retry_attempts``.  The queue lives in the journal, so it survives restarts.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from twisted.internet import defer, reactor

log = logging.getLogger("gateway.outbound")


class Dispatcher:
    max_in_flight = 8  # concurrent deliveries
    send_timeout = 120.0  # seconds before a hanging delivery counts as failed

    def __init__(self, journal, config, senders: dict, *, clock=None, rng=None):
        self.journal = journal
        self.config = config
        self.senders = senders  # kind -> callable(item, payload) -> Deferred
        self.clock: Any = clock or reactor  # IReactorTime (a zope interface mypy cannot see)
        self.rng = rng or random.Random()
        self._inflight: set[int] = set()
        self._timer: Any = None  # IDelayedCall
        self._running = False
        self.sent = 0
        self.failures = 0
        # the journal says when a committed answer has deliveries to make (events after commit)
        subscribe = getattr(journal, "after_commit", None)
        if subscribe is not None:
            subscribe(self._on_event)

    def _on_event(self, event: str, fields: dict) -> None:
        if event == "delivery_queued":
            self.kick()

    def start(self) -> None:
        self._running = True
        self.kick()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def kick(self, delay: float = 0.0) -> None:
        """Look at the queue now (or after ``delay`` seconds)."""
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() - self.clock.seconds() <= delay:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._run)

    def backoff(self, attempts: int) -> float:
        base = min(self.config.retry_max, self.config.retry_initial * (2**attempts))
        return base * self.rng.uniform(0.9, 1.1)

    def _run(self) -> None:
        self._timer = None
        now = time.time()
        for item in self.journal.due(now, limit=self.max_in_flight + len(self._inflight)):
            if item.id in self._inflight:
                continue
            if len(self._inflight) >= self.max_in_flight:
                break
            self._inflight.add(item.id)
            self._send(item)
        self._schedule_next()

    def _schedule_next(self) -> None:
        if not self._running:
            return
        nxt = self.journal.next_due_time()
        if nxt is not None:
            self.kick(max(0.05, min(60.0, nxt - time.time())))
        else:
            self.kick(5.0)

    def _send(self, item) -> None:
        sender = self.senders.get(item.kind)
        started = time.perf_counter()
        if sender is None:
            d = defer.fail(RuntimeError(f"no sender for {item.kind!r} deliveries"))
        else:
            try:
                d = defer.maybeDeferred(sender, item, self.journal.payload(item.payload))
            except Exception as exc:  # noqa: BLE001
                d = defer.fail(exc)

        d.addTimeout(self.send_timeout, self.clock)

        def ok(_):
            if not self._running:
                return  # stopped meanwhile: the row stays due and is sent again after restart
            self.journal.delivered(item, (time.perf_counter() - started) * 1000)
            self.sent += 1

        def failed(failure):
            self.failures += 1
            if not self._running:
                return
            error = failure.getErrorMessage() or failure.type.__name__
            attempts = item.attempts + 1
            if attempts >= self.config.retry_attempts:
                log.error("delivery %s to %s failed for good: %s", item.id, item.destination, error)
                self.journal.delivery_failed(item, error, retry_at=None)
            else:
                retry = time.time() + self.backoff(item.attempts)
                self.journal.delivery_failed(item, error, retry_at=retry)

        def done(_):
            self._inflight.discard(item.id)
            self._schedule_next()

        d.addCallbacks(ok, failed)
        d.addErrback(lambda f: log.error("outbound bookkeeping failed: %s", f.getTraceback()))
        d.addBoth(done)
