#!/usr/bin/env python3
"""Write fixtures/samples/demo-car.eft: a small CAR for a synthetic subject (no real person).

One Type-1, an EBTS Type-2 with invented demographics and one Type-14 right-thumb image: a
synthetic concentric ridge pattern (not a real fingerprint), WSQ-compressed.

    python tools/make_demo_sample.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import Transaction, write  # noqa: E402


def ridge_pattern(size: int = 256) -> np.ndarray:
    """Concentric ridges of a 9-pixel period inside an elliptic contact area."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = size / 2, size * 0.55
    r = np.hypot((x - cx) * 1.1, y - cy)
    ridges = 0.5 + 0.5 * np.cos(2 * np.pi * r / 9.0)
    inside = ((x - cx) / (size * 0.42)) ** 2 + ((y - cy) / (size * 0.5)) ** 2 < 1
    pixels = np.where(inside, 255 - 170 * ridges, 255)
    return pixels.astype(np.uint8)


def main() -> int:
    import wsq  # noqa: F401 - registers the WSQ plugin with Pillow

    buffer = io.BytesIO()
    Image.fromarray(ridge_pattern()).save(buffer, "WSQ")
    txn = Transaction.new(
        tot="CAR",
        dai="WVIAFIS0Z",
        ori="NY0303000",
        tcn="DEMO-20261125-000001",
        dat="20261125",
        ver="0400",
        pry="4",
        nsr="19.69",
        ntr="19.69",
        dom=("NORAM",),  # the version item is optional; EBTS 9.1 wants it AN, "9.1" is not
    )
    t2 = txn.add_record(2)
    t2["2.005"] = "Y"
    t2["2.018"] = "SAMPLE, DEMO Q"
    t2["2.020"] = "NY"
    t2["2.022"] = "19800101"
    t2["2.024"] = "X"
    t2["2.025"] = "U"
    t2["2.027"] = "510"
    t2["2.029"] = "170"
    t2["2.031"] = "XXX"
    t2["2.032"] = "XXX"
    t2["2.045"] = "20261125"
    # 2.047 ASL, mandatory for CAR (EBTS 9.1): date of offense US offense literal.  (2.037 RFP,
    # reason fingerprinted, is not a CAR field.)
    t2["2.047"] = [("20261124", "DEMONSTRATION ONLY")]
    t2["2.073"] = "NY0303000"
    t14 = txn.add_record(14)
    for tag, value in {
        "14.003": "1",
        "14.004": "NY0303000",
        "14.005": "20261125",
        "14.006": "256",
        "14.007": "256",
        "14.008": "1",
        "14.009": "500",
        "14.010": "500",
        "14.011": "WSQ20",
        "14.012": "8",
        "14.013": "1",
    }.items():
        t14[tag] = value
    t14["14.999"] = buffer.getvalue()
    out = REPO / "fixtures" / "samples" / "demo-car.eft"
    out.write_bytes(write(txn))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
