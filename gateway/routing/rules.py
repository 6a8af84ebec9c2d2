"""Routing rules as pure decision functions (no I/O, no Twisted).

TOT families follow EBTS 9.1 section 3.1 (Identification Service) and the verification file's
TRANSACTIONS blocks; the FBI/DHS interoperability rules follow DESIGN.md ("The interoperability
rules").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

# Criminal tenprint submissions ("booking" TOTs): searched against FBI and, where the
# jurisdiction is activated, against DHS, for every arrestee.
BOOKING_TOTS = frozenset({"CAR", "CNA", "CPDR", "CPNU"})
# Tenprint identification submissions (EBTS 9.1 "Tenprint Fingerprint Identification
# Submissions"): searched against the FBI criminal file, answered by SRE.
TENPRINT_TOTS = frozenset(
    {
        "CAR",
        "CNA",
        "CPNU",
        "CPDR",
        "DOCE",
        "EMUF",
        "FANC",
        "FAUF",
        "FNDR",
        "NNDR",
        "NFAP",
        "NFUE",
        "NFUF",
        "MAP",
        "DEK",
        "DEU",
        "MPR",
        "AMN",
    }
)
# "No Answer Necessary": no SRE unless something goes wrong (then an ERRT).
NO_ANSWER_TOTS = frozenset({"CNA"})
RESPONSE_TOTS = frozenset({"SRE", "ERRT", "ERRA", "ERRI", "ERRL", "ERRR"})


def is_booking(tot: str | None) -> bool:
    return tot in BOOKING_TOTS


def is_tenprint(tot: str | None) -> bool:
    return tot in TENPRINT_TOTS


def answer_required(tot: str | None) -> bool:
    """True when a successful submission of this TOT is answered with an SRE."""
    return tot in TENPRINT_TOTS and tot not in NO_ANSWER_TOTS


def gateway_answer(tot: str | None) -> str | None:
    """The TOT this gateway answers a *valid* submission with.

    SRE for tenprint submissions that require an answer; nothing for CNA ("No Answer
    Necessary") and for responses it receives (SRE, ERRT ...); ERRT for any other TOT, which
    this gateway does not serve.
    """
    if answer_required(tot):
        return "SRE"
    if tot in RESPONSE_TOTS or tot in NO_ANSWER_TOTS:
        return None
    return "ERRT"


def should_enroll(tot: str | None, ret: str | None, hit: bool) -> bool:
    """EBTS 2.005 RET=Y asks to retain the prints; a new subject is enrolled on no hit."""
    return tot in TENPRINT_TOTS and (ret or "").upper() == "Y" and not hit


def parse_dat(value: str | None) -> dt.date | None:
    """1.005 DAT (CCYYMMDD) as a date, or None when it is not one."""
    if not value or len(value) != 8 or not value.isdigit():
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def jurisdiction_for(ori: str | None, jurisdictions: Iterable) -> Any:
    """The jurisdiction with the longest ``ori_prefix`` matching the ORI."""
    best = None
    for item in jurisdictions:
        prefix = item.ori_prefix
        if ori and ori.startswith(prefix) and (best is None or len(prefix) > len(best.ori_prefix)):
            best = item
    return best


def dhs_search_required(
    tot: str | None, ori: str | None, dat: str | None, jurisdictions: Iterable
) -> tuple[bool, str]:
    """Whether a submission goes to DHS, and why (for the routing log).

    Every booking TOT from an activated jurisdiction, dated on or after the activation date,
    is searched, whatever the subject's demographics say.
    """
    if not is_booking(tot):
        return False, f"TOT {tot} is not a booking submission"
    found = jurisdiction_for(ori, jurisdictions)
    if found is None or found.dhs_activated is None:
        return False, f"jurisdiction of ORI {ori} is not activated"
    date = parse_dat(dat)
    if date is None:
        return False, "1.005 DAT is not a date"
    if date < found.dhs_activated:
        return False, f"DAT {date} is before activation on {found.dhs_activated}"
    return True, f"jurisdiction {found.ori_prefix} activated {found.dhs_activated}"
