"""Builds the gateway's Twisted service tree from a :class:`~gateway.config.Config`.

One :class:`Gateway` holds the shared parts (journal, worker pool, pipeline, dispatcher); the
listeners (SMTP, SOAP/HTTP, admin) are endpoint services around it, in the spirit of Twisted's
``mail/tap.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from twisted.application import service, strports
from twisted.internet import reactor

from gateway.admin.web import admin_root
from gateway.matcher.pool import WorkerPool
from gateway.routing.outbound import Dispatcher
from gateway.routing.pipeline import Pipeline
from gateway.store.journal import Journal
from gateway.transports.http import http_sender
from gateway.transports.limits import LimitedSite, limit_connections
from gateway.transports.smtp import IntakeFactory, smtp_sender
from gateway.transports.soap import soap_root, soap_sender
from gateway.transports.spool import clear_spool, spool_dir

log = logging.getLogger("gateway")


class Intake:
    """What transports call: store durably, then hand to the pipeline."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def accept(self, items: list[bytes], *, transport: str, peer=None, reply_to=None) -> list[str]:
        ids = self.gateway.journal.accept_many(
            items, transport=transport, peer=peer, reply_to=reply_to
        )
        for msg_id in ids:
            reactor.callLater(0, self.gateway.pipeline.submit, msg_id)
        return ids


class Gateway(service.MultiService):
    """The running gateway: journal, pool, pipeline, dispatcher and the listeners."""

    def __init__(self, config, *, galleries: dict | None = None):
        super().__init__()
        self.config = config
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(data_dir / "journal.sqlite3", data_dir / "routing.log")
        self.pool = WorkerPool(config.workers)
        self.dispatcher = Dispatcher(
            self.journal,
            config,
            {"smtp": smtp_sender(config), "soap": soap_sender(config), "http": http_sender(config)},
        )
        self.galleries = dict(galleries or {})
        self.pipeline = Pipeline(
            config, self.journal, self.pool, self.dispatcher, galleries=self.galleries
        )
        self.intake = Intake(self)
        self.ports = {}
        self.limiters = {}  # listener name -> ConnectionLimiter (open connections, refusals)

        limits = config.limits
        clear_spool(data_dir)  # what a crash left there
        spool = spool_dir(data_dir)
        smtp_factory = IntakeFactory(
            self.intake,
            domain=config.smtp_domain,
            max_size=config.smtp_max_size,
            tls_context=_tls_context(config),
            limits=limits,
            spool_directory=spool,
        )
        self._listen("smtp", config.listen_smtp, smtp_factory)
        self._listen("soap", config.listen_soap, LimitedSite(soap_root(self), limits, spool))
        self._listen("admin", config.listen_admin, LimitedSite(admin_root(self), limits, spool))

    def _listen(self, name: str, description: str, factory) -> None:
        # every listener: connection limits before any work (SMTP 421, HTTP 503)
        kind = "smtp" if name == "smtp" else "http"
        factory = limit_connections(factory, self.config.limits, kind=kind, name=name)
        self.limiters[name] = factory
        svc = strports.service(description, factory)
        svc.setName(name)
        svc.setServiceParent(self)
        self.ports[name] = svc

    def startService(self):  # noqa: N802 - Twisted API
        super().startService()
        self.dispatcher.start()
        reactor.callLater(0, self.pipeline.resume)
        log.info("gateway started; data in %s", self.config.data_dir)

    def stopService(self):  # noqa: N802
        self.dispatcher.stop()
        d = super().stopService()
        self.pool.stop()

        def close(result):
            self.journal.close()
            return result

        if d is not None:
            d.addBoth(close)
        else:
            close(None)
        return d

    def port(self, name: str) -> int | None:
        """The bound TCP port of a listener (useful with 'tcp:0')."""
        svc = self.ports.get(name)
        waiting = getattr(svc, "_waitingForPort", None)
        if waiting is None or not waiting.called:
            return None
        listening = waiting.result
        return listening.getHost().port


def _tls_context(config):
    if config.smtp_tls_cert is None:
        return None
    from twisted.internet import ssl

    return ssl.DefaultOpenSSLContextFactory(str(config.smtp_tls_key), str(config.smtp_tls_cert))


def build_gateway(config) -> Gateway:
    """The gateway with its galleries: configured paths, else demo galleries when enabled."""
    import dataclasses

    galleries = {}
    if config.gallery_fbi is not None:
        galleries["fbi"] = str(config.gallery_fbi)
    if config.gallery_dhs is not None:
        galleries["dhs"] = str(config.gallery_dhs)
    if config.demo_gallery and not galleries:
        from gateway import demo

        root = Path(config.data_dir) / "galleries"
        for kind in ("fbi", "dhs"):
            path = demo.ensure_demo_gallery(root / f"{kind}-demo", config.demo_subjects, kind=kind)
            galleries[kind] = str(path)
        if "search_positions" not in config.raw.get("matcher", {}):
            # The demo subjects are enrolled with four fingers: search with those.
            config = dataclasses.replace(config, search_positions=demo.POSITIONS)
    return Gateway(config, galleries=galleries)
