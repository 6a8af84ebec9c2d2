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
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, error, protocol, task
from twisted.internet import reactor as _reactor

from gateway import pki
from gateway.admin.alerts import AlertChecker
from gateway.admin.auth import Guard
from gateway.admin.web import admin_root
from gateway.ansinist import peek
from gateway.matcher.pool import WorkerPool
from gateway.offload import StoreThread
from gateway.routing.authz import Authorizer, Identity, Refused, destinations, is_ansinist
from gateway.routing.outbound import Dispatcher
from gateway.routing.pipeline import Pipeline
from gateway.store.audit import Audit, config_hash
from gateway.store.crypto import ensure_private_dir
from gateway.store.errors import STORE_ERRORS
from gateway.store.journal import Journal, StoredPayload
from gateway.store.users import Users
from gateway.transports import tls
from gateway.transports.http import http_sender
from gateway.transports.limits import ConnectionLimiter, LimitedSite, limit_connections
from gateway.transports.smtp import IntakeFactory, smtp_sender
from gateway.transports.soap.sender import soap_sender
from gateway.transports.soap.server import soap_root
from gateway.transports.spool import clear_spool, spool_dir

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


# Encryption at rest is always on; a benchmark turns it off here to measure its cost
# (benchmarks/gateway.py). Deliberately not a configuration setting.
ENCRYPT_AT_REST = True


class Intake:
    """What transports call: authorize, store durably (with the audit records), then hand to the
    pipeline.  Refusals are audited (``gateway.audit.submission_refused``) and stored nowhere else.
    """

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
        return self._authorize(items, identity, transport, peer)[0]

    def _authorize(self, items, identity, transport, peer):
        """(owners, Type-1 values of each item): each item is peeked once."""
        authz = self.gateway.authorizer
        owners: list[str | None] = []
        heads: list[dict] = []
        data = None
        try:
            for data in items:
                if not is_ansinist(data):
                    if not authz.may_send_nlets(identity):
                        raise Refused(
                            f"identity {identity} may not send Nlets text (IAR): only the LESC does"
                        )
                    owners.append(None)
                    heads.append({})
                    continue
                t1 = peek(data)
                agency = authz.agency_for(identity, t1.get("1.008") or None)
                if agency is None or not destinations(agency, transport):
                    name = agency.ori if agency is not None else identity.name
                    raise Refused(f"agency {name} has no registered destination for answers")
                owners.append(agency.ori)
                heads.append(t1)
        except Refused as exc:
            self._refused(exc, transport, peer, identity, data)
            raise
        return owners, heads

    def accept(
        self,
        items: Sequence[bytes | StoredPayload],
        *,
        transport: str,
        peer=None,
        reply_to=None,
        fingerprint: str | None = None,
        identity: Identity | None = None,
        mail_message_id: str | None = None,
        authorized: tuple[list, list] | None = None,
    ) -> list[str]:
        """Authorize ``items`` for the peer, store them in one commit, queue them; ids back.

        Raises :class:`Refused` (nothing stored) when the peer may not submit them.
        ``authorized``: what :meth:`accept_async` found, when items are already stored.
        """
        if identity is None:
            identity = self.identify(fingerprint, transport=transport, peer=peer)
        if authorized is None:
            authorized = self._authorize(items, identity, transport, peer)
        owners, heads = authorized
        journal, audit = self.gateway.journal, self.gateway.audit
        # a busy node leaves new work to any node of a shared database (claims, NOTIFY)
        keep = self.gateway.keeps_work()
        with journal.transaction():  # the messages and their audit records: one commit
            ids = journal.accept_many(
                items,
                transport=transport,
                peer=peer,
                reply_to=reply_to,
                agencies=owners,
                identity=str(identity),
                mail_message_id=mail_message_id,
                claim=keep,
                keys=[(t1.get("1.008"), t1.get("1.009")) for t1 in heads],
            )
            for msg_id, t1 in zip(ids, heads, strict=True):
                audit.submission_accepted(
                    channel=transport,
                    peer=peer,
                    identity=str(identity),
                    ori=t1.get("1.008"),
                    tcn=t1.get("1.009"),
                    message_id=msg_id,
                )
        if keep:
            for msg_id in ids:
                self.gateway.submit(msg_id)
        return ids

    def accept_async(
        self,
        items: list[bytes],
        *,
        transport: str,
        peer=None,
        reply_to=None,
        identity: Identity | None = None,
        mail_message_id: str | None = None,
    ) -> defer.Deferred:
        """:meth:`accept`, with the per-byte work of large items (digest, seal, the payload's
        INSERT and its commit) done in the store thread (:mod:`gateway.offload`).

        Authorization comes first (a refused message costs no storing); the messages and their
        audit records are then committed here in one small transaction, and only then does the
        Deferred fire with the ids: the transport acknowledges after that, as with
        :meth:`accept`.  Fails with :class:`Refused` (nothing stored) or a storage error.
        """
        try:
            if identity is None:
                identity = self.identify(None, transport=transport, peer=peer)
            authorized = self._authorize(items, identity, transport, peer)
        except Refused:
            return defer.fail()
        d = self.gateway.store_thread.store(items)
        d.addCallback(
            lambda stored: self.accept(
                stored,
                transport=transport,
                peer=peer,
                reply_to=reply_to,
                identity=identity,
                mail_message_id=mail_message_id,
                authorized=authorized,
            )
        )
        return d

    def _refused(self, exc: Refused, transport: str, peer, identity, data=None) -> None:
        self.refused += 1
        # The reason names the ORI and the identity, never a personal field.
        log.warning("refused a %s submission from %s: %s", transport, peer, exc.reason)
        t1 = peek(data) if data is not None and is_ansinist(data) else {}
        try:
            with self.gateway.journal.transaction():
                self.gateway.audit.submission_refused(
                    channel=transport,
                    peer=peer,
                    identity=None if identity is None else str(identity),
                    ori=t1.get("1.008"),
                    tcn=t1.get("1.009"),
                    reason=exc.reason,
                )
        except Exception:  # noqa: BLE001 - a refusal stays a refusal if the audit write fails
            log.exception("cannot record the refusal in the audit trail")


