"""Validation speed: the NIST tenprint cards validated at all levels (plain script, not in CI).

    .venv/bin/python benchmarks/validate.py [--runs 200]

Measures ``validate_bytes`` (read + levels 1-3, profile ebts-10; level 4 applies to XML only)
on ``type-14-tpcard-nqm.an2`` (675 KB, 14 Type-14) and ``type-4-tpcard.an2`` (673 KB, 14 Type-4),
and prints the median and p90 per file.  Target: median at most 20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.validation import validate_bytes  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "conformance" / "traditional" / "nist-reference"
FILES = ["type-14-tpcard-nqm.an2", "type-4-tpcard.an2"]
TARGET_MS = 20.0


def measure(data: bytes, runs: int) -> list[float]:
    validate_bytes(data)  # warm up: rule tables are parsed once per process
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        validate_bytes(data)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="validation benchmark")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    worst = 0.0
    for name in FILES:
        data = (REFERENCE / name).read_bytes()
        times = sorted(measure(data, args.runs))
        median = statistics.median(times)
        p90 = times[int(0.9 * (len(times) - 1))]
        worst = max(worst, median)
        findings = len(validate_bytes(data).findings)
        print(
            f"{name}: {len(data) / 1024:.0f} KiB, {findings} findings, "
            f"median {median:.2f} ms, p90 {p90:.2f} ms over {args.runs} runs"
        )
    verdict = "OK" if worst <= TARGET_MS else "SLOWER THAN TARGET"
    print(f"target median <= {TARGET_MS:.0f} ms: {verdict}")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
