"""Level 1: the structure of a transaction.

Checks (ANSI/NIST-ITL 1-2011 clauses 7 and 8.1; BRIEF 1.3):

* ``L1_RECORD_ORDER``   Type-1 first, Type-2 records right after it.
* ``L1_CNT_MISSING`` / ``L1_CNT_SYNTAX``  1.003 CNT present, ``type US IDC`` subfields.
* ``L1_CNT_MISMATCH``   the count in CNT's first subfield, and the (type) entries, against the
  records found (the count is the ``CNT_COUNT`` quirk; a wrong record type is always an error).
* ``L1_IDC_MISMATCH`` / ``L1_IDC_MISSING``  each record's x.002 IDC against CNT (quirks).
* ``L1_IDC_DUPLICATE``  two records of the same type with the same IDC.
* ``L1_IDC_REFERENCE``  a Type-9 whose IDC matches no friction-ridge image record of the transaction
  (warning: 1-2011 8.9.2 ties minutiae to their image by IDC when the image is present).
* ``L1_LEN_MISMATCH`` / ``L1_NO_FS``  x.001 LEN equals the bytes read and tagged records end with FS
  (the reader already refuses files where this fails; kept for records handed in from elsewhere).
* codec quirks seen while reading: ``L1_SHORT_TAG``, ``L1_UNPADDED_IDC``, ``L1_DUPLICATE_FIELD``,
  ``L1_TAG_TYPE_MISMATCH``, ``L1_TRAILING_BYTES`` with the severity the :class:`Strictness` gives.

Unreadable data never gets here: :func:`gateway.validation.validate_bytes` turns the codec's
:class:`~gateway.ansinist.FormatError` (LEN past the end, no FS at LEN, CNT naming records that
are not there ...) into one ``L1_<code>`` error.
"""

from __future__ import annotations

from typing import Any

from gateway.ansinist import Location, Transaction

from ._common import digits, error, finding, location, warning
from .findings import ERROR, WARNING, Finding
from .strictness import IGNORE, REJECT, Strictness

# Codec warning -> finding code.  CNT_COUNT, IDC_MISMATCH and IDC_MISSING are re-derived below from
# the records themselves (so transactions built in code get them too); UNKNOWN_VERSION, NSR_19_68
# and LEGACY_CGA are field values, checked by level 2.
CODEC_CODES = {
    "SHORT_TAG": "L1_SHORT_TAG",
    "UNPADDED_IDC": "L1_UNPADDED_IDC",
    "DUPLICATE_FIELD": "L1_DUPLICATE_FIELD",
    "TAG_TYPE_MISMATCH": "L1_TAG_TYPE_MISMATCH",
    "TRAILING_BYTES": "L1_TRAILING_BYTES",
}
_IMAGE_TYPES = frozenset({3, 4, 5, 6, 13, 14, 15})
_FS = 0x1C


def quirk(
    strictness: Strictness, quirk_name: str, code: str, loc: Location, message: str, **kw: Any
) -> Finding | None:
    """A finding for a tolerated quirk, or ``None`` when the strictness says to ignore it."""
    action = strictness.action(quirk_name)
    if action == IGNORE:
        return None
    severity = ERROR if action == REJECT else WARNING
    return finding(severity, code, loc, message, **kw)


