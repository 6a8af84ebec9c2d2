"""SRE (Submission Results - Electronic) built from a submission and its search results.

Type-1 + Type-2 (DESIGN.md "Responses"): TCR = the submission's TCN, ORI and DAI swapped, a new
TCN; 2.018 NAM, 2.059 SRF (I = identification, N = non-identification), 2.073 CRI, 2.014 FBI
(UCN) on an identification, 2.060 MSG lines (at most 11 x 300 characters), 2.2037 ESI with the
DHS subject id on a DHS match (EBTS 10 naming).  Same encoding as the submission.
"""

from __future__ import annotations

from gateway.ansinist import Transaction

from .errt import msg_lines, response_header


def build_sre(
    submission: Transaction,
    *,
    tcn: str,
    identified: bool,
    ucn: str | None = None,
    messages: list[str] | None = None,
    esi: str | None = None,
    dat: str | None = None,
    gateway_ori: str | None = None,
) -> Transaction:
    """The SRE answering ``submission``."""
    txn = response_header(
        submission,
        "SRE",
        tcn=tcn,
        ori=submission.dai or gateway_ori,
        dat=dat,
        pry=submission.records[0].value("1.006"),
    )
    sub2 = next((r for r in submission.records if r.type == 2), None)
    t2 = txn.add_record(2, idc=0)
    name = sub2.value("2.018") if sub2 is not None else None
    if name:
        t2["2.018"] = name
    if identified and ucn:
        t2["2.014"] = ucn
    t2["2.059"] = "I" if identified else "N"
    lines = list(messages or [])
    if lines:
        t2["2.060"] = msg_lines(lines, more="")
    cri = sub2.get("2.073") if sub2 is not None else None
    if cri is not None and cri.value:
        t2["2.073"] = [sub[0] for sub in cri.subfields][:3]
    elif submission.ori:
        t2["2.073"] = submission.ori
    if esi:
        t2["2.2037"] = esi  # EBTS 10: ESI, the DHS (IDENT) subject identifier
    return txn
