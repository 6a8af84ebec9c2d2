#!/usr/bin/env python3
"""Write replay fixtures for the demo galleries of the embedded defaults (every routing rule).

    python tools/make_demo_fixtures.py OUT
    ebts-gateway replay OUT --to smtp://127.0.0.1:2525

Synthetic identities of :mod:`gateway.demo` (enrolled: 1-12; in DHS: multiples of 3):

- ``fbi-and-dhs-hit``: identity 3 from NY (activated 2009-10-27): SRE, SRF I, ESI IDENT0000003;
- ``fbi-hit-only``: identity 4 from NY: SRE, SRF I, no ESI;
- ``no-hit``: identity 40 (never enrolled): SRE, SRF N;
- ``not-activated``: identity 6 from a jurisdiction without activation: SRF I, no ESI;
- ``before-activation``: identity 9 from NY dated 2009-01-01: SRF I, no ESI;
- ``cna-no-answer``: a CNA for identity 3: searched and notified, but no SRE is due;
- ``broken``: identity 5, truncated: ERRT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import write  # noqa: E402
from gateway.demo import demo_car, demo_dhs_id  # noqa: E402

CASES = [
    ("fbi-and-dhs-hit", 3, {}, {"response_tot": "SRE", "srf": "I", "esi": demo_dhs_id(3)}),
    ("fbi-hit-only", 4, {}, {"response_tot": "SRE", "srf": "I", "esi": None}),
    ("no-hit", 40, {}, {"response_tot": "SRE", "srf": "N", "esi": None}),
    ("not-activated", 6, {"ori": "ZZ0000000"}, {"response_tot": "SRE", "srf": "I", "esi": None}),
    ("before-activation", 9, {"dat": "20090101"}, {"response_tot": "SRE", "srf": "I", "esi": None}),
    ("cna-no-answer", 3, {"tot": "CNA"}, {"response_tot": None}),
    ("broken", 5, {"truncate": True}, {"response_tot": "ERRT"}),
]


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["demo-fixtures"])[0])
    out.mkdir(parents=True, exist_ok=True)
    for n, (name, identity, change, expect) in enumerate(CASES, start=1):
        txn = demo_car(
            identity,
            tcn=f"NY-DEMO-{n:08d}",
            ori=change.get("ori", "NY0303000"),
            dat=change.get("dat"),
        )
        if "tot" in change:
            txn.records[0]["1.004"] = change["tot"]
        data = write(txn)
        if change.get("truncate"):
            data = data[: len(data) // 2]
        (out / f"{name}.eft").write_bytes(data)
        (out / f"{name}.expect.json").write_text(json.dumps(expect, indent=1) + "\n")
        print(f"{out / name}.eft: {expect}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