def check(txn: Transaction, strictness: Strictness) -> list[Finding]:
    out: list[Finding] = []
    add = out.append
    records = txn.records
    if not records:
        add(error("L1_RECORD_ORDER", Location(), "the transaction has no records"))
        return out

    for w in txn.warnings:
        code = CODEC_CODES.get(w.code)
        if code is None:
            continue
        loc = w.location
        if loc.tag is not None:
            loc = Location(loc.record, loc.record_type, loc.tag.partition("#")[0], None)
        f = quirk(strictness, w.code, code, loc, w.message, rule="ANSI/NIST-ITL 1-2011 clause 7")
        if f is not None:
            add(f)

    # -- order: Type-1 first, Type-2 next (1-2011 clause 8.1 and 8.2) -------------------------
    if records[0].type != 1:
        add(error("L1_RECORD_ORDER", location(1, records[0]), "the first record is not Type-1"))
    seen_other = False
    for recno, record in enumerate(records[1:], start=2):
        if record.type == 1:
            add(error("L1_RECORD_ORDER", location(recno, record), "a second Type-1 record"))
        elif record.type == 2:
            if seen_other:
                add(
                    error(
                        "L1_RECORD_ORDER",
                        location(recno, record),
                        "Type-2 record after an image record; Type-2 must follow Type-1",
                        rule="ANSI/NIST-ITL 1-2011 8.1 record order",
                    )
                )
        else:
            seen_other = True

    # -- LEN and FS of records that carry their source bytes ---------------------------------------
    for recno, record in enumerate(records, start=1):
        raw = getattr(record, "_raw", None)  # the codec keeps the bytes a record was read from
        if raw is None or txn.encoding != "traditional" or record.modified:
            continue
        len_field = record.fields.get(f"{record.type}.001")
        declared = len_field.value if len_field is not None else None
        if declared is None or not declared.isdigit() or int(declared) != len(raw):
            add(
                error(
                    "L1_LEN_MISMATCH",
                    location(recno, record, f"{record.type}.001"),
                    f"LEN {declared!r} differs from the {len(raw)} bytes of the record",
                    rule="x.001 LEN counts every byte of the record",
                )
            )
        if not record.is_binary and raw[-1] != _FS:
            add(error("L1_NO_FS", location(recno, record), "the record does not end with FS"))

    # -- CNT against the records -----------------------------------------------------------------
    t1 = records[0]
    cnt = t1.fields.get("1.003") if t1.type == 1 else None
    cnt_loc = Location(1, 1, "1.003")
    entries: list[tuple[int, int]] | None = None
    if t1.type == 1 and cnt is None:
        add(error("L1_CNT_MISSING", cnt_loc, "field 1.003 CNT is missing"))
    elif cnt is not None:
        entries = []
        for sub in cnt.subfields:
            if len(sub) != 2 or not digits(sub[0]) or not digits(sub[1]):
                add(
                    error(
                        "L1_CNT_SYNTAX",
                        cnt_loc,
                        f"CNT subfield {'^'.join(sub)[:30]!r} is not 'record type US IDC'",
                        rule="1.003 CNT",
                    )
                )
                entries = None
                break
            entries.append((int(sub[0]), int(sub[1])))
    if entries:
        count = entries[0][1] if entries[0][0] == 1 else None
        listed = entries[1:] if entries[0][0] == 1 else entries
        found = len(records) - 1
        if count is None:
            add(error("L1_CNT_SYNTAX", cnt_loc, "CNT does not start with '1 US <count>'"))
        elif count != found:
            f = quirk(
                strictness,
                "CNT_COUNT",
                "L1_CNT_MISMATCH",
                cnt_loc,
                f"CNT declares {count} records after Type-1, the file has {found}",
                rule="1.003 CNT first subfield = number of other records",
            )
            if f is not None:
                add(f)
        if len(listed) != found:
            add(
                error(
                    "L1_CNT_MISMATCH",
                    cnt_loc,
                    f"CNT lists {len(listed)} records, the file has {found}",
                    rule="1.003 CNT lists every record",
                )
            )
        for recno, ((rtype, idc), record) in enumerate(
            zip(listed, records[1:], strict=False), start=2
        ):
            if rtype != record.type:
                add(
                    error(
                        "L1_CNT_MISMATCH",
                        cnt_loc,
                        f"CNT entry {recno - 1} announces Type-{rtype}, record {recno} is "
                        f"Type-{record.type}",
                        rule="1.003 CNT order = record order",
                    )
                )
            elif record.idc is not None and record.idc != idc:
                f = quirk(
                    strictness,
                    "IDC_MISMATCH",
                    "L1_IDC_MISMATCH",
                    location(recno, record, f"{record.type}.002"),
                    f"IDC {record.idc} differs from {idc} announced in 1.003 CNT",
                    rule="x.002 IDC = the IDC of the record's CNT entry",
                )
                if f is not None:
                    add(f)

    # -- IDC presence, uniqueness, references ---------------------------------------------------
    users: dict[tuple[int, int], list[int]] = {}
    image_idcs: set[int] = set()
    for recno, record in enumerate(records[1:], start=2):
        own = record.idc
        if own is None:
            f = quirk(
                strictness,
                "IDC_MISSING",
                "L1_IDC_MISSING",
                location(recno, record, f"{record.type}.002"),
                "the record has no (numeric) IDC",
                rule="x.002 IDC is mandatory",
            )
            if f is not None:
                add(f)
            continue
        users.setdefault((record.type, own), []).append(recno)
        if record.type in _IMAGE_TYPES:
            image_idcs.add(own)
    # One finding per IDC shared by records of one type (three Type-13 records with IDC 9 are one
    # mistake, not two), placed at the second record that uses it.
    for (rtype, idc), recnos in users.items():
        if len(recnos) < 2:
            continue
        others = ", ".join(str(n) for n in recnos[1:])
        add(
            error(
                "L1_IDC_DUPLICATE",
                location(recnos[1], records[recnos[1] - 1], f"{rtype}.002"),
                f"IDC {idc} of record {recnos[0]} (Type-{rtype}) is used again by record(s) "
                f"{others}",
                rule="IDC unique per record type (1-2011 7.3.1)",
            )
        )
    if image_idcs:
        for recno, record in enumerate(records[1:], start=2):
            if record.type == 9 and record.idc is not None and record.idc not in image_idcs:
                add(
                    warning(
                        "L1_IDC_REFERENCE",
                        location(recno, record, "9.002"),
                        f"Type-9 IDC {record.idc} matches no fingerprint image record",
                        rule="Type-9 IDC = IDC of its image record (1-2011 8.9)",
                    )
                )
    return out
