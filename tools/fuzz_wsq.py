#!/usr/bin/env python3
"""Fuzz our WSQ decoder with mutated streams (run on demand, not in CI).

The streams are the corpus .wsq files and a few synthetic fingers as the CARs carry them.
Every mutation must either decode (to uint8 pixels of the declared size) or raise an
:class:`ImagingError`; any other exception, the decoder's catch-all
("decoder failure", which only a bug reaches), or a decode slower than ``--hang`` seconds is
reported with the mutation that caused it (saved under ``--out`` for replay).  Decoding goes
through :func:`gateway.imaging.decode`, the path of every record, with the header checks
before it.

    python tools/fuzz_wsq.py --count 20000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.imaging import ImagingError, decode  # noqa: E402

CORPUS = REPO.parent / "shared" / "conformance" / "wsq"
MARKERS = [0xFFA0 + k for k in range(9)]


def samples(fingers: int) -> list[bytes]:
    from gateway.synth import finger
    from gateway.synth.transactions import wsq_bytes

    out = [p.read_bytes() for p in sorted(CORPUS.glob("*.wsq"))]
    out += [wsq_bytes(finger(identity, 1 + identity % 10, 0)) for identity in range(fingers)]
    return out


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flips", "byte", "insert", "delete", "marker", "u16"])
    pos = rng.randrange(len(buf))
    if kind == "truncate":
        del buf[pos:]
    elif kind == "flip":
        buf[pos] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randrange(2, 20)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        buf[pos] = rng.randrange(256)
    elif kind == "insert":
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    elif kind == "delete":
        del buf[pos : pos + rng.randrange(1, 64)]
    elif kind == "marker":  # a marker where it does not belong
        buf[pos : pos + 2] = struct.pack(">H", rng.choice(MARKERS))
    else:  # a length, size or table value replaced by an extreme
        buf[pos : pos + 2] = struct.pack(">H", rng.choice([0, 1, 2, 3, 255, 256, 0x7FFF, 0xFFFF]))
    return f"{kind}@{pos}", bytes(buf)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fingers", type=int, default=4, help="synthetic fingers used")
    ap.add_argument("--hang", type=float, default=2.0, help="seconds that count as a hang")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "fuzz-wsq")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    base = samples(args.fingers)
    outcomes: Counter = Counter()
    bugs = 0
    slowest = (0.0, "")
    started = time.perf_counter()
    for case in range(args.count):
        what, data = mutate(rng.choice(base), rng)
        t0 = time.perf_counter()
        problem = None
        try:
            image = decode(data, "WSQ20")
            if image.pixels.shape != (image.height, image.width) or image.pixels.dtype != "uint8":
                problem = f"bad pixels {image.pixels.shape} {image.pixels.dtype}"
            outcomes["decoded"] += 1
        except ImagingError as err:
            outcomes[err.code] += 1
            if "decoder failure" in err.message:
                problem = f"catch-all reached: {err.message}"
        except Exception:  # noqa: BLE001 - that is what we look for
            problem = traceback.format_exc(limit=4)
        took = time.perf_counter() - t0
        slowest = max(slowest, (took, what))
        if took > args.hang:
            problem = f"took {took:.2f} s"
        if problem:
            bugs += 1
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"case-{case}.wsq").write_bytes(data)
            print(f"case {case} ({what}): {problem}")
    elapsed = time.perf_counter() - started
    print(
        f"{args.count} mutations of {len(base)} WSQ streams in {elapsed:.0f} s: "
        + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    )
    print(f"bugs {bugs}; slowest {slowest[0] * 1000:.1f} ms ({slowest[1]})")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
