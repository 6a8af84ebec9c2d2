"""The pipeline: from a stored message to a queued response (Twisted side).

For each accepted message: check idempotency on (ORI, TCN), hand the bytes to a worker
(:func:`gateway.routing.processing.process`), record every state it passed, then store the
response with its deliveries and any enrolment in one commit, and wake the dispatcher.
A message interrupted by a crash is taken up again by :meth:`Pipeline.resume` on start-up;
since the response is committed once (RESPONDED is terminal), it is answered exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer, reactor, task

from gateway.ansinist import peek
from gateway.matcher.pool import WorkerCrashed, WorkTimeout
from gateway.store.journal import TERMINAL, Journal
from gateway.store.states import State

from .authz import destinations
from .interop.iaq import iaq_control
from .processing import Job, Result, process

if TYPE_CHECKING:
    from gateway.offload import StoreThread

log = logging.getLogger("gateway.pipeline")


RESUME_LIMIT = 100_000  # messages taken up at a start
FIRST_POLL = 0.25  # seconds between looks at a twin's first submission on another node
WORKER_ATTEMPTS = 2  # runs of one transaction (a crash is retried once), across restarts too
_ATTEMPT = "worker attempt "  # outcome of the journal note recorded before each run


class FairShare:
    """The order in which transactions go to the workers: fair between agencies.

    ``slots`` jobs run at once.  A free slot goes to the agencies in turn (round robin over
    those waiting), and one agency holds at most ``share`` of the slots (at least one): the
    others stay free for the next agency's transaction, so a flood from one agency does not
    delay another's CAR by more than its share.  With ``reserve`` False (one agency
    configured, or ``share`` 1) an agency may use every free slot.
    """

    def __init__(self, slots: int, share: float = 0.5, *, reserve: bool = True):
        self.slots = max(1, slots)
        self.cap = max(1, math.floor(self.slots * share))
        self.reserve = reserve
        self.free = self.slots
        self.queues: dict[str, deque] = {}
        self.order: deque[str] = deque()  # agencies with waiting jobs, next first
        self.running: Counter = Counter()

    def acquire(self, key: str) -> defer.Deferred:
        """Fires (with None) when a job of agency ``key`` may start; then :meth:`release`."""
        d: defer.Deferred[None] = defer.Deferred()
        queue = self.queues.setdefault(key, deque())
        if not queue:
            self.order.append(key)
        queue.append(d)
        self._grant()
        return d

    def release(self, key: str) -> None:
        self.running[key] -= 1
        if self.running[key] <= 0:
            del self.running[key]
        self.free += 1
        self._grant()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def _grant(self) -> None:
        while self.free > 0 and self.order:
            key = next((k for k in self.order if self.running[k] < self.cap), None)
            if key is None:
                if self.reserve:
                    return  # every waiting agency holds its share: the rest stays free
                key = self.order[0]
            queue = self.queues[key]
            d = queue.popleft()
            self.order.remove(key)
            if queue:
                self.order.append(key)  # its next job waits for the others' turn
            else:
                del self.queues[key]
            self.running[key] += 1
            self.free -= 1
            d.callback(None)


class Pipeline:
    def __init__(
        self, config, journal: Journal, pool, dispatcher, *, galleries=None, control_key=None
    ):
        self.config = config
        self.control_key = control_key  # keys the IAQ control fields (unguessable)
        self.journal = journal
        self.pool = pool
        self.dispatcher = dispatcher
        self.galleries = galleries or {}
        self.limits = getattr(config, "limits", None)
        share = self.limits.agency_share if self.limits is not None else 1.0
        # with one agency configured there is nobody to keep a share for
        reserve = len(getattr(config, "agencies", ())) > 1
        self.fair = FairShare(getattr(pool, "processes", 1), share, reserve=reserve)
        self._agency: dict[str, str] = {}  # message id -> ORI, from the peek of _handle
        self._inflight: dict[str, defer.Deferred] = {}
        self._by_key: dict[tuple, defer.Deferred] = {}
        self._retries: dict[str, int] = {}
        self.processed = 0

    # -- public ---------------------------------------------------------------------------------
    def submit(self, msg_id: str) -> defer.Deferred:
        """Process ``msg_id`` (once, even if submitted twice); fires when it is answered."""
        if msg_id in self._inflight:
            return _chain(self._inflight[msg_id])
        d = defer.ensureDeferred(self._handle(msg_id))
        self._inflight[msg_id] = d

        def forget(value):
            self._inflight.pop(msg_id, None)
            return value

        d.addBoth(forget)
        d.addErrback(self._unexpected, msg_id)
        return _chain(d)

    def resume(self) -> list[defer.Deferred]:
        """Take up every accepted message that was not answered before a stop or crash: this
        node's own claims and those nobody holds (on a shared database, also those of a
        node whose lease expired)."""
        pending = self.journal.claim(RESUME_LIMIT, restart=True)
        if pending:
            log.info("resuming %d unanswered messages", len(pending))
        return [self.submit(m.id) for m in pending]

    def poll(self) -> list[defer.Deferred]:
        """Renew this node's claims, then claim what waits for a node (accepted elsewhere and
        left to any node, or held by a node that stopped renewing: it died) while this node
        has room for it.  Called by a timer and when another node announces work."""
        self.journal.renew()
        room = self.capacity - self.fair.waiting - self.busy
        claimed = self.journal.claim(max(0, room))
        if claimed:
            log.info("claimed %d messages waiting for a node", len(claimed))
        return [self.submit(m.id) for m in claimed]

    @property
    def capacity(self) -> int:
        """Messages this node keeps in hand: two per worker (one running, one waiting)."""
        return self.fair.slots * 2

    @property
    def has_room(self) -> bool:
        """Whether this node should keep a new submission (else it is left to any node)."""
        return self.busy < self.capacity

    @property
    def busy(self) -> int:
        return len(self._inflight)

    # -- steps ----------------------------------------------------------------------------------
    async def _handle(self, msg_id: str) -> None:
        msg = self.journal.message(msg_id)
        if msg.state in TERMINAL:
            return
        payload: bytes | None = None  # read when a worker is free: a queue holds no bytes
        key, ori = await self._peek(msg.payload)
        # its queue for the fair share: the authenticated agency, else the ORI it names
        self._agency[msg_id] = msg.agency or ori
        if key is not None:
            # Idempotent per (ORI, TCN): wait for an earlier twin, then reuse its answer.
            while key in self._by_key:
                await _chain(self._by_key[key])
            mine: defer.Deferred[None] = defer.Deferred()
            self._by_key[key] = mine
            try:
                await self._after_first(msg_id, key)
                if await self._answer_duplicate(msg_id, key):
                    return
                await self._process(msg_id, msg, payload, key)
            finally:
                if self._by_key.get(key) is mine:
                    del self._by_key[key]
                mine.callback(None)
        else:
            await self._process(msg_id, msg, payload)

    async def _after_first(self, msg_id: str, key: tuple) -> None:
        """Across nodes: a resubmission waits until the first submission of its (ORI, TCN) is
        answered (whichever node holds it), then is answered as a duplicate or an ERRT naming
        1.009.  Twins on this node are ordered by ``_by_key`` instead (waiting here for one
        of them could wait for itself), and on one node (SQLite) every twin is this node's.
        Bounded: past four leases it goes on regardless."""
        if self.journal.url is None:
            return
        deadline = time.monotonic() + 4 * self.journal.lease
        while time.monotonic() < deadline:
            first = self.journal.first_of(*key)
            if first is None or first.id == msg_id or first.state in TERMINAL:
                return
            if first.id in self._inflight:
                return
            await task.deferLater(reactor, FIRST_POLL, lambda: None)
        log.warning("%s: the first submission of its TCN is still unanswered; going on", msg_id)

    async def _answer_duplicate(self, msg_id: str, key: tuple) -> bool:
        """Answer a resubmission again; False when it is not one.

        A resubmitted (ORI, TCN) is a duplicate only when its bytes are identical and it comes from
        the same agency; then the earlier answer is sent again to that agency's registered
        destinations.  Other content under a used TCN is answered by an ERRT naming 1.009 (see
        :meth:`_job`), never with the earlier answer.
        """
        ori, tcn = key
        previous = self.journal.previous_response(ori, tcn, exclude=msg_id)
        if previous is None:
            return False
        msg = self.journal.message(msg_id)
        if previous.payload != msg.payload or previous.agency != msg.agency:
            return False
        response = self.journal.payload(previous.response) if previous.response else None
        self.journal.identify(
            msg_id, ori=ori, tcn=tcn, tot=previous.tot, dai=previous.dai, encoding=previous.encoding
        )
        self.journal.respond(
            msg_id,
            response=response,
            response_tot=previous.response_tot,
            response_tcn=previous.response_tcn,
            deliveries=self._deliveries(msg, ori, previous.response_tot, previous.encoding),
            outcome=f"duplicate of {previous.id}: same {previous.response_tot or 'outcome'}",
            duplicate_of=previous.id,
        )
        return True

    def _job(self, msg_id: str, payload: bytes | None, key: tuple[str, str] | None = None) -> Job:
        cfg = self.config
        reject = None
        if key is not None and self.journal.previous_response(*key, exclude=msg_id) is not None:
            # 1.009 TCN must be unique per ORI (ANSI/NIST-ITL 1-2011 8.1.9): an earlier
            # submission under this (ORI, TCN) had other bytes or came from another agency.
            reject = (
                "TCN_REUSED",
                "1.009",
                "TCN already used by an earlier submission with other content",
                "1.009 TCN ALREADY USED FOR ANOTHER SUBMISSION; USE A NEW TCN",
            )
        day = dt.date.today()
        with self.journal.transaction():
            tcn = f"GW{day:%Y%m%d}{self.journal.next_number('response_tcn'):08d}"
            ucn = f"{self.journal.next_number('ucn'):07d}GW"
        return Job(
            message_id=msg_id,
            payload=cast(bytes, payload),  # None until the job gets its worker: _run reads it
            response_tcn=tcn,
            gateway_ori=cfg.gateway_ori,
            profile=cfg.profile,
            today=day.isoformat(),
            fbi_gallery=self.galleries.get("fbi"),
            dhs_gallery=self.galleries.get("dhs"),
            journal_path=self.journal.location,
            journal_key=str(self.journal.key_file) if self.journal.url else None,
            new_subject_id=ucn,
            search_positions=tuple(cfg.search_positions),
            jurisdictions=tuple(cfg.jurisdictions),
            offense_rows=tuple(cfg.offense_rows),
            lesc=bool(cfg.lesc_email or cfg.lesc_soap),
            lesc_ori=cfg.lesc_ori,
            match_threshold=cfg.match_threshold,
            iaq_control=iaq_control(msg_id, self.control_key),
            reject=reject,
            min_quality=cfg.min_quality,
            min_fingers=cfg.min_fingers,
            max_pixels=self.limits.max_pixels_per_transaction if self.limits else None,
            scheduler=cfg.scheduler,
            scheduler_tls=cfg.scheduler_tls.files() if cfg.scheduler_tls else None,
        )

    async def _process(
        self, msg_id: str, msg, payload: bytes | None, key: tuple | None = None
    ) -> None:
        started = time.perf_counter()
        job = self._job(msg_id, payload, key)
        result = await self._run(msg_id, job, msg.payload)
        ident = result.identity
        # One commit (one fsync) for every state of the result, the answer and its deliveries.
        with self.journal.transaction():
            if self.journal.message(msg_id).state in TERMINAL:
                # another node took the message over (this node's lease had run out) and has
                # answered it already: the answer is committed once, by whoever is first
                log.warning("%s was answered by another node meanwhile", msg_id)
                return
            self.journal.identify(
                msg_id, **{k: ident.get(k) for k in ("ori", "tcn", "tot", "dai", "encoding")}
            )
            for n, (state, step_outcome, ms, destination) in enumerate(result.steps, start=1):
                self.journal.advance(
                    msg_id,
                    state,
                    outcome=step_outcome,
                    duration_ms=ms,
                    destination=destination,
                    summary=result.summary if n == len(result.steps) else None,
                )
            msg = self.journal.message(msg_id)
            deliveries = self._deliveries(
                msg, ident.get("ori"), result.response_tot, result.encoding
            )
            links = []
            for notice in result.notices:  # IAQ to the ICE LESC on a DHS match
                deliveries.extend(self._lesc_deliveries(msg_id, notice))
                links.append(iaq_control(msg_id, self.control_key))
            outcome = None
            if result.iar is not None:
                deliveries, outcome = self._forward_iar(msg_id, result.iar)
            self.journal.respond(
                msg_id,
                response=result.response,
                response_tot=result.response_tot or ("IAR" if result.iar else None),
                response_tcn=job.response_tcn if result.response else None,
                deliveries=deliveries,
                outcome=outcome,
                duration_ms=(time.perf_counter() - started) * 1000,
                enrol=result.enroll,
                links=links,
            )
        self.processed += 1
        log.info(
            "%s %s TCN %s -> %s",
            msg_id,
            ident.get("tot"),
            ident.get("tcn"),
            result.response_tot or "no answer",
        )

    async def _run(self, msg_id: str, job: Job, digest: str) -> Result:
        """The worker's result: in the agency's fair turn, time-capped, at most
        :data:`WORKER_ATTEMPTS` runs ever (each recorded in the journal before it starts, so a
        transaction that brings the daemon down is not run again forever after restarts).
        The payload (``digest`` in the journal) is read when the job gets its worker."""
        key = self._agency.pop(msg_id, None)
        if key is None:
            key = _identity_from_peek_ori(job.payload or self.journal.payload(digest))
        timeout = self.limits.max_work_seconds if self.limits is not None else None
        done = sum(
            1
            for row in self.journal.transitions(msg_id)
            if (row.get("outcome") or "").startswith(_ATTEMPT)
        )
        while done < WORKER_ATTEMPTS:
            done += 1
            await self.fair.acquire(key)
            try:
                if job.payload is None:
                    job.payload = await self._read_payload(digest)
                self.journal.note(msg_id, outcome=f"{_ATTEMPT}{done}")
                return await self.pool.run(process, job, timeout=timeout)
            except WorkTimeout:
                log.warning("%s: worker time over %s s; answered with an ERRT", msg_id, timeout)
                return _limit_result(job, timeout)
            except WorkerCrashed as exc:
                log.warning("worker crashed on %s (attempt %d): %s", msg_id, done, exc)
            finally:
                self.fair.release(key)
        if job.payload is None:
            job.payload = await self._read_payload(digest)
        return _crash_result(job)

    # The store thread (gateway.offload), set by the Gateway: large payloads are read and
    # unsealed there, not in the reactor thread (None: read here).
    store_thread: StoreThread | None = None

    async def _read_payload(self, digest: str) -> bytes:
        if self.store_thread is None:
            return self.journal.payload(digest)
        return await self.store_thread.read_payload(digest)

    async def _peek(self, digest: str) -> tuple[tuple[str, str] | None, str]:
        """((ORI, TCN) or None, the ORI for the fair share) of a stored payload."""

        def peeked(payload: bytes):
            return _identity(payload), _identity_from_peek_ori(payload)

        if self.store_thread is None or not self.store_thread.running:
            return peeked(self.journal.payload(digest))
        return await self.store_thread.run(lambda: peeked(self.journal.read_payload(digest)))

    def _lesc_deliveries(self, msg_id: str, notice: dict) -> list[tuple]:
        meta = {
            "tot": notice["kind"],
            "text": True,
            "filename": "iaq.txt",
            "subject": f"IAQ {iaq_control(msg_id, self.control_key)}",
        }
        text = notice["text"].encode("ascii", "replace")
        out = []
        if self.config.lesc_email:
            out.append(("smtp", self.config.lesc_email, meta, text))
        if self.config.lesc_soap:
            out.append(("http", self.config.lesc_soap, meta, text))
        return out

    def _forward_iar(self, msg_id: str, iar: dict) -> tuple[list[tuple], str]:
        """Link an IAR to the booking whose IAQ it answers and forward it to that agency."""
        original_id = self.journal.linked(iar.get("control"))
        if original_id is None:
            return [], f"IAR control {iar.get('control')} matches no IAQ sent; kept, not forwarded"
        original = self.journal.message(original_id)
        # Only the registered address of the booking's agency (Nlets text travels by e-mail).
        agency = self._owner(original)
        address = agency.response_email if agency else None
        self.journal.note(original_id, outcome=f"IAR received as {msg_id}", destination="LESC")
        meta = {
            "tot": "IAR",
            "text": True,
            "filename": "iar.txt",
            "tcn": original.tcn,
            "subject": f"IAR for TCN {original.tcn}",
        }
        text = iar["text"].encode("ascii", "replace")
        if not address:
            return [], f"IAR linked to {original_id} (TCN {original.tcn}); no address to forward"
        return [("smtp", address, meta, text)], f"IAR linked to {original_id}, forwarded"

    def _owner(self, msg):
        """The [[agency]] a message belongs to (decided at intake from the authenticated peer)."""
        if msg.agency is not None:
            return self.config.agency(msg.agency)
        if msg.identity is None:  # a journal written before identities were recorded
            return self.config.agency(msg.ori)
        return None

    def _deliveries(self, msg, ori: str | None, response_tot: str | None, encoding: str | None):
        """Where a response goes: only the registered destinations of the message's agency.

        Never an envelope sender, a ReplyTo or any address a request names: that would make the
        gateway an identification oracle for whoever holds a set of prints.
        """
        if not response_tot:
            return []
        agency = self._owner(msg)
        ext = "xml" if encoding == "xml" else "eft"
        meta = {"tot": response_tot, "filename": f"{response_tot.lower()}.{ext}", "tcn": msg.tcn}
        return [(kind, where, meta) for kind, where in destinations(agency, msg.transport)]

    retry_delay = 10.0
    max_retries = 3

    def _unexpected(self, failure, msg_id):
        """A bug or a storage error: log it and try again later (the message stays unanswered
        in the journal, so a restart takes it up too)."""
        log.error("processing %s failed: %s", msg_id, failure.getTraceback())
        count = self._retries.get(msg_id, 0) + 1
        self._retries[msg_id] = count
        if count <= self.max_retries:
            from twisted.internet import reactor

            clock: Any = reactor  # IReactorTime through zope.interface, which mypy does not follow
            clock.callLater(self.retry_delay * count, self.submit, msg_id)
        return None


def _chain(d: defer.Deferred) -> defer.Deferred:
    """A Deferred that fires when ``d`` does, without taking its result."""
    out: defer.Deferred[None] = defer.Deferred()

    def fire(value):
        if not out.called:
            out.callback(None)
        return value

    d.addBoth(fire)
    return out


def _identity(payload: bytes) -> tuple[str, str] | None:
    """(ORI, TCN) of a payload, cheaply; None when it has none."""
    t1 = peek(payload)
    ori, tcn = t1.get("1.008"), t1.get("1.009")
    return (ori, tcn) if ori and tcn else None


def _identity_from_peek_ori(payload: bytes) -> str:
    """The agency a payload comes from (1.008 ORI), for the fair share; "" when unknown."""
    try:
        return peek(payload).get("1.008") or ""
    except Exception:  # noqa: BLE001 - an unreadable file shares the "unknown" queue
        return ""


def _limit_result(job: Job, seconds: float | None) -> Result:
    """The worker ran past ``max_work_seconds``: an ERRT built here, never a retry."""
    return _errt_result(
        job,
        "WORK_LIMIT",
        f"processing took longer than the {seconds:g} s allowed per transaction",
        "TRANSACTION EXCEEDS THE PROCESSING TIME ALLOWED; CHECK IMAGE SIZES AND RESUBMIT",
    )


def _crash_result(job: Job) -> Result:
    """A worker died twice on this input: answer with an ERRT built here."""
    return _errt_result(
        job,
        "WORKER_CRASH",
        "the worker processing it died twice",
        "TRANSACTION COULD NOT BE PROCESSED (IMAGE DATA); CHECK AND RESUBMIT",
    )


def _errt_result(job: Job, code: str, message: str, hint: str) -> Result:
    from gateway.ansinist import peek, write
    from gateway.ansinist.errors import Location
    from gateway.validation import ERROR, Finding

    from .answers.errt import build_errt
    from .processing import _identity_from_peek, _placeholder_submission

    result = Result()
    t1 = peek(job.payload)
    result.identity = _identity_from_peek(job.payload, t1)
    finding = Finding(ERROR, code, Location(), message, hint=hint)
    placeholder = _placeholder_submission(job.payload, t1)
    errt = build_errt(placeholder, [finding], tcn=job.response_tcn, ori=job.gateway_ori)
    result.response = write(errt)
    result.response_tot = "ERRT"
    result.steps.append((State.REJECTED, code, 0.0, None))
    return result