class RetentionJob(service.Service):
    """The purge of ``[retention]``: every ``check_hours`` (and at start) remove payloads and
    responses answered more than ``payload_days`` ago and audit records older than
    ``audit_days``; each run that removes something is an audit record."""

    name = "retention"
    batch = 200  # payloads per commit; the reactor serves requests between batches

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.settings = gateway.config.retention
        self.loop: task.LoopingCall | None = None
        self.running_purge: defer.Deferred | None = None

    def startService(self):  # noqa: N802 - Twisted API
        super().startService()
        self.loop = task.LoopingCall(self._tick)
        self.loop.start(self.settings.check_hours * 3600, now=True)

    def stopService(self):  # noqa: N802
        super().stopService()
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        return self.running_purge

    def _tick(self):
        if self.running_purge is None:
            self.running_purge = defer.ensureDeferred(self.run_once())

            def done(result):
                self.running_purge = None
                return None

            def failed(failure):
                log.error("retention purge failed: %s", failure.getErrorMessage())

            self.running_purge.addErrback(failed).addBoth(done)

    async def run_once(self, now: float | None = None) -> dict:
        """One purge; ``now`` defaults to the clock (tests move it forward)."""
        now = time.time() if now is None else now
        journal, audit = self.gateway.journal, self.gateway.audit
        before = now - self.settings.payload_days * 86400
        payloads = summaries = 0
        while self.running:
            p, s = journal.purge(before, limit=self.batch)
            payloads, summaries = payloads + p, summaries + s
            if p < self.batch and s < self.batch:
                break
            await task.deferLater(reactor, 0, lambda: None)
        if payloads or summaries:
            audit.record(
                "retention.purged",
                channel="retention",
                count=payloads,
                before=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before)),
                detail=f"{summaries} search summaries; payload_days={self.settings.payload_days:g}",
            )
            log.info("retention: %d payloads and %d summaries purged", payloads, summaries)
        audit_purged = audit.purge(self.settings.audit_days)
        return {"payloads": payloads, "summaries": summaries, "audit_records": audit_purged}


