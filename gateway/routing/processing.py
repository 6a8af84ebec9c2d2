"""The CPU side of the pipeline: decode, validate, search, decide the response (pure).

:func:`process` runs in a worker process (see :mod:`gateway.matcher.pool`) on the raw bytes of
one accepted transaction and returns plain data: the states it passed with their outcomes and
durations, the response bytes, and what the parent must record (identity, enrolment, search
summary).  It never touches the journal or the network, so a transaction can be processed again
after a crash with the same result.  Bad input never raises: it becomes an ERRT.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from gateway.ansinist import FormatError, Transaction, detect_encoding, peek, read, write
from gateway.ansinist.errors import Location
from gateway.matcher.shards import SearchUnavailable
from gateway.store.states import State

from . import rules
from .answers.sre import build_sre

FINGER_POSITIONS = range(1, 11)  # rolled FGP 1-10
FGP_TAG = {4: "4.004", 14: "14.013"}  # the finger position field of a Type-4 / Type-14


@dataclass
class Job:
    """What the parent hands a worker (picklable)."""

    message_id: str
    payload: bytes
    response_tcn: str
    gateway_ori: str
    profile: str = "ebts-10"
    today: str | None = None  # ISO date; default: the worker's local date
    fbi_gallery: str | None = None
    journal_path: str | None = None  # for enrolments made since the gallery was saved
    journal_key: str | None = None  # the node's data key file (a PostgreSQL journal_path)
    search_positions: tuple[int, ...] = tuple(FINGER_POSITIONS)
    new_subject_id: str | None = None  # UCN given to an enrolled new subject
    dhs_gallery: str | None = None
    jurisdictions: tuple = ()  # gateway.config.Jurisdiction values
    offense_rows: tuple = ()  # [[offense]] rows over the default NCIC table
    lesc: bool = False  # an LESC destination is configured: IAQs are built
    lesc_ori: str = "VTICE0900"
    match_threshold: float | None = None  # overrides the galleries' calibrated thresholds
    iaq_control: str | None = None  # the keyed IAQ control field of this message
    reject: tuple | None = None  # (code, tag, message, hint): answer with this ERRT once decoded
    min_quality: int = (
        1  # [matcher] min_quality: fingers below it are neither searched nor enrolled
    )
    min_fingers: int = 6  # [matcher] min_fingers: usable fingers a full tenprint needs (of 10)
    max_pixels: int | None = None  # [limits] max_pixels_per_transaction, from image headers
    scheduler: str | None = None  # [matcher] scheduler: Dask scheduler of sharded galleries
    scheduler_tls: tuple[str, str, str] | None = None  # its CA, our certificate and key (tls://)


@dataclass
class Result:
    # state, outcome, ms, destination
    steps: list[tuple[str, str, float, str | None]] = field(default_factory=list)
    identity: dict = field(default_factory=dict)
    response: bytes | None = None
    response_tot: str | None = None
    encoding: str = "traditional"
    summary: dict = field(default_factory=dict)
    enroll: dict | None = None  # {"subject_id": ..., "templates": {position: bytes}}
    notices: list[dict] = field(default_factory=list)  # {"kind": "IAQ", "text": ...}
    iar: dict | None = None  # an IAR to forward: {"control": ..., "text": ...}
    # the job ran past the worker's memory: its process is replaced (gateway.matcher.pool)
    retire_worker: bool = False

    def step(self, state: str, outcome: str, started: float, destination=None) -> float:
        now = time.perf_counter()
        self.steps.append((state, outcome, round((now - started) * 1000, 3), destination))
        return now


def _today(job: Job) -> dt.date:
    return dt.date.fromisoformat(job.today) if job.today else dt.date.today()


def _placeholder_submission(payload: bytes, t1: dict[str, str] | None = None) -> Transaction:
    """A Type-1-only stand-in for a file that does not read, to address its ERRT: in the
    submission's encoding (an XML package is answered in XML, as a readable one is), with the
    Type-1 values :func:`gateway.ansinist.peek` makes out (an XML package's first record;
    ``t1``: that peek, when the caller has it)."""
    t1 = peek(payload) if t1 is None else t1
    return Transaction.new(
        tot=t1.get("1.004") or "UNKNOWN",
        dai=t1.get("1.007") or "UNKNOWN",
        ori=t1.get("1.008") or "UNKNOWN",
        tcn=t1.get("1.009") or "UNKNOWN",
        dat=t1.get("1.005") or "19700101",
        ver="0400",
        encoding=_encoding_of(payload),
    )


def _encoding_of(payload: bytes) -> str:
    return "xml" if detect_encoding(payload) == "xml" else "traditional"


def _errt(job: Job, submission: Transaction, findings, result: Result) -> None:
    from .answers.errt import build_errt

    errt = build_errt(
        submission,
        findings,
        tcn=job.response_tcn,
        ori=job.gateway_ori,
        dat=_today(job).strftime("%Y%m%d"),
    )
    result.response = write(errt)
    result.response_tot = "ERRT"
    result.encoding = errt.encoding


def process(job: Job) -> Result:
    """Process one transaction; never raises (an internal error becomes an ERRT).

    Where native decoders run is the caller's choice: the gateway's worker processes decode in
    process (see :mod:`gateway.matcher.pool`); anywhere else they stay isolated.
    """
    result = Result()
    started = time.perf_counter()
    try:
        _process(job, result, started)
    except SearchUnavailable:
        raise  # not an answer: the transaction goes back to the queue (gateway.matcher.shards)
    except MemoryError:
        # past the worker's private memory ([limits] max_work_memory, gateway.matcher.pool):
        # the arrays of the failed step are garbage now; the answer is built in what is left,
        # and the worker is replaced after it (a native library may not have recovered)
        result.retire_worker = True
        _answer_internal(
            job,
            result,
            started,
            "WORK_MEMORY",
            "processing needed more memory than a worker is allowed",
            "TRANSACTION EXCEEDS THE MEMORY ALLOWED; CHECK IMAGE SIZES AND RESUBMIT",
        )
    except Exception as exc:  # noqa: BLE001 - the daemon must answer whatever happens
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result.summary["internal_error"] = detail[:500]
        _answer_internal(
            job,
            result,
            started,
            "INTERNAL_ERROR",
            "internal processing error",
            "INTERNAL PROCESSING ERROR; RESUBMIT",
        )
    return result


def _answer_internal(
    job: Job, result: Result, started: float, code: str, message: str, hint: str
) -> None:
    """An ERRT for a failure of our own (not of the submission's content), without the
    submission's fields: it may be the decoding that failed."""
    from gateway.validation import ERROR, Finding

    finding = Finding(ERROR, code, Location(), message, hint=hint)
    try:
        _errt(job, _placeholder_submission(job.payload), [finding], result)
    except Exception:  # noqa: BLE001
        result.response = None
    result.step(State.REJECTED, code, started)


@dataclass
class Context:
    """One job on its way through the steps: what each step found, kept for the next ones.

    The per-job caches live here (the decoded transaction, the finger templates extracted once
    for the quality floor, the search and enrolment, the DHS leg), so that no step decodes or
    extracts again and a reader sees in one place what passes between the steps.
    """

    job: Job
    result: Result
    t: float  # when the current step started (time.perf_counter)
    txn: Transaction | None = None  # the decoded submission (step "decode")
    fingers: Any = None  # _Fingers: the tenprint's finger templates, each extracted once
    where: dict = field(default_factory=dict)  # {FGP: Location of its image}
    usable: dict = field(default_factory=dict)  # the fingers at or above the quality floor
    probe: dict = field(default_factory=dict)  # the usable fingers searched
    identified: bool = False  # the FBI leg's decision
    ucn: str | None = None  # the FBI subject identified
    fbi_outcome: str = ""  # the FBI leg's state outcome ("hit", "no hit"; "; enrolled N ...")
    messages: list[str] = field(default_factory=list)  # SRE 2.060 MSG lines
    esi: str | None = None  # the DHS subject id of a DHS match (SRE ESI)
    dhs_needed: bool = False  # the DHS leg applies (rules.dhs_search_required)
    dhs_why: str = ""

    def step(self, state: str, outcome: str, destination: str | None = None) -> None:
        """Record a state the job passed, timed from the previous one."""
        self.t = self.result.step(state, outcome, self.t, destination)

    def reject(self, code: str, location: Location, message: str, hint: str) -> bool:
        """Answer with an ERRT of one finding and stop (a step returns this)."""
        assert self.txn is not None
        _reject(self.job, self.txn, self.result, self.t, code, location, message, hint)
        return False


def _process(job: Job, result: Result, t: float) -> None:
    if _looks_like_iar(job.payload):
        _process_iar(job, result, t)
        return
    ctx = Context(job, result, t)
    for step in STEPS:
        if not step(ctx):
            return  # answered (an ERRT) or refused: the later steps do not apply


# The steps, in order.  Each takes the Context and returns False when the job is answered
# (an ERRT) and no further step applies.


def _decode(ctx: Context) -> bool:
    """Read the transaction; refuse what the parent decided before processing (a reused TCN)
    and images whose headers pass the pixel budget, before anything decodes an image."""
    from gateway.validation import format_error_finding

    job, result = ctx.job, ctx.result
    try:
        txn = read(job.payload)
    except FormatError as exc:
        t1 = peek(job.payload)  # (once: the identity and the ERRT's address)
        result.identity = _identity_from_peek(job.payload, t1)
        result.summary["findings"] = [format_error_finding(exc).to_dict()]
        ctx.step(State.REJECTED, exc.code)
        _errt(job, _placeholder_submission(job.payload, t1), [format_error_finding(exc)], result)
        return False
    ctx.txn = txn
    result.encoding = txn.encoding
    result.identity = {
        "ori": txn.ori,
        "tcn": txn.tcn,
        "tot": txn.tot,
        "dai": txn.dai,
        "encoding": txn.encoding,
    }
    ctx.step(State.DECODED, f"{len(txn.records)} records")
    if job.reject is not None:  # decided before processing (a reused TCN)
        code, tag, message, hint = job.reject
        return ctx.reject(code, Location(1, 1, tag), message, hint)
    return not (job.max_pixels and _over_pixel_budget(job, txn, result, ctx.t))


def _validate(ctx: Context) -> bool:
    """Levels 1-4 of the profile (an ERRT of the errors), then the TOTs this gateway serves."""
    from gateway.validation import validate

    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    source = job.payload if txn.encoding == "xml" else None
    report = validate(txn, profile=job.profile, source=source, today=_today(job))
    result.summary["findings"] = [f.to_dict() for f in report.findings[:50]]
    if not report.valid:
        errors = report.errors
        ctx.step(State.REJECTED, f"{len(errors)} errors")
        _errt(job, txn, errors, result)
        return False
    ctx.step(State.VALIDATED, f"{len(report.warnings)} warnings")
    tot = txn.tot
    if rules.gateway_answer(tot) == "ERRT":
        return ctx.reject(
            "TOT_NOT_SERVED",
            Location(1, 1, "1.004"),
            f"TOT {tot} is not served by this gateway",
            f"1.004 TOT {tot}: TRANSACTION TYPE NOT SERVED BY THIS GATEWAY",
        )
    ctx.dhs_needed, ctx.dhs_why = rules.dhs_search_required(
        tot, txn.ori, txn.dat, job.jurisdictions
    )
    return True


def _select_fingers(ctx: Context) -> bool:
    """The quality floor (issue 14): a tenprint to be searched has its searched fingers
    extracted and scored first, the others only until the floor is met (all of them when it
    is not); a finger below the floor is neither searched nor enrolled, and too few usable
    fingers is an ERRT naming each unusable one."""
    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    if not (
        rules.is_tenprint(txn.tot) and (job.fbi_gallery or (ctx.dhs_needed and job.dhs_gallery))
    ):
        return True
    fingers = _Fingers(txn)
    needed = required_fingers(job.min_fingers, len(fingers.positions))
    usable = fingers.usable(job, job.search_positions, needed)
    ctx.fingers, ctx.where, ctx.usable = fingers, fingers.where, usable
    result.summary["quality"] = fingers.qualities()
    if fingers.positions and len(usable) < needed:
        tpls = fingers.templates
        _reject_quality(job, txn, result, ctx.t, tpls, usable, needed, fingers.where)
        return False
    ctx.probe = {p: tpl for p, tpl in usable.items() if p in job.search_positions}
    result.summary["fingers"] = sorted(ctx.probe)
    if not ctx.probe:
        return ctx.reject(
            "NO_FINGERS",
            Location(),
            "no decodable rolled finger image (FGP 1-10)",
            "NO USABLE FINGERPRINT IMAGES (FGP 1-10) IN SUBMISSION",
        )
    return True


def _search_fbi(ctx: Context) -> bool:
    """The FBI leg: every tenprint submission, every subject (its state is recorded by
    :func:`_enrol`, whose outcome it carries)."""
    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    if not rules.is_tenprint(txn.tot):
        return True
    if job.fbi_gallery:
        best = _search(job.fbi_gallery, "fbi", job, ctx.probe)
        ctx.identified = _decided(best, job)
        ctx.ucn = best.subject_id if ctx.identified else None
        result.summary["fbi"] = _candidate(best, ctx.identified)
        ctx.fbi_outcome = "hit" if ctx.identified else "no hit"
    else:
        ctx.fbi_outcome = "no FBI gallery configured"
    return True


def _enrol(ctx: Context) -> bool:
    """A new subject of a tenprint that asks to be retained (2.005 RET) and was not
    identified is enrolled under the UCN the parent gave, with the fingers at or above the
    quality floor; then the FBI leg's state is recorded."""
    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    if not rules.is_tenprint(txn.tot):
        return True
    sub2 = next((r for r in txn.records if r.type == 2), None)
    ret = sub2.value("2.005") if sub2 is not None else None
    if job.fbi_gallery and rules.should_enroll(txn.tot, ret, ctx.identified) and job.new_subject_id:
        # only the fingers at or above the quality floor are enrolled (the rest extracted
        # now, part of the FBI leg's time)
        all_templates = ctx.fingers.usable(job, tuple(FINGER_POSITIONS))
        result.summary["quality"] = ctx.fingers.qualities()
        result.enroll = {
            "gallery": "fbi",
            "subject_id": job.new_subject_id,
            "templates": {pos: tpl.to_bytes() for pos, tpl in all_templates.items()},
        }
        ctx.messages.append(f"NEW SUBJECT ENROLLED, UCN {job.new_subject_id}")
        ctx.fbi_outcome += f"; enrolled {len(all_templates)} fingers"
    ctx.step(State.SEARCHED, ctx.fbi_outcome, "FBI")
    return True


def _search_dhs(ctx: Context) -> bool:
    """The DHS leg: booking TOTs from activated jurisdictions, dated on or after activation;
    a match adds the SRE's DHS lines and ESI and, with an LESC, an IAQ."""
    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    searched = bool(ctx.dhs_needed and job.dhs_gallery)
    result.summary["dhs"] = {"searched": searched, "why": ctx.dhs_why}
    if ctx.dhs_needed and job.dhs_gallery:
        best = _search(job.dhs_gallery, "dhs", job, ctx.probe)
        dhs_hit = _decided(best, job)
        result.summary["dhs"].update(_candidate(best, dhs_hit))
        if dhs_hit:
            ctx.esi, lines = _dhs_match(job, txn, best.subject_id, ctx.ucn, result)
            ctx.messages.extend(lines)
        ctx.step(State.SEARCHED, "hit" if dhs_hit else "no hit", "DHS")
    elif rules.is_booking(txn.tot):
        ctx.step(State.ROUTED, f"not sent to DHS: {ctx.dhs_why}", "DHS")
    return True


def _answer(ctx: Context) -> bool:
    """The SRE when the TOT requires an answer; the final ROUTED state either way."""
    job, result, txn = ctx.job, ctx.result, ctx.txn
    assert txn is not None
    if rules.answer_required(txn.tot):
        sre = build_sre(
            txn,
            tcn=job.response_tcn,
            identified=ctx.identified,
            ucn=ctx.ucn,
            messages=ctx.messages,
            esi=ctx.esi,
            dat=_today(job).strftime("%Y%m%d"),
            gateway_ori=job.gateway_ori,
        )
        result.response = write(sre)
        result.response_tot = "SRE"
    ctx.step(State.ROUTED, result.response_tot or "no answer required")
    return True


STEPS = (_decode, _validate, _select_fingers, _search_fbi, _enrol, _search_dhs, _answer)


def _over_pixel_budget(job: Job, txn: Transaction, result: Result, t: float) -> bool:
    """Refuse a transaction whose images claim more pixels than the budget, before any
    decoding (validation decodes every image): an ERRT names the record that passes it."""
    from gateway.imaging import declared_pixels

    assert job.max_pixels is not None  # the caller checks it first
    total = 0
    for recno, record in enumerate(txn.records, start=1):
        pixels = declared_pixels(record)
        total += pixels
        if total > job.max_pixels:
            result.summary["pixels"] = total
            _reject(
                job,
                txn,
                result,
                t,
                "PIXEL_LIMIT",
                Location(recno, record.type),
                f"the images up to record {recno} (Type-{record.type}, {pixels} pixels) claim "
                f"{total} pixels, more than the {job.max_pixels} allowed per transaction",
                f"RECORD {recno} (TYPE-{record.type}): IMAGES EXCEED THE LIMIT OF "
                f"{job.max_pixels} PIXELS PER TRANSACTION",
            )
            return True
    return False


def _reject(job, txn, result, t, code, location, message, hint) -> None:
    from gateway.validation import ERROR, Finding

    result.step(State.REJECTED, code, t)
    _errt(job, txn, [Finding(ERROR, code, location, message, hint=hint)], result)


def required_fingers(min_fingers: int, submitted: int) -> int:
    """How many usable fingers a tenprint of ``submitted`` finger images needs: ``min_fingers``
    of 10, in proportion for a submission with fewer fingers (rounded up, at least one), so a
    four-finger submission needs 3 by default and a single finger itself."""
    if submitted <= 0:
        return 0
    return max(1, min(submitted, -(-min_fingers * submitted // 10)))


def _reject_quality(job, txn, result, t, fingers, usable, needed, where) -> None:
    """An ERRT naming each unusable finger position (as the FBI answers a card with too few
    classifiable fingers); the quality is in our words, never a decoder's exception text."""
    from gateway.validation import ERROR, Finding

    findings = []
    for position, tpl in sorted(fingers.items()):
        if position in usable:
            continue
        why = (
            "IMAGE DOES NOT DECODE"
            if tpl is None
            else f"QUALITY {tpl.quality} BELOW {job.min_quality}"
        )
        findings.append(
            Finding(
                ERROR,
                "FINGER_QUALITY",
                where.get(position, Location()),
                f"finger position {position}: unusable ({why.lower()})",
                hint=f"FGP {position}: FINGERPRINT UNUSABLE, {why}",
            )
        )
    findings.append(
        Finding(
            ERROR,
            "TOO_FEW_FINGERS",
            Location(),
            f"{len(usable)} usable finger images of {len(fingers)}, {needed} needed",
            hint=f"{len(usable)} USABLE FINGERPRINTS OF {len(fingers)}, {needed} REQUIRED",
        )
    )
    result.summary["unusable"] = sorted(p for p in fingers if p not in usable)
    result.step(State.REJECTED, "FINGER_QUALITY", t)
    _errt(job, txn, findings, result)


def _decided(best, job: Job) -> bool:
    """A hit: the fused score reaches the configured threshold, else the gallery's decision."""
    if best is None:
        return False
    if job.match_threshold is not None:
        return float(best.score) >= job.match_threshold
    return bool(best.decision)


def _candidate(best, hit: bool) -> dict:
    if best is None:
        return {"hit": False}
    return {"candidate": best.subject_id, "score": round(float(best.score), 4), "hit": hit}


def _dhs_match(job: Job, txn: Transaction, dhs_id: str, ucn: str | None, result: Result):
    """SRE lines, ESI and the IAQ for a DHS match (the gateway informs; it directs nothing)."""
    from .interop.iaq import build_iaq, dhs_messages
    from .interop.offenses import OffenseTable, priority
    from .interop.subjects import DhsSubject

    dhs_subject = _subject(job.dhs_gallery, dhs_id) or DhsSubject(
        dhs_id=dhs_id, immigration_status=None, name=None, dob=None, sex=None, pob=None
    )
    fbi_subject = _subject(job.fbi_gallery, ucn) if ucn else None
    table = OffenseTable.from_config(list(job.offense_rows)) if job.offense_rows else None
    history = fbi_subject.history if fbi_subject is not None else []
    level = priority(history, table=table)
    result.summary["dhs"]["priority"] = level.label
    if job.lesc:
        text = build_iaq(
            txn,
            dhs_subject=dhs_subject,
            fbi_subject=fbi_subject,
            priority=level,
            sender_ori=job.gateway_ori,
            lesc_ori=job.lesc_ori,
            message_id=job.message_id,
            table=table,
            control=job.iaq_control,
        )
        result.notices.append({"kind": "IAQ", "text": text, "priority": level.label})
    return dhs_subject.dhs_id, dhs_messages(dhs_subject, level)


_STORES: dict[str, tuple[float, Any]] = {}  # path -> (mtime, SubjectStore)


def _subject(gallery_path: str | None, subject_id: str | None):
    """The biographic record kept beside a gallery (``subjects.jsonl``), if any.

    The worker keeps each store loaded and reads it again only when the file changes.
    """
    if not gallery_path or not subject_id:
        return None
    from pathlib import Path

    from .interop.subjects import SubjectStore

    path = Path(gallery_path) / "subjects.jsonl"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    cached = _STORES.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = _STORES[str(path)] = (mtime, SubjectStore(path, durable=False))
    return cached[1].get(subject_id)


def _looks_like_iar(payload: bytes) -> bool:
    """An Nlets IAR (text), not an ANSI/NIST file: 'IAR.' opens it or one of its first lines."""
    head = payload.lstrip()[:512].upper()
    return head.startswith(b"IAR.") or b"\nIAR." in head


def _process_iar(job: Job, result: Result, t: float) -> None:
    """An Immigration Alien Response from the LESC: parse it; the parent links and forwards."""
    from .interop.iaq import parse_iar

    try:
        iar = parse_iar(job.payload)
    except ValueError as exc:
        result.identity = {"tot": "IAR", "encoding": "text"}
        result.step(State.REJECTED, f"IAR does not parse: {exc}"[:200], t)
        return
    result.identity = {"tot": "IAR", "ori": iar.get("sender_ori"), "encoding": "text"}
    result.iar = {"control": iar.get("control"), "text": iar.get("text") or ""}
    result.step(State.DECODED, "IAR", t)


def _identity_from_peek(payload: bytes, t1: dict[str, str]) -> dict:
    return {
        "ori": t1.get("1.008"),
        "tcn": t1.get("1.009"),
        "tot": t1.get("1.004"),
        "dai": t1.get("1.007"),
        "encoding": _encoding_of(payload),
    }


class _Fingers:
    """The rolled finger images (Type-14 and Type-4 at FGP 1-10) of a tenprint, each decoded and
    extracted once, on demand: ``templates`` holds ``{position: Template or None}`` of those
    extracted so far (None: no image of that position decodes; unusable, not an error) and
    ``where`` the Location (record, FGP field) of each position's image."""

    def __init__(self, txn: Transaction):
        from gateway.imaging import finger_position, ntr_of

        self.txn = txn
        self.ntr = ntr_of(txn)
        self.records: dict[int, list] = {}  # position -> [(record number, record)] in order
        self.where: dict = {}
        self.templates: dict = {}
        for recno, record in enumerate(txn.records, start=1):
            if record.type not in (4, 14):
                continue
            fgp = finger_position(record)  # 1-10 or None
            if fgp is not None:
                self.records.setdefault(fgp, []).append((recno, record))
        self.positions = sorted(self.records)

    def template(self, fgp: int):
        """The template of the first image of ``fgp`` that decodes, or None."""
        from gateway.imaging import ImagingError, decode_record, to_500ppi
        from gateway.matcher import extract

        if fgp not in self.templates:
            self.templates[fgp] = None
            for recno, record in self.records[fgp]:
                self.where[fgp] = Location(recno, record.type, FGP_TAG[record.type])
                try:
                    image = to_500ppi(decode_record(record, ntr=self.ntr))
                    self.templates[fgp] = extract(image.pixels, 500)
                    break
                except (ImagingError, ValueError):
                    continue  # a finger that does not decode is unusable
        return self.templates[fgp]

    def usable(self, job: Job, first, enough: int | None = None) -> dict:
        """``{position: Template}`` of the fingers at or above ``job.min_quality``: every
        position of ``first`` that was submitted, then the others in FGP order until
        ``enough`` are usable (all of them when ``enough`` is None)."""
        order = [p for p in self.positions if p in first]
        order += [p for p in self.positions if p not in first]
        out: dict = {}
        for p in order:
            if enough is not None and len(out) >= enough and p not in first:
                break
            tpl = self.template(p)
            if tpl is not None and tpl.quality >= job.min_quality:
                out[p] = tpl
        return out

    def qualities(self) -> dict:
        """The quality of each finger extracted so far (None: it does not decode)."""
        return {
            str(p): (t.quality if t is not None else None)
            for p, t in sorted(self.templates.items())
        }


_GALLERIES: dict[str, list] = {}  # path -> [Gallery, last enrolment row applied]


def _search(path: str, name: str, job: Job, probe: dict):
    # a shard set searched on Dask raises SearchUnavailable past its deadline: never "no hit"
    gallery = load_gallery(
        path, job.journal_path, name, job.scheduler, job.scheduler_tls, key_file=job.journal_key
    )
    candidates = gallery.search(probe, top=1)
    return candidates[0] if candidates else None


def load_gallery(
    path: str,
    journal_path: str | None,
    name: str,
    scheduler: str | None = None,
    tls: tuple[str, str, str] | None = None,
    *,
    key_file: str | None = None,
):
    """The worker's cached gallery, with the enrolments the journal holds applied (a shard
    set made by ``gallery shard``: each enrolment to the shard owning its subject)."""
    from gateway.matcher import Template, shards
    from gateway.matcher.gallery import Gallery

    entry = _GALLERIES.get(path)
    if entry is None:
        if shards.is_shard_set(path):
            gallery: shards.ShardedGallery | Gallery = shards.ShardedGallery(
                path, scheduler, tls=tls
            )
        else:
            gallery = Gallery.load(path)
        entry = _GALLERIES[path] = [gallery, 0]
    gallery = entry[0]
    if journal_path:
        from gateway.store.enrolments import read_enrolments

        rows = list(read_enrolments(journal_path, name, entry[1], key_file=key_file))
        if rows and isinstance(gallery, shards.ShardedGallery):
            gallery.enrol(rows)
            entry[1] = rows[-1][0]
        elif rows:
            assert isinstance(gallery, Gallery)  # a shard set is handled above
            gallery.add_many((sid, pos, Template.from_bytes(data)) for _, sid, pos, data in rows)
            entry[1] = rows[-1][0]
    return gallery
