"""Builds the gateway's Twisted service tree from a :class:`~gateway.config.Config`.

One :class:`Gateway` holds the shared parts (journal, worker pool, pipeline, dispatcher); the
listeners (SMTP, SOAP/HTTP, admin) are endpoint services around it, in the spirit of Twisted's
``mail/tap.py``.

Start-up order: the listeners open first (a port in use is a :class:`ListenError` naming the
listener and its address), then the dispatcher; demo galleries missing on a fresh data directory
are built by a background process (:func:`gateway.demo.main`) whose progress lines are logged,
while submissions are accepted, stored and held until the galleries are ready.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, error, protocol
from twisted.internet import reactor as _reactor
from twisted.web import server

from gateway.admin.web import admin_root
from gateway.matcher.pool import WorkerPool
from gateway.routing.outbound import Dispatcher
from gateway.routing.pipeline import Pipeline
from gateway.store.journal import Journal
from gateway.transports.http import http_sender
from gateway.transports.smtp import IntakeFactory, smtp_sender
from gateway.transports.soap import soap_root, soap_sender

# The global reactor provides its interfaces through zope.interface, which mypy does not follow.
reactor: Any = _reactor
log = logging.getLogger("gateway")
demo_log = logging.getLogger("gateway.demo")


class ListenError(Exception):
    """A listener could not open its port: one line naming the listener, address and reason."""

    def __init__(self, name: str, address: str, reason: str):
        super().__init__(f"cannot listen: {name} on {address}: {reason}")
        self.name, self.address, self.reason = name, address, reason


class _Listener(StreamServerEndpointService):
    """An endpoint service whose failure to listen raises from ``startService``.

    ``_raiseSynchronously`` is the class's documented switch for this: without it the failure
    is only logged as an unhandled error and the daemon runs on with nothing listening.
    """

    _raiseSynchronously = True


class Intake:
    """What transports call: store durably, then hand to the pipeline."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def accept(
        self,
        items: list[bytes],
        *,
        transport: str,
        peer=None,
        reply_to=None,
        mail_message_id: str | None = None,
    ) -> list[str]:
        ids = self.gateway.journal.accept_many(
            items,
            transport=transport,
            peer=peer,
            reply_to=reply_to,
            mail_message_id=mail_message_id,
        )
        for msg_id in ids:
            self.gateway.submit(msg_id)
        return ids


class Gateway(service.MultiService):
    """The running gateway: journal, pool, pipeline, dispatcher and the listeners.

    ``demo_galleries`` (kind -> folder) are built in the background by :meth:`startService`
    when they are not there yet; until they are, accepted messages wait in the journal.
    """

    def __init__(self, config, *, galleries: dict | None = None, demo_galleries=None):
        super().__init__()
        self.config = config
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(data_dir / "journal.sqlite3", data_dir / "routing.log")
        self.pool = WorkerPool(config.workers)
        self.dispatcher = Dispatcher(
            self.journal,
            config,
            {
                "smtp": smtp_sender(config, journal=self.journal),
                "soap": soap_sender(config),
                "http": http_sender(config),
            },
        )
        self.galleries = dict(galleries or {})
        self.pipeline = Pipeline(
            config, self.journal, self.pool, self.dispatcher, galleries=self.galleries
        )
        # one dict, filled in when the demo galleries are built
        self.pipeline.galleries = self.galleries
        self.intake = Intake(self)
        self.ports: dict[str, StreamServerEndpointService] = {}
        self.addresses: dict[str, str] = {}
        # Galleries still to build (kind -> folder); while not None, processing is held.
        self.pending_galleries: dict[str, Path] | None = None
        if demo_galleries:
            from gateway import demo

            if all(demo.is_built(path) for path in demo_galleries.values()):
                self.galleries.update({kind: str(p) for kind, p in demo_galleries.items()})
            else:
                self.pending_galleries = dict(demo_galleries)
        self.held = 0  # messages accepted while the galleries were being built
        self.exit_code = 0
        self._builder: _DemoBuilder | None = None
        self.builder_factory = _DemoBuilder  # (subjects, {kind: folder}) -> builder

        smtp_factory = IntakeFactory(
            self.intake,
            domain=config.smtp_domain,
            max_size=config.smtp_max_size,
            tls_context=_tls_context(config),
        )
        self._listen("smtp", config.listen_smtp, smtp_factory)
        self._listen("soap", config.listen_soap, server.Site(soap_root(self)))
        self._listen("admin", config.listen_admin, server.Site(admin_root(self)))

    def _listen(self, name: str, description: str, factory) -> None:
        svc = _Listener(endpoints.serverFromString(reactor, description), factory)
        svc.setName(name)
        svc.setServiceParent(self)
        self.ports[name] = svc

    def submit(self, msg_id: str) -> None:
        """Hand a stored message to the pipeline, or hold it until the galleries are built."""
        if self.pending_galleries is not None:
            self.held += 1  # in the journal: taken up by resume() when the galleries are ready
            return
        reactor.callLater(0, self.pipeline.submit, msg_id)

    def startService(self):  # noqa: N802 - Twisted API
        """Open the listeners (ListenError names the one that failed), then start the work."""
        service.Service.startService(self)
        for svc in self:
            try:
                svc.startService()
            except error.CannotListenError as exc:
                address = f"{exc.interface or '0.0.0.0'}:{exc.port}"
                reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
                raise ListenError(svc.name, address, reason.lower()) from None
        for name, svc in self.ports.items():
            waiting = svc._waitingForPort
            assert waiting is not None and waiting.called  # startService listened, or raised
            host = waiting.result.getHost()
            self.addresses[name] = f"{host.host}:{host.port}"
            log.info("listening: %s on %s, %s", name, self.addresses[name], _tls_state(self, name))
        self.dispatcher.start()
        if self.pending_galleries is not None:
            self._builder = self.builder_factory(self.config.demo_subjects, self.pending_galleries)
            self._builder.done.addCallbacks(self._galleries_built, self._galleries_failed)
            log.info(
                "building the demo galleries in the background (process %d); submissions are "
                "accepted meanwhile and processed when they are ready",
                self._builder.pid,
            )
        else:
            reactor.callLater(0, self.pipeline.resume)
        log.info("gateway started; data in %s", self.config.data_dir)

    def _galleries_built(self, _):
        self._builder = None
        pending, self.pending_galleries = self.pending_galleries or {}, None
        self.galleries.update({kind: str(path) for kind, path in pending.items()})
        log.info("demo galleries ready; processing %d waiting submissions", self.held)
        self.pipeline.resume()

    def _galleries_failed(self, failure):
        self._builder = None
        if failure.check(defer.CancelledError):
            return None
        log.error("the demo galleries could not be built (%s); stopping", failure.getErrorMessage())
        self.exit_code = 1
        if reactor.running:
            reactor.stop()
        return None

    def stopService(self):  # noqa: N802
        log.info("stopping")
        service.Service.stopService(self)
        stops = []
        if self._builder is not None:
            stops.append(self._builder.stop())
        self.dispatcher.stop()
        # Only what was started: a port conflict stops the start half-way.
        for svc in reversed(list(self)):
            if svc.running:
                stops.append(defer.maybeDeferred(svc.stopService))
        self.pool.stop()

        def close(result):
            self.journal.close()
            log.info("stopped")
            return None

        return defer.DeferredList(stops, consumeErrors=True).addBoth(close)

    def port(self, name: str) -> int | None:
        """The bound TCP port of a listener (useful with 'tcp:0')."""
        svc = self.ports.get(name)
        waiting = getattr(svc, "_waitingForPort", None)
        if waiting is None or not waiting.called:
            return None
        listening = waiting.result
        return listening.getHost().port


