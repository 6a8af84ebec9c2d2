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

from gateway.ansinist import FormatError, Transaction, read, write
from gateway.ansinist.errors import Location
from gateway.ansinist.traditional import peek_type1
from gateway.matcher.shards import SearchUnavailable

from . import rules
from .sre import build_sre

FINGER_POSITIONS = range(1, 11)  # rolled FGP 1-10


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

    def step(self, state: str, outcome: str, started: float, destination=None) -> float:
        now = time.perf_counter()
        self.steps.append((state, outcome, round((now - started) * 1000, 3), destination))
        return now


def _today(job: Job) -> dt.date:
    return dt.date.fromisoformat(job.today) if job.today else dt.date.today()


def _placeholder_submission(payload: bytes) -> Transaction:
    """A Type-1-only stand-in for a file that does not read, to address its ERRT."""
    t1 = peek_type1(payload)
    return Transaction.new(
        tot=t1.get("1.004") or "UNKNOWN",
        dai=t1.get("1.007") or "UNKNOWN",
        ori=t1.get("1.008") or "UNKNOWN",
        tcn=t1.get("1.009") or "UNKNOWN",
        dat=t1.get("1.005") or "19700101",
        ver="0400",
    )


def _errt(job: Job, submission: Transaction, findings, result: Result) -> None:
    from .responses import build_errt

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
    except Exception as exc:  # noqa: BLE001 - the daemon must answer whatever happens
        from gateway.validation import ERROR, Finding

        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result.summary["internal_error"] = detail[:500]
        finding = Finding(
            ERROR,
            "INTERNAL_ERROR",
            Location(),
            "internal processing error",
            hint="INTERNAL PROCESSING ERROR; RESUBMIT",
        )
        try:
            _errt(job, _placeholder_submission(job.payload), [finding], result)
        except Exception:  # noqa: BLE001
            result.response = None
        result.step("REJECTED", "INTERNAL_ERROR", started)
    return result


def _process(job: Job, result: Result, t: float) -> None:
    from gateway.validation import format_error_finding, validate

    if _looks_like_iar(job.payload):
        _process_iar(job, result, t)
        return
    try:
        txn = read(job.payload)
    except FormatError as exc:
        result.identity = _identity_from_peek(job.payload)
        result.summary["findings"] = [format_error_finding(exc).to_dict()]
        t = result.step("REJECTED", exc.code, t)
        _errt(job, _placeholder_submission(job.payload), [format_error_finding(exc)], result)
        return
    result.encoding = txn.encoding
    result.identity = {
        "ori": txn.ori,
        "tcn": txn.tcn,
        "tot": txn.tot,
        "dai": txn.dai,
        "encoding": txn.encoding,
    }
    t = result.step("DECODED", f"{len(txn.records)} records", t)
    if job.reject is not None:  # decided before processing (a reused TCN)
        code, tag, message, hint = job.reject
        _reject(job, txn, result, t, code, Location(1, 1, tag), message, hint)
        return
    if job.max_pixels and _over_pixel_budget(job, txn, result, t):
        return

    source = job.payload if txn.encoding == "xml" else None
    report = validate(txn, profile=job.profile, source=source, today=_today(job))
    result.summary["findings"] = [f.to_dict() for f in report.findings[:50]]
    if not report.valid:
        errors = report.errors
        t = result.step("REJECTED", f"{len(errors)} errors", t)
        _errt(job, txn, errors, result)
        return
    t = result.step("VALIDATED", f"{len(report.warnings)} warnings", t)

    tot = txn.tot
    if rules.gateway_answer(tot) == "ERRT":
        _reject(
            job,
            txn,
            result,
            t,
            "TOT_NOT_SERVED",
            Location(1, 1, "1.004"),
            f"TOT {tot} is not served by this gateway",
            f"1.004 TOT {tot}: TRANSACTION TYPE NOT SERVED BY THIS GATEWAY",
        )
        return
    identified, ucn, messages, esi = False, None, [], None
    dhs_needed, why = rules.dhs_search_required(tot, txn.ori, txn.dat, job.jurisdictions)
    usable: dict = {}
    if rules.is_tenprint(tot) and (job.fbi_gallery or (dhs_needed and job.dhs_gallery)):
        # the quality floor (issue 14): every submitted finger is extracted and scored before
        # search and enrolment; a finger below the floor is neither searched nor enrolled
        where: dict = {}
        fingers = _finger_templates(txn, where)
        usable = {
            p: t for p, t in fingers.items() if t is not None and t.quality >= job.min_quality
        }
        result.summary["quality"] = {
            str(p): (t.quality if t is not None else None) for p, t in sorted(fingers.items())
        }
        needed = required_fingers(job.min_fingers, len(fingers))
        if fingers and len(usable) < needed:
            _reject_quality(job, txn, result, t, fingers, usable, needed, where)
            return
        probe = {p: tpl for p, tpl in usable.items() if p in job.search_positions}
        result.summary["fingers"] = sorted(probe)
        if not probe:
            _reject(
                job,
                txn,
                result,
                t,
                "NO_FINGERS",
                Location(),
                "no decodable rolled finger image (FGP 1-10)",
                "NO USABLE FINGERPRINT IMAGES (FGP 1-10) IN SUBMISSION",
            )
            return
    else:
        probe = {}
    if rules.is_tenprint(tot):
        # FBI leg: every tenprint submission, every subject.
        if job.fbi_gallery:
            best = _search(job.fbi_gallery, "fbi", job, probe)
            identified = _decided(best, job)
            ucn = best.subject_id if identified else None
            result.summary["fbi"] = _candidate(best, identified)
            outcome = "hit" if identified else "no hit"
        else:
            outcome = "no FBI gallery configured"
        sub2 = next((r for r in txn.records if r.type == 2), None)
        ret = sub2.value("2.005") if sub2 is not None else None
        if job.fbi_gallery and rules.should_enroll(tot, ret, identified) and job.new_subject_id:
            # only the fingers at or above the quality floor are enrolled
            all_templates = usable
            result.enroll = {
                "gallery": "fbi",
                "subject_id": job.new_subject_id,
                "templates": {pos: tpl.to_bytes() for pos, tpl in all_templates.items()},
            }
            messages.append(f"NEW SUBJECT ENROLLED, UCN {job.new_subject_id}")
            outcome += f"; enrolled {len(all_templates)} fingers"
        t = result.step("SEARCHED", outcome, t, "FBI")
    # DHS leg: booking TOTs from activated jurisdictions, dated on or after activation.
    result.summary["dhs"] = {"searched": bool(dhs_needed and job.dhs_gallery), "why": why}
    if dhs_needed and job.dhs_gallery:
        best = _search(job.dhs_gallery, "dhs", job, probe)
        dhs_hit = _decided(best, job)
        result.summary["dhs"].update(_candidate(best, dhs_hit))
        if dhs_hit:
            esi, lines = _dhs_match(job, txn, best.subject_id, ucn, result)
            messages.extend(lines)
        t = result.step("SEARCHED", "hit" if dhs_hit else "no hit", t, "DHS")
    elif rules.is_booking(tot):
        t = result.step("ROUTED", f"not sent to DHS: {why}", t, "DHS")
    if rules.answer_required(tot):
        sre = build_sre(
            txn,
            tcn=job.response_tcn,
            identified=identified,
            ucn=ucn,
            messages=messages,
            esi=esi,
            dat=_today(job).strftime("%Y%m%d"),
            gateway_ori=job.gateway_ori,
        )
        result.response = write(sre)
        result.response_tot = "SRE"
    result.step("ROUTED", result.response_tot or "no answer required", t)


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

    result.step("REJECTED", code, t)
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
    result.step("REJECTED", "FINGER_QUALITY", t)
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
    from .iaq import build_iaq, dhs_messages
    from .offenses import OffenseTable, priority
    from .subjects import DhsSubject

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

    from .subjects import SubjectStore

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
    from .iaq import parse_iar

    try:
        iar = parse_iar(job.payload)
    except ValueError as exc:
        result.identity = {"tot": "IAR", "encoding": "text"}
        result.step("REJECTED", f"IAR does not parse: {exc}"[:200], t)
        return
    result.identity = {"tot": "IAR", "ori": iar.get("sender_ori"), "encoding": "text"}
    result.iar = {"control": iar.get("control"), "text": iar.get("text") or ""}
    result.step("DECODED", "IAR", t)


