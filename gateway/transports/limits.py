"""Budgets of the listeners: connections, timeouts, data rates and HTTP body sizes.

- :class:`ConnectionLimiter` wraps any listener's factory: at most ``max_connections`` open
  connections per listener and ``max_connections_per_peer`` per client address; one more is
  answered at once, before its protocol is even built (SMTP ``421``, HTTP ``503``), and closed.
- :class:`Budget` is the clock of one connection.  Its protocol tells it which phase it is in:
  ``idle`` (nothing pending), ``command`` (an SMTP command line or an HTTP request head has
  begun: it must end within ``command_timeout``; this cuts slowloris), ``message`` (SMTP DATA or
  an HTTP body: at least ``min_data_rate`` bytes/s over each ``data_rate_window`` seconds and
  at most ``max_message_seconds`` in all) or ``busy`` (the server is answering).  Idle time is
  the protocol's own timeout (``idle_timeout``).
- :class:`LimitedSite` is a ``twisted.web`` site whose channel keeps such a budget, refuses a
  body larger than ``max_body_size`` from its Content-Length with ``413`` before reading it (a
  chunked body as soon as it passes the limit) and spools bodies (:mod:`.spool`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any, cast

from twisted.internet import defer, threads
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import connectionDone
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web import http, server

from .spool import Spool

log = logging.getLogger("gateway.limits")

# The global reactor provides its interfaces through zope.interface, which mypy does not follow.
reactor: Any = _reactor

ABORT_AFTER = 5.0  # seconds a refused peer gets to read our answer before the socket is cut

IDLE, COMMAND, MESSAGE, BUSY = "idle", "command", "message", "busy"


# -- parsing off the reactor ------------------------------------------------------------------
_parser_pool: ThreadPool | None = None
_libc = None


def _trim() -> None:
    """Give freed heap memory back to the system (glibc keeps a large message's pages)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    if isinstance(_libc, ctypes.CDLL) and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def _trimmed(function, *args):
    try:
        return function(*args)
    finally:
        _trim()


trimmed = _trimmed  # the store thread's jobs too (gateway.offload)


def in_parser_thread(function, *args):
    """Run ``function(*args)`` in the one parser thread (a Deferred).

    MIME messages and SOAP envelopes are parsed there, one at a time: never in the reactor
    thread, and the memory of parsing does not multiply with the number of large messages that
    end together (one thread: one malloc arena, trimmed after each parse).
    """
    global _parser_pool
    if _parser_pool is None:
        _parser_pool = ThreadPool(minthreads=0, maxthreads=1, name="gateway-parser")
        _parser_pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", _stop_parser_pool)
    return threads.deferToThreadPool(reactor, _parser_pool, _trimmed, function, *args)


_one_large = defer.DeferredSemaphore(1)


def one_large_message_at_a_time(large: bool, work) -> defer.Deferred:
    """``work()`` (a Deferred: parse a message, then store it) for at most one ``large`` (spooled)
    message at a time.  The parser thread is faster than the store thread: without this the
    decoded attachments of large messages that end together would wait in memory, all of them.
    """
    if not large:
        return work()
    return _one_large.run(work)


def _stop_parser_pool() -> None:
    global _parser_pool
    pool, _parser_pool = _parser_pool, None
    if pool is not None:
        pool.stop()


# -- connections ------------------------------------------------------------------------------
class _Refusal(policies.ProtocolWrapper):
    """A connection over the limit: the refusal is written, then the connection closed."""

    def __init__(self, factory, wrapped, refusal: bytes):
        super().__init__(factory, wrapped)
        self.refusal = refusal

    def makeConnection(self, transport):  # noqa: N802 - Twisted API
        self.transport = transport  # the wrapped protocol never sees this connection
        self.connected = 1
        transport.write(self.refusal)
        transport.loseConnection()
        abort_later(transport, self.factory.clock)

    def dataReceived(self, data):  # noqa: N802
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.connected = 0


class _Counted(policies.ProtocolWrapper):
    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted API
        self.factory.released(self)
        super().connectionLost(reason)


class ConnectionLimiter(policies.WrappingFactory):
    """At most ``max_connections`` (and ``max_per_peer`` per peer address) at once."""

    protocol = _Counted

    def __init__(self, wrapped, *, max_connections: int, max_per_peer: int, refusal: bytes,
                 clock=None, name: str = ""):  # fmt: skip
        super().__init__(wrapped)
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.refusal = refusal
        self.clock = clock or reactor
        self.name = name
        self.peers: dict[str, int] = {}
        self.open = 0
        self.refused = 0

    def buildProtocol(self, addr):  # noqa: N802 - Twisted API
        peer = getattr(addr, "host", None) or str(addr)
        if self.open >= self.max_connections or self.peers.get(peer, 0) >= self.max_per_peer:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("%s: connection limit reached; refused %d so far", self.name,
                            self.refused)  # fmt: skip
            return _Refusal(self, None, self.refusal)
        wrapper: Any = super().buildProtocol(addr)  # a _Counted, which carries peer_host
        if wrapper is None:
            return None
        wrapper.peer_host = peer
        self.open += 1
        self.peers[peer] = self.peers.get(peer, 0) + 1
        return wrapper

    def released(self, wrapper) -> None:
        peer = getattr(wrapper, "peer_host", None)
        if peer is None:
            return
        wrapper.peer_host = None
        self.open -= 1
        left = self.peers.get(peer, 1) - 1
        if left > 0:
            self.peers[peer] = left
        else:
            self.peers.pop(peer, None)


SMTP_TOO_MANY = b"421 4.7.0 too many connections, try again later\r\n"
HTTP_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 43\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many connections, try again later.\r\n\r\n"
)