class _DemoBuilder(protocol.ProcessProtocol):
    """The background process building the demo galleries; its progress lines are logged."""

    def __init__(self, subjects: int, paths: dict[str, Path]):
        self.done: defer.Deferred = defer.Deferred()
        self._partial = b""
        self._stopping = False
        args = [sys.executable, "-m", "gateway.demo", "--subjects", str(subjects)]
        args += [str(paths["fbi"]), str(paths["dhs"])]
        transport = reactor.spawnProcess(self, sys.executable, args, env=dict(os.environ))
        self.pid = transport.pid

    def childDataReceived(self, fd, data):  # noqa: N802 - Twisted API
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                demo_log.info("%s", text[:500])

    def processEnded(self, reason):  # noqa: N802
        self.childDataReceived(2, b"\n")
        if self._stopping:
            self.done.errback(defer.CancelledError())
        elif reason.check(error.ProcessDone):
            self.done.callback(None)
        else:
            code = reason.value.exitCode
            what = f"exit status {code}" if code is not None else f"signal {reason.value.signal}"
            self.done.errback(RuntimeError(f"the builder process ended with {what}"))

    def stop(self) -> defer.Deferred:
        """Terminate the builder (SIGTERM; the folder being written is a NAME.tmp)."""
        self._stopping = True
        ended: defer.Deferred[None] = defer.Deferred()
        self.done.addBoth(lambda _: ended.callback(None))
        transport: Any = self.transport
        try:
            transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            pass
        return ended


def _tls_state(gateway: Gateway, name: str) -> str:
    """How a listener is secured, from the configuration (as the log and /health say it)."""
    if name == "smtp" and gateway.config.smtp_tls_cert is not None:
        return "TLS by STARTTLS"
    return "TLS off"


def _tls_context(config):
    if config.smtp_tls_cert is None:
        return None
    from twisted.internet import ssl

    return ssl.DefaultOpenSSLContextFactory(str(config.smtp_tls_key), str(config.smtp_tls_cert))


def build_gateway(config) -> Gateway:
    """The gateway with its galleries: configured paths, else demo galleries when enabled.

    Demo galleries that are not built yet are built in the background once the gateway starts.
    """
    import dataclasses

    galleries = {}
    if config.gallery_fbi is not None:
        galleries["fbi"] = str(config.gallery_fbi)
    if config.gallery_dhs is not None:
        galleries["dhs"] = str(config.gallery_dhs)
    demo_galleries = None
    if config.demo_gallery and not galleries:
        from gateway import demo

        root = Path(config.data_dir) / "galleries"
        demo_galleries = {kind: root / f"{kind}-demo" for kind in ("fbi", "dhs")}
        if "search_positions" not in config.raw.get("matcher", {}):
            # The demo subjects are enrolled with four fingers: search with those.
            config = dataclasses.replace(config, search_positions=demo.POSITIONS)
    return Gateway(config, galleries=galleries, demo_galleries=demo_galleries)