class Gateway(service.MultiService):
    """The running gateway: journal, pool, pipeline, dispatcher and the listeners.

    ``demo_galleries`` (kind -> folder) are built in the background by :meth:`startService`
    when they are not there yet; until they are, accepted messages wait in the journal.
    """

    def __init__(self, config, *, galleries: dict | None = None, demo_galleries=None):
        super().__init__()
        # Every file and directory the gateway (and its worker processes) creates is private,
        # whatever the umask it was started with (journal, WAL, routing log, galleries, keys).
        self._umask = os.umask(0o077)
        data_dir = Path(config.data_dir)
        ensure_private_dir(data_dir, tighten=True)
        config = tls.resolve(config)  # the data directory's own PKI when [tls] names no files
        self.config = config
        self.authorizer = Authorizer(config, tls.issued_identities(config))
        self.tls_options = tls.server_options(config.tls) if config.tls.enabled else None
        self.journal = Journal(
            data_dir / "journal.sqlite3",
            data_dir / "routing.log",
            key_file=config.store.key_file,
            encrypt=ENCRYPT_AT_REST,
            url=config.store.url,
            node=config.store.node,
            lease=config.store.lease_seconds,
        )
        if config.store.url:
            self.journal.register_node()  # NodeNameInUse (an OSError): the start stops
        self.claims = Claims(self)
        self.audit = Audit(self.journal)
        # hashing, sealing and committing large payloads, off the reactor (gateway.offload)
        self.store_thread = StoreThread(self.journal, threshold=config.limits.spool_threshold)
        self.users = Users(self.journal)
        self.pool = WorkerPool(config.workers, memory=config.limits.max_work_memory)
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
            config,
            self.journal,
            self.pool,
            self.dispatcher,
            galleries=self.galleries,
            # an IAR may reach any node of a shared database: its key lives with the data key
            control_key=pki.secret(
                (config.store.key_file.parent if config.store.url else data_dir) / "iaq-control.key"
            ),
        )
        # one dict, filled in when the demo galleries are built
        self.pipeline.galleries = self.galleries
        self.pipeline.store_thread = self.store_thread  # reads large payloads in that thread
        self.intake = Intake(self)
        self.retention = RetentionJob(self)
        self.retention.setServiceParent(self)
        self.alerts = AlertChecker(self)  # [alerts]: runs only with recipients
        if config.alerts.email:
            self.alerts.setServiceParent(self)
        # listener name -> ConnectionLimiter (open connections, refusals)
        self.limiters: dict[str, ConnectionLimiter] = {}
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

        limits = config.limits
        clear_spool(data_dir)  # what a crash left there
        spool = spool_dir(data_dir)
        smtp_factory = IntakeFactory(
            self.intake,
            domain=config.smtp_domain,
            max_size=config.smtp_max_size,
            tls_context=self.tls_options,
            require_tls=config.tls.enabled,
            limits=limits,
            spool_directory=spool,
        )
        self._listen("smtp", config.listen_smtp, smtp_factory)
        soap = LimitedSite(soap_root(self), limits, spool)
        self._listen("soap", config.listen_soap, self._https(soap))
        self.admin = Guard(self, admin_root(self))
        admin: Guard | tls.ClientCertificateRequired = self.admin
        if self.tls_options is not None:
            admin = tls.ClientCertificateRequired(admin)
        self._listen("admin", config.listen_admin, self._https(LimitedSite(admin, limits, spool)))

    def _https(self, site):
        """HTTP listeners speak TLS from the first byte when TLS is on (inside the connection
        limits, which refuse before any handshake work)."""
        return site if self.tls_options is None else tls.wrap(site, self.tls_options)

    def _listen(self, name: str, description: str, factory) -> None:
        # every listener: connection limits before any work (SMTP 421, HTTP 503)
        kind = "smtp" if name == "smtp" else "http"
        factory = limit_connections(factory, self.config.limits, kind=kind, name=name)
        self.limiters[name] = factory
        svc = _Listener(endpoints.serverFromString(reactor, description), factory)
        svc.setName(name)
        svc.setServiceParent(self)
        self.ports[name] = svc

    def keeps_work(self) -> bool:
        """Whether a new submission is claimed by this node (else any node may take it):
        always on SQLite; on a shared database while this node has room."""
        return self.journal.url is None or (
            self.pending_galleries is None and self.pipeline.has_room
        )

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
        self.claims.start()
        self.store_thread.start()
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
        self.audit.record(
            "gateway.start",
            channel="cli",
            config_hash=config_hash(self.config.raw),
            version=_version(),
            detail="encryption at rest on" if ENCRYPT_AT_REST else "encryption at rest OFF",
        )
        log.info("gateway started; data in %s", self.config.data_dir)
        if not self.config.tls.enabled:
            log.warning(
                'TLS is off ([tls] mode = "off"): peers are not authenticated; '
                "every listener is on loopback, use this for tests only"
            )

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
        self.audit.record("gateway.stop", channel="cli")
        service.Service.stopService(self)
        stops = []
        if self._builder is not None:
            stops.append(self._builder.stop())
        self.dispatcher.stop()
        self.claims.stop()
        # Only what was started: a port conflict stops the start half-way.
        for svc in reversed(list(self)):
            if svc.running:
                stops.append(defer.maybeDeferred(svc.stopService))
        self.pool.stop()

        def close(result):
            self.store_thread.stop()  # its queued work done, its connection closed
            self.journal.close()
            os.umask(self._umask)
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