def _identity_from_peek(payload: bytes) -> dict:
    t1 = peek_type1(payload)
    return {
        "ori": t1.get("1.008"),
        "tcn": t1.get("1.009"),
        "tot": t1.get("1.004"),
        "dai": t1.get("1.007"),
        "encoding": "traditional",
    }


def _finger_templates(txn: Transaction, where: dict | None = None) -> dict:
    """``{position: Template or None}`` of the rolled finger images (Type-14, else Type-4) at
    FGP 1-10; None for a finger image that does not decode (unusable, not an error).  ``where``
    receives the Location (record, FGP field) of each position's image."""
    from gateway.imaging import ImagingError, decode_record, ntr_of, to_500ppi
    from gateway.matcher import extract

    out: dict = {}
    ntr = ntr_of(txn)
    for recno, record in enumerate(txn.records, start=1):
        if record.type not in (4, 14):
            continue
        tag = f"{record.type}.{4 if record.type == 4 else 13:03d}"
        try:
            fgp = int(record.value(tag) or 0)
        except ValueError:
            continue
        if fgp not in FINGER_POSITIONS or out.get(fgp) is not None:
            continue
        if where is not None:
            where[fgp] = Location(recno, record.type, tag)
        try:
            image = to_500ppi(decode_record(record, ntr=ntr))
            out[fgp] = extract(image.pixels, 500)
        except (ImagingError, ValueError):
            out[fgp] = None  # a finger that does not decode is unusable
    return out


_GALLERIES: dict[str, list] = {}  # path -> [Gallery, last enrolment row applied]


def _search(path: str, name: str, job: Job, probe: dict):
    # a shard set searched on Dask raises SearchUnavailable past its deadline: never "no hit"
    gallery = load_gallery(path, job.journal_path, name, job.scheduler, job.scheduler_tls)
    candidates = gallery.search(probe, top=1)
    return candidates[0] if candidates else None


def load_gallery(
    path: str,
    journal_path: str | None,
    name: str,
    scheduler: str | None = None,
    tls: tuple[str, str, str] | None = None,
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

        rows = list(read_enrolments(journal_path, name, entry[1]))
        if rows and isinstance(gallery, shards.ShardedGallery):
            gallery.enrol(rows)
            entry[1] = rows[-1][0]
        elif rows:
            assert isinstance(gallery, Gallery)  # a shard set is handled above
            gallery.add_many((sid, pos, Template.from_bytes(data)) for _, sid, pos, data in rows)
            entry[1] = rows[-1][0]
    return gallery
