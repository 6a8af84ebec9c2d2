#!/usr/bin/env python3
"""WSQ decoding speed: the pure-numpy decoder (``gateway.imaging.wsq``) against NIST NBIS (the C
decoder of the PyPI ``wsq`` Pillow plugin), measured in the same run.

The images are the Type-14 WSQ fingers of the synthetic CAR transactions cached in
``benchmarks/out/cars/*.eft`` (416 x 416, ~0.75 bpp) plus the conformance ``.wsq`` files of
``../shared/conformance/wsq`` when present.  Each pass decodes every image with both decoders,
one right after the other (so that a busy machine slows both alike), and CPU time
(``time.process_time``) is taken per decode.  Printed: the median milliseconds per image for
both, their ratio, and the largest pixel difference seen.

    .venv/bin/python benchmarks/wsq_decode.py               # 40 CAR fingers + conformance, 5 passes
    .venv/bin/python benchmarks/wsq_decode.py --cars 193 --passes 3

(Not named ``wsq.py``: a script's folder comes first on ``sys.path``, and a ``wsq.py`` there
hid the ``wsq`` plugin package from every other benchmark in this folder.)
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import wsq as _wsq_plugin  # noqa: E402, F401 - registers the NBIS WSQ codec with Pillow
from PIL import Image  # noqa: E402

from gateway.ansinist import read  # noqa: E402
from gateway.imaging import wsq  # noqa: E402

CARS = REPO / "benchmarks" / "out" / "cars"
WSQ_FILES = REPO.parent / "shared" / "conformance" / "wsq"


def car_fingers(limit: int) -> list[tuple[str, bytes]]:
    """The WSQ images of the first cached CAR transactions, until ``limit`` images."""
    images = []
    for path in sorted(CARS.glob("*.eft")):
        for number, record in enumerate(read(path.read_bytes()), 1):
            data = record.data
            if data is not None and bytes(data[:2]) == b"\xff\xa0":
                images.append((f"{path.name}#{number}", bytes(data)))
                if len(images) >= limit:
                    return images
    return images


def nbis(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cars", type=int, default=40, help="CAR finger images (default 40)")
    parser.add_argument("--passes", type=int, default=5, help="passes over the set (default 5)")
    args = parser.parse_args(argv)

    images = car_fingers(args.cars)
    if WSQ_FILES.is_dir():
        images += [(p.name, p.read_bytes()) for p in sorted(WSQ_FILES.glob("*.wsq"))]
    if not images:
        print("no WSQ images found (run benchmarks/gateway.py to cache the CARs?)")
        return 1

    worst = 0
    differing = 0
    pixels = 0
    for _name, data in images:  # warm up (caches, plans) and check equality
        ours, ref = wsq.decode(data), nbis(data)
        diff = np.abs(ours.astype(np.int16) - ref)
        worst = max(worst, int(diff.max()))
        differing += int(np.count_nonzero(diff))
        pixels += diff.size

    times: dict[str, list[float]] = {"ours": [], "nbis": []}
    per_image: dict[str, list[float]] = {"ours": [], "nbis": []}
    for _ in range(args.passes):
        for _name, data in images:
            t0 = time.process_time()
            wsq.decode(data)
            t1 = time.process_time()
            nbis(data)
            t2 = time.process_time()
            times["ours"].append(t1 - t0)
            times["nbis"].append(t2 - t1)
        per_image["ours"].append(sum(times["ours"][-len(images) :]) / len(images))
        per_image["nbis"].append(sum(times["nbis"][-len(images) :]) / len(images))

    ours_ms = statistics.median(times["ours"]) * 1e3
    nbis_ms = statistics.median(times["nbis"]) * 1e3
    cars = sum(1 for name, _ in images if "#" in name)
    print(f"{len(images)} WSQ images ({cars} CAR fingers), {args.passes} passes, CPU time")
    print(f"  numpy decoder : {ours_ms:7.2f} ms per image (median)")
    print(f"  NBIS (wsq)    : {nbis_ms:7.2f} ms per image (median)")
    print(f"  ratio         : {ours_ms / nbis_ms:7.2f} (numpy / NBIS)")
    mean_ours = statistics.median(per_image["ours"]) * 1e3
    mean_nbis = statistics.median(per_image["nbis"]) * 1e3
    print(f"  mean per pass : {mean_ours:.2f} ms vs {mean_nbis:.2f} ms")
    print(f"  max |pixel difference| {worst}, differing pixels {differing} of {pixels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
