"""ERRT (Tenprint Transaction Error) responses built from validation findings.

DESIGN.md "Responses" and EBTS 9.1 (verification file, TOT ERRT ``1:1 2:1``): Type-1 + Type-2 with
1-11 occurrences of 2.060 MSG (ANS, ``sca="PRINT"``, 1-300 characters), one per finding naming the
field and the rule; when there are more than 11 findings the 11th line says how many are left out.
1.010 TCR = the submission's TCN, 1.007 DAI / 1.008 ORI swapped, a new 1.009 TCN, the submission's
encoding.  Optional Type-2 fields the ERRT rules allow (2.006 ATN, 2.007 SCO, 2.009 OCA, 2.014 FBI,
2.015 SID, 2.017 MNU, 2.073 CRI; NGI Inc4 ERRT template) are echoed from the submission when they
are valid there, so the submitter can match the error to its case.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import re
from datetime import date

from gateway.ansinist import Location, Transaction
from gateway.ansinist.traditional import peek_type1
from gateway.validation import ERROR, Finding
from gateway.validation._common import MSG_LIMIT, printable
from gateway.validation.profile import check_field, get_profile

MSG_OCCURRENCES = 11  # EBTS 9.1 2.060 MSG occ 1-11 for ERRT
ECHOED_FIELDS = ("2.006", "2.007", "2.009", "2.014", "2.015", "2.017", "2.073")
RESPONSE_VERSIONS = frozenset({"0400", "0500", "0501", "0502"})
_AN9 = re.compile(r"[A-Za-z0-9]{9}")
_TCN = re.compile(r"[\x20-\x7e]{10,40}")


def msg_lines(lines, more: str = "findings") -> list[str]:
    """2.060 MSG occurrences: printable, at most 300 characters each, at most 11; past 11 the last
    line says how many more there were."""
    lines = [printable(line, MSG_LIMIT) for line in lines]
    lines = [line for line in lines if line]
    if len(lines) > MSG_OCCURRENCES:
        rest = len(lines) - (MSG_OCCURRENCES - 1)
        lines = lines[: MSG_OCCURRENCES - 1] + [f"... and {rest} more {more}".rstrip()]
    return lines


def errt_messages(findings) -> list[str]:
    """The 2.060 MSG lines for ``findings``: errors first, at most 11 lines of at most 300 chars."""
    ordered = sorted(findings, key=lambda f: f.severity != ERROR)
    return msg_lines(f.errt_text for f in ordered) or ["transaction rejected: no detail available"]


def response_header(
    submission: Transaction,
    tot: str,
    *,
    tcn: str,
    ori: str | None = None,
    dai: str | None = None,
    dat: str | None = None,
    pry: str | None = None,
) -> Transaction:
    """Type-1 of a response to ``submission`` (SRE, ERRT), in the submission's encoding.

    DAI and ORI are the submission's ORI and DAI swapped unless given; TCR is the submission's
    TCN when it is ANS 10-40 (the rule of 1.010), else left out; VER follows the submission where
    a response may carry it; XML responses carry 1.013 DOM, which the EBTS 10 schema requires.
    """
    encoding = submission.encoding or "traditional"
    dai = dai or submission.ori or ""
    ori = ori or submission.dai or ""
    if not _AN9.fullmatch(dai) and _AN9.fullmatch(ori):
        # The submission names no usable ORI (a file that does not read, an ORI "UNKNOWN"): the
        # answer still goes to the agency's registered destinations (DESIGN.md section 4), never
        # by DAI, so 1.007 takes the responder's own ORI and the ERRT stays valid (EBTS 1.007 DAI
        # AN 9) instead of carrying a DAI no agency has.
        dai = ori
    ver = submission.ver if submission.ver in RESPONSE_VERSIONS else "0400"
    if encoding == "xml":
        ver = submission.ver if submission.ver in {"0500", "0501", "0502"} else "0500"
    tcr = submission.tcn if submission.tcn and _TCN.fullmatch(submission.tcn) else None
    dom = None
    if encoding == "xml":
        # The EBTS 10 XML schema requires 1.013 DOM (NGI Inc4 templates: NORAM / EBTS 10.0).
        items = submission.records[0].get("1.013") if submission.records else None
        dom = (
            (items.items[0], items.items[1])
            if items is not None and len(items.items) >= 2
            else None
        )
        dom = dom or ("NORAM", "EBTS 10.0")
    return Transaction.new(
        tot=tot,
        dai=dai,
        ori=ori,
        tcn=tcn,
        tcr=tcr,
        dat=dat or date.today().strftime("%Y%m%d"),
        ver=ver,
        pry=pry,
        dom=dom,
        encoding=encoding,
    )


def build_errt(
    submission: Transaction,
    findings,
    *,
    tcn: str,
    ori: str | None = None,
    dat: str | None = None,
    dai: str | None = None,
) -> Transaction:
    """The ERRT answering ``submission`` rejected for ``findings`` (an iterable of Finding).

    ``tcn`` is the new transaction control number; ``ori`` defaults to the submission's DAI (the
    gateway answers as the agency that was addressed) and ``dai`` to the submission's ORI; ``dat``
    (CCYYMMDD) to today.  A submission TCN that is not ANS 10-40 cannot be referenced in 1.010 TCR
    (the rule of 1.010) and is then left out; the MSG lines still say what was wrong.
    """
    txn = response_header(submission, "ERRT", tcn=tcn, ori=ori, dai=dai, dat=dat)
    t2 = txn.add_record(2, idc=0)
    t2["2.060"] = errt_messages(list(findings))
    _echo_fields(submission, t2)
    # CNT as the records stand (the writer would rebuild it; validation reads it as it is).
    txn.records[0]["1.003"] = [("1", str(len(txn.records) - 1))] + [
        (str(t), f"{i:02d}") for t, i in txn.cnt()
    ]
    return txn


def _echo_fields(submission: Transaction, t2) -> None:
    source = next((r for r in submission.records if r.type == 2), None)
    if source is None:
        return
    profile = get_profile("ebts-10")
    assert profile is not None  # a built-in profile
    for tag in ECHOED_FIELDS:
        field = source.fields.get(tag)
        hit = profile.rule_for(tag, "ERRT")
        if field is None or field.binary or hit is None:
            continue
        label, rule = hit
        problems: list[Finding] = []
        check_field(problems, Location(2, 2, tag), field, rule, label, "ERRT")
        if not problems:
            t2[tag] = [tuple(sub) for sub in field.subfields]


def header_of(data: bytes) -> Transaction | None:
    """A Type-1-only transaction from the head of traditional data the codec could not read.

    Enough to address an ERRT (TCN, ORI, DAI, VER) when a later record is broken; ``None`` when no
    Type-1 can be made out.
    """
    data = bytes(data)
    if b"\x1c" not in data or not data.startswith(b"1."):
        return None
    values = peek_type1(data, limit=len(data))
    if "1.009" not in values:
        return None
    return Transaction.new(
        tot=values.get("1.004", ""),
        dai=values.get("1.007", ""),
        ori=values.get("1.008", ""),
        tcn=values["1.009"],
        dat=values.get("1.005", ""),
        ver=values.get("1.002", "0400"),
    )


__all__ = [
    "MSG_OCCURRENCES",
    "build_errt",
    "errt_messages",
    "header_of",
    "msg_lines",
    "response_header",
]