def limit_connections(factory, limits, *, kind: str, name: str = "", clock=None):
    """``factory`` behind a :class:`ConnectionLimiter` with the refusal of its protocol."""
    return ConnectionLimiter(
        factory,
        max_connections=limits.max_connections,
        max_per_peer=limits.max_connections_per_peer,
        refusal=SMTP_TOO_MANY if kind == "smtp" else HTTP_TOO_MANY,
        clock=clock,
        name=name or kind,
    )


def _abort(transport) -> None:
    if getattr(transport, "connected", False) and hasattr(transport, "abortConnection"):
        transport.abortConnection()


def abort_later(transport, clock=None) -> None:
    """Cut ``transport`` in :data:`ABORT_AFTER` seconds unless it has closed by then (a peer
    that does not read our last answer must not hold the connection open)."""
    (clock or reactor).callLater(ABORT_AFTER, _abort, transport)


# -- the clock of one connection ---------------------------------------------------------------
class Budget:
    """Timers of one connection; ``exceeded(reason)`` is called once when a budget runs out.

    ``reason`` is ``"command"`` (a command or request head took longer than
    ``command_timeout``), ``"rate"`` (a message arrived slower than ``min_data_rate``) or
    ``"deadline"`` (a message took longer than ``max_message_seconds``).
    """

    def __init__(self, limits, exceeded, call_later=None):
        self.limits = limits
        self.exceeded = exceeded
        self.call_later = call_later or reactor.callLater
        self.phase = IDLE
        self.received = 0  # bytes since the message began
        self._timers: list = []
        self._window_start = 0
        self.spent = False

    def feed(self, count: int) -> None:
        """``count`` bytes arrived."""
        self.received += count

    def enter(self, phase: str) -> None:
        """The protocol is now in ``phase`` (repeating the current phase changes nothing)."""
        if phase == self.phase or self.spent:
            return
        self.cancel()
        self.phase = phase
        limits = self.limits
        if phase == COMMAND:
            self._timers.append(self.call_later(limits.command_timeout, self._fire, COMMAND))
        elif phase == MESSAGE:
            self.received = 0
            self._window_start = 0
            self._timers.append(self.call_later(limits.max_message_seconds, self._fire, "deadline"))
            if limits.min_data_rate > 0:
                self._timers.append(self.call_later(limits.data_rate_window, self._check_rate))

    def _check_rate(self) -> None:
        if self.phase != MESSAGE or self.spent:
            return
        got = self.received - self._window_start
        if got < self.limits.min_data_rate * self.limits.data_rate_window:
            self._fire("rate")
            return
        self._window_start = self.received
        self._timers.append(self.call_later(self.limits.data_rate_window, self._check_rate))

    def _fire(self, reason: str) -> None:
        if self.spent:
            return
        self.spent = True
        self.cancel()
        self.exceeded(reason)

    def cancel(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []

    def describe(self, reason: str) -> str:
        """The reason in words, for the refusal sent to the peer."""
        limits = self.limits
        if reason == COMMAND:
            return f"command not completed within {limits.command_timeout:g} seconds"
        if reason == "rate":
            return (
                f"data slower than {limits.min_data_rate} bytes/s over "
                f"{limits.data_rate_window:g} seconds"
            )
        return f"message not completed within {limits.max_message_seconds:g} seconds"


# -- HTTP --------------------------------------------------------------------------------------
def _http_answer(code: int, reason: str, text: str) -> bytes:
    body = (text + "\r\n").encode("ascii", "replace")
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class LimitedRequest(server.Request):
    """A request whose body is refused past ``max_body_size`` and spooled past a threshold."""

    channel: LimitedChannel  # LimitedSite builds LimitedChannels

    def gotLength(self, length):  # noqa: N802 - Twisted API
        limits = self.channel.limits
        self._body_size = 0
        if length is not None and length > limits.max_body_size:
            self.content = None
            self.channel.refuse(
                413,
                "Content Too Large",
                f"request body of {length} bytes exceeds the limit of {limits.max_body_size}",
            )
            return
        self.content = Spool(self.channel.spool_directory, limits.spool_threshold)

    def handleContentChunk(self, data):  # noqa: N802 - Twisted API
        if self.channel.refused or self.content is None:
            return
        self._body_size += len(data)
        limit = self.channel.limits.max_body_size
        if self._body_size > limit:  # a chunked body: refused as soon as it passes the limit
            self.channel.refuse(
                413, "Content Too Large", f"request body exceeds the limit of {limit} bytes"
            )
            return
        self.content.write(data)


class LimitedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with a :class:`Budget` (request heads, body rate and deadline)."""

    limits: Any = None  # the listener's limits, set by LimitedSite.buildProtocol
    spool_directory = None
    refused = False

    def connectionMade(self):  # noqa: N802 - Twisted API
        self.budget = Budget(self.limits, self._exceeded, self.callLater)
        super().connectionMade()

    def dataReceived(self, data):  # noqa: N802 - Twisted API
        if self.refused:
            return
        self.budget.feed(len(data))
        if self.budget.phase == IDLE:
            self.budget.enter(COMMAND)  # a request head has begun
        super().dataReceived(data)
        if self.refused or self.transport is None:
            return
        if self._handlingRequest:
            self.budget.enter(BUSY)
        elif self.line_mode:
            self.budget.enter(COMMAND if (self._buffer or self.requests) else IDLE)
        else:
            self.budget.enter(MESSAGE)

    def allContentReceived(self):  # noqa: N802 - Twisted API
        if self.refused:
            return
        self.budget.enter(BUSY)
        super().allContentReceived()

    def requestDone(self, request):  # noqa: N802 - Twisted API
        super().requestDone(request)
        if not self.refused and not self._handlingRequest:
            self.budget.enter(COMMAND if self._buffer else IDLE)

    def _exceeded(self, reason: str) -> None:
        if self._handlingRequest:
            self.budget.spent = False  # our answer is under way: the next request has a clock
            return

        self.refuse(408, "Request Timeout", self.budget.describe(reason))

    def _send100Continue(self):  # noqa: N802 - Twisted API
        if not self.refused:  # after a 413, no "100 Continue" invites the body
            super()._send100Continue()

    def refuse(self, code: int, reason: str, text: str) -> None:
        """Answer ``code`` at once, read nothing more, close (abort if the peer does not read)."""
        if self.refused:
            return
        self.refused = True
        self.budget.spent = True
        self.budget.cancel()
        # connected (the budget's timers are cancelled on connectionLost); mypy does not follow
        # zope.interface methods seen through ITransport
        transport = cast(Any, self.transport)
        log.info("HTTP %d to %s: %s", code, getattr(transport.getPeer(), "host", "?"), text)
        transport.write(_http_answer(code, reason, text))
        transport.loseConnection()
        abort_later(transport, self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted API
        self.budget.cancel()
        for request in self.requests:
            content = getattr(request, "content", None)
            if content is not None:
                content.close()
        super().connectionLost(reason)


class LimitedSite(server.Site):
    """A :class:`twisted.web.server.Site` with the budgets of ``limits`` on every channel."""

    protocol = LimitedChannel  # type: ignore[assignment]  # Site takes any HTTPChannel class
    requestFactory = LimitedRequest

    def __init__(self, resource, limits, spool_directory, **kwargs):
        super().__init__(resource, **kwargs)
        self.limits = limits
        self.spool_directory = spool_directory
        self.timeOut = limits.idle_timeout

    def buildProtocol(self, addr):  # noqa: N802 - Twisted API
        channel = super().buildProtocol(addr)
        channel.limits = self.limits
        channel.spool_directory = self.spool_directory
        return channel
