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
from twisted.web import server

from gateway import pki
from gateway.admin.web import admin_root
from gateway.ansinist import peek
from gateway.matcher.pool import WorkerPool
from gateway.routing.authz import Authorizer, Identity, Refused, destinations, is_ansinist
from gateway.routing.outbound import Dispatcher
from gateway.routing.pipeline import Pipeline
from gateway.store.journal import Journal
from gateway.transports import tls
from gateway.transports.http import http_sender
from gateway.transports.smtp import IntakeFactory, smtp_sender
from gateway.transports.soap import soap_root, soap_sender

log = logging.getLogger("gateway")


class Intake:
    """What transports call: authorize, store durably, then hand to the pipeline."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.refused = 0

    def identify(self, fingerprint: str | None, *, transport: str, peer=None) -> Identity:
        """The identity of a peer (its verified certificate's fingerprint) or :class:`Refused`."""
        try:
            return self.gateway.authorizer.identify(fingerprint)
        except Refused as exc:
            self._refused(exc, transport, peer, None)
            raise

    def authorize(self, items: list[bytes], identity: Identity, *, transport: str, peer=None):
        """The agency each item belongs to (None for the LESC's Nlets text), or :class:`Refused`.

        All items or none: one refused item refuses the whole message, before anything is stored.
        """
        authz = self.gateway.authorizer
        owners: list[str | None] = []
        try:
            for data in items:
                if not is_ansinist(data):
                    if not authz.may_send_nlets(identity):
                        raise Refused(
                            f"identity {identity} may not send Nlets text (IAR): only the LESC does"
                        )
                    owners.append(None)
                    continue
                ori = peek(data).get("1.008") or None
                agency = authz.agency_for(identity, ori)
                if agency is None or not destinations(agency, transport):
                    name = agency.ori if agency is not None else identity.name
                    raise Refused(f"agency {name} has no registered destination for answers")
                owners.append(agency.ori)
        except Refused as exc:
            self._refused(exc, transport, peer, identity)
            raise
        return owners

    def accept(
        self,
        items: list[bytes],
        *,
        transport: str,
        peer=None,
        reply_to=None,
        fingerprint: str | None = None,
        identity: Identity | None = None,
    ) -> list[str]:
        """Authorize ``items`` for the peer, store them in one commit, queue them; ids back.

        Raises :class:`Refused` (nothing stored) when the peer may not submit them.
        """
        if identity is None:
            identity = self.identify(fingerprint, transport=transport, peer=peer)
        owners = self.authorize(items, identity, transport=transport, peer=peer)
        ids = self.gateway.journal.accept_many(
            items,
            transport=transport,
            peer=peer,
            reply_to=reply_to,
            agencies=owners,
            identity=str(identity),
        )
        for msg_id in ids:
            reactor.callLater(0, self.gateway.pipeline.submit, msg_id)
        return ids

    def _refused(self, exc: Refused, transport: str, peer, identity) -> None:
        self.refused += 1
        # The reason names the ORI and the identity, never a personal field.
        log.warning("refused a %s submission from %s: %s", transport, peer, exc.reason)


class Gateway(service.MultiService):
    """The running gateway: journal, pool, pipeline, dispatcher and the listeners."""

    def __init__(self, config, *, galleries: dict | None = None):
        super().__init__()
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        config = tls.resolve(config)  # the data directory's own PKI when [tls] names no files
        self.config = config
        self.authorizer = Authorizer(config, tls.issued_identities(config))
        self.tls_options = tls.server_options(config.tls) if config.tls.enabled else None
        self.journal = Journal(data_dir / "journal.sqlite3", data_dir / "routing.log")
        self.pool = WorkerPool(config.workers)
        self.dispatcher = Dispatcher(
            self.journal,
            config,
            {"smtp": smtp_sender(config), "soap": soap_sender(config), "http": http_sender(config)},
        )
        self.galleries = dict(galleries or {})
        self.pipeline = Pipeline(
            config,
            self.journal,
            self.pool,
            self.dispatcher,
            galleries=self.galleries,
            control_key=pki.secret(data_dir / "iaq-control.key"),
        )
        self.intake = Intake(self)
        self.ports = {}

        smtp_factory = IntakeFactory(
            self.intake,
            domain=config.smtp_domain,
            max_size=config.smtp_max_size,
            tls_context=self.tls_options,
            require_tls=config.tls.enabled,
        )
        self._listen("smtp", config.listen_smtp, smtp_factory)
        self._listen("soap", config.listen_soap, self._https(server.Site(soap_root(self))))
        admin = admin_root(self)
        if self.tls_options is not None:
            admin = tls.ClientCertificateRequired(admin)
        self._listen("admin", config.listen_admin, self._https(server.Site(admin)))

    def _https(self, site):
        """HTTP listeners speak TLS from the first byte when TLS is on."""
        return site if self.tls_options is None else tls.wrap(site, self.tls_options)

    def _listen(self, name: str, description: str, factory) -> None:
        svc = strports.service(description, factory)
        svc.setName(name)
        svc.setServiceParent(self)
        self.ports[name] = svc

    def startService(self):  # noqa: N802 - Twisted API
        super().startService()
        self.dispatcher.start()
        reactor.callLater(0, self.pipeline.resume)
        log.info("gateway started; data in %s", self.config.data_dir)
        if not self.config.tls.enabled:
            log.warning(
                'TLS is off ([tls] mode = "off"): peers are not authenticated; '
                "every listener is on loopback, use this for tests only"
            )

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
