#!/usr/bin/env python3
"""Write synthetic fingerprint images: N identities x finger positions x K impressions, as PNG.

    python tools/synth_prints.py OUT_DIR --identities 100 --impressions 8 [--start 0]
        [--positions 1-10] [--jobs 2]

Files are named ``IIIIIIII_PP_K.png`` (identity, FGP, impression), 416 x 416 8-bit grey at
500 ppi (recorded in the PNG).  The same arguments always produce the same images.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_positions(text: str) -> list[int]:
    """``"1-10"``, ``"2,7"`` or ``"1-3,6"`` -> sorted finger positions."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    if not out or min(out) < 1 or max(out) > 10:
        raise argparse.ArgumentTypeError("finger positions are 1-10")
    return sorted(out)


def _one_identity(job: tuple[int, list[int], int, str]) -> int:
    from PIL import Image

    from gateway.synth import PPI, finger

    identity, positions, impressions, out = job
    for position in positions:
        for impression in range(impressions):
            path = Path(out) / f"{identity:08d}_{position:02d}_{impression}.png"
            Image.fromarray(finger(identity, position, impression)).save(path, dpi=(PPI, PPI))
    return len(positions) * impressions


def progress(done: int, total: int, started: float, unit: str) -> None:
    """One self-overwriting progress line on stderr."""
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    sys.stderr.write(
        f"\r{done}/{total} {unit} ({100 * done / total:5.1f} %) {rate:6.1f}/s, ETA {eta:6.0f} s "
    )
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--identities", "-n", type=int, default=10)
    parser.add_argument("--start", type=int, default=0, help="first identity number")
    parser.add_argument("--positions", type=parse_positions, default=list(range(1, 11)))
    parser.add_argument("--impressions", "-k", type=int, default=1)
    parser.add_argument("--jobs", "-j", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.identities < 1 or args.impressions < 1 or args.start < 0 or args.jobs < 1:
        parser.error("--identities, --impressions and --jobs must be >= 1, --start >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (identity, args.positions, args.impressions, str(args.out))
        for identity in range(args.start, args.start + args.identities)
    ]
    total = len(jobs) * len(args.positions) * args.impressions
    started = time.monotonic()
    done = 0
    if args.jobs == 1:
        results = map(_one_identity, jobs)
        for count in results:
            done += count
            progress(done, total, started, "images")
    else:
        with Pool(args.jobs) as pool:
            for count in pool.imap_unordered(_one_identity, jobs):
                done += count
                progress(done, total, started, "images")
    sys.stderr.write("\n")
    print(f"wrote {done} images to {args.out} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