class Claims:
    """This node's share of a shared journal: renew its claims and claim waiting work every
    ``lease/3`` seconds, and at once when another node announces work (PostgreSQL LISTEN on
    its own connection, in a thread; on SQLite the journal's ``work`` event).  A node that
    dies stops renewing: its claims expire and the others take its messages and deliveries."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.loop: task.LoopingCall | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pending = False
        gateway.journal.after_commit(self._on_event)

    def _on_event(self, event: str, fields: dict) -> None:
        # new work announced; on a shared database also a slot freed by an answer, for the
        # work this node left to any node while it was busy
        if event == "work" or (event == "responded" and self.gateway.journal.url):
            self.wake()

    def start(self) -> None:
        period = max(0.5, self.gateway.journal.lease / 3)
        self.loop = task.LoopingCall(self.tick)
        self.loop.start(period, now=False).addErrback(self._failed)
        url = self.gateway.journal.url
        if url:
            self._listener = threading.Thread(
                target=self._listen, args=(url,), name="store-listen", daemon=True
            )
            self._listener.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def wake(self) -> None:
        """Poll soon (once, however many announcements arrive meanwhile)."""
        if not self._pending:
            self._pending = True
            reactor.callLater(0.05, self.tick)

    def tick(self) -> None:
        self._pending = False
        gateway = self.gateway
        if gateway.pending_galleries is not None or not gateway.running:
            return
        try:
            gateway.pipeline.poll()
            gateway.dispatcher.kick()
        except STORE_ERRORS as exc:  # the database is away: the next tick tries again
            log.warning("store: claims not renewed (%s)", str(exc).strip()[:200])

    def _failed(self, failure):
        log.error("store: claim loop stopped: %s", failure.getErrorMessage())

    def _listen(self, url: str) -> None:
        """LISTEN on the gateway's channel; each notification wakes the reactor's poll."""
        from gateway.store.db import listen

        listen(
            url,
            self._stopping,
            lambda: reactor.callFromThread(self.wake),
            lambda exc: log.warning("store: LISTEN lost (%s); retrying", type(exc).__name__),
        )


def builder_command(subjects: int, paths: dict[str, Path]) -> list[str]:
    """The command line of the demo gallery builder (``python -m gateway.demo``).

    Ctrl-C reaches the whole process group; only the daemon handles it, and stops the builder
    with SIGTERM.  The builder must start with SIGINT ignored: a Ctrl-C while Python is still
    importing would print a KeyboardInterrupt traceback into the daemon's log.  Twisted's
    spawnProcess resets ignored signals to their default in the child, so the disposition is
    set by ``sh`` (``trap '' INT``) and kept across its ``exec`` of Python, which then installs
    no KeyboardInterrupt handler; a signal before the trap ends ``sh`` quietly."""
    args = [sys.executable, "-m", "gateway.demo", "--subjects", str(subjects)]
    args += [str(paths["fbi"]), str(paths["dhs"])]
    if os.name != "posix":
        return args
    return ["/bin/sh", "-c", 'trap "" INT; exec "$0" "$@"', *args]


class _DemoBuilder(protocol.ProcessProtocol):
    """The background process building the demo galleries; its progress lines are logged."""

    def __init__(self, subjects: int, paths: dict[str, Path]):
        self.done: defer.Deferred = defer.Deferred()
        self._partial = b""
        self._stopping = False
        args = builder_command(subjects, paths)
        transport = reactor.spawnProcess(self, args[0], args, env=dict(os.environ))
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
    if not gateway.config.tls.enabled:
        return "TLS off"
    if name == "smtp":
        return f"STARTTLS required, client certificate, TLS {gateway.config.tls.min_version}+"
    return f"HTTPS, client certificate, TLS {gateway.config.tls.min_version}+"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ebts-gateway")
    except PackageNotFoundError:
        return "unknown"


def _check_decisions(config, galleries: dict) -> None:
    """Each configured gallery must open and decide on the scale its searches score on.  A
    damaged one (a truncated templates.bin or background.npz) would make every search an
    INTERNAL_ERROR answer, one that is not calibrated, or calibrated on another score scale,
    would answer every search "no hit": the start refuses either (ValueError: exit 2), naming
    the file or the command that fixes it.  A shard set is checked by its manifest (its shards
    load where they are searched).  With ``[matcher] threshold`` the gallery's thresholds are
    not used (that value must be on the same scale): a warning only."""
    from gateway.matcher.gallery import Gallery
    from gateway.matcher.shards import decision_problem_at, is_shard_set

    for kind, path in galleries.items():
        if is_shard_set(path):
            problem = decision_problem_at(path)
        else:
            try:
                problem = Gallery.load(path).decision_problem()
            except ValueError as exc:
                raise ValueError(f"the {kind} gallery cannot be opened: {exc}") from None
        if problem is None:
            continue
        if config.match_threshold is None:
            raise ValueError(f"the {kind} gallery cannot decide a search: {problem}")
        log.warning(
            "the %s gallery's thresholds are not usable (%s); [matcher] threshold = %g decides "
            "instead: it must be a sum of compare() scores (docs/matcher.md)",
            kind,
            problem,
            config.match_threshold,
        )


def build_gateway(config) -> Gateway:
    """The gateway with its galleries: configured paths, else demo galleries when enabled.

    Demo galleries that are not built yet are built in the background once the gateway starts.
    """
    import dataclasses

    os.umask(0o077)  # the demo galleries below are private too
    galleries = {}
    if config.gallery_fbi is not None:
        galleries["fbi"] = str(config.gallery_fbi)
    if config.gallery_dhs is not None:
        galleries["dhs"] = str(config.gallery_dhs)
    _check_decisions(config, galleries)
    demo_galleries = None
    if config.demo_gallery and not galleries:
        from gateway import demo

        demo_galleries = {kind: demo.gallery_path(config.data_dir, kind) for kind in ("fbi", "dhs")}
        if "search_positions" not in config.raw.get("matcher", {}):
            # The demo subjects are enrolled with four fingers: search with those.
            config = dataclasses.replace(config, search_positions=demo.POSITIONS)
    return Gateway(config, galleries=galleries, demo_galleries=demo_galleries)
