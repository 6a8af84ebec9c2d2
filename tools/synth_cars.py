#!/usr/bin/env python3
"""Write synthetic CAR transactions (Type-1, Type-2, ten Type-14 WSQ rolled prints) as .eft files.

    python tools/synth_cars.py OUT_DIR --count 100 [--start 0] [--impression 0]
        [--ori NY0303000] [--dai WVIAFIS0Z] [--jobs 2]

Files are named ``car_IIIIIIII.eft`` after the identity.  Subjects and fingerprints are invented
(see ``docs/synth.md``); the same arguments always produce the same files.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synth_prints import progress  # noqa: E402


def _one_car(job: tuple[int, int, str, str, str]) -> int:
    from gateway.ansinist import write
    from gateway.synth import car_transaction

    identity, impression, ori, dai, out = job
    data = write(car_transaction(identity, impression, ori=ori, dai=dai))
    (Path(out) / f"car_{identity:08d}.eft").write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    from gateway.synth.transactions import DEFAULT_DAI, DEFAULT_ORI

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--count", "-n", type=int, default=10)
    parser.add_argument("--start", type=int, default=0, help="first identity number")
    parser.add_argument("--impression", type=int, default=0, help="impression of each finger")
    parser.add_argument("--ori", default=DEFAULT_ORI)
    parser.add_argument("--dai", default=DEFAULT_DAI)
    parser.add_argument("--jobs", "-j", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.count < 1 or args.start < 0 or args.impression < 0 or args.jobs < 1:
        parser.error("--count and --jobs must be >= 1, --start and --impression >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (identity, args.impression, args.ori, args.dai, str(args.out))
        for identity in range(args.start, args.start + args.count)
    ]
    started = time.monotonic()
    done = size = 0
    pool = Pool(args.jobs) if args.jobs > 1 else None
    try:
        results = pool.imap_unordered(_one_car, jobs) if pool else map(_one_car, jobs)
        for nbytes in results:
            done += 1
            size += nbytes
            progress(done, len(jobs), started, "transactions")
    finally:
        if pool:
            pool.close()
            pool.join()
    sys.stderr.write("\n")
    print(
        f"wrote {done} CAR transactions ({size / 1e6:.1f} MB) to {args.out} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
