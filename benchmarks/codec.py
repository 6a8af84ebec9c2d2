#!/usr/bin/env python3
"""Codec speed against the PyPI package ``nistitl``, measured in the same run.

Reads and writes ``type-4-tpcard.an2`` (675 KB, 14 Type-4 records) and the whole traditional
corpus with both codecs, prints medians and the ratio, and counts byte-exact re-encodings.

    pip install -e '.[bench]' && python benchmarks/codec.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import read, write  # noqa: E402

CORPUS = REPO.parent / "shared" / "conformance" / "traditional"
CARD = CORPUS / "nist-reference" / "type-4-tpcard.an2"

try:
    import nistitl
except ImportError:  # pragma: no cover
    nistitl = None


def median_seconds(fn, repeat: int, number: int) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def nistitl_read(data: bytes):
    message = nistitl.Message()
    message.parse(data)
    return message


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)

    card = CARD.read_bytes()
    files = [(p, p.read_bytes()) for p in sorted(CORPUS.glob("*/*")) if p.is_file()]
    ours_txn = read(card)
    print(f"{CARD.name}: {len(card)} bytes, {len(ours_txn.records)} records")

    rows = []
    ours_read = median_seconds(lambda: read(card), args.repeat, 200)
    # A write of a read, unmodified transaction is a byte copy; canonical forces re-encoding.
    ours_write = median_seconds(lambda: write(ours_txn), args.repeat, 200)
    ours_canon = median_seconds(lambda: write(ours_txn, canonical=True), args.repeat, 100)
    rows.append(("tenprint card read", ours_read, None))
    rows.append(("tenprint card write (byte-exact)", ours_write, None))
    rows.append(("tenprint card write (canonical)", ours_canon, None))

    corpus_read = median_seconds(lambda: [read(d) for _, d in files], args.repeat, 5)
    rows.append(("corpus read (49 files)", corpus_read, None))

    exact = sum(write(read(d)) == d for _, d in files)
    peer = {}
    if nistitl is not None:
        peer["tenprint card read"] = median_seconds(lambda: nistitl_read(card), args.repeat, 50)
        message = nistitl_read(card)
        peer["tenprint card write (byte-exact)"] = median_seconds(
            lambda: message.NIST, args.repeat, 20
        )
        peer["tenprint card write (canonical)"] = peer["tenprint card write (byte-exact)"]
        parsed, peer_exact, failed = [], 0, []
        for path, data in files:
            try:
                m = nistitl_read(data)
            except Exception as exc:  # noqa: BLE001 - the peer's failures are data here
                failed.append(f"{path.name} ({type(exc).__name__})")
                continue
            parsed.append(data)
            try:
                peer_exact += data == m.NIST
            except Exception:  # noqa: BLE001
                pass

        def peer_corpus():
            for data in parsed:
                nistitl_read(data)

        peer["corpus read (49 files)"] = median_seconds(peer_corpus, args.repeat, 2)

    print(f"\n{'operation':<36}{'ours':>12}{'nistitl':>12}{'speed-up':>10}")
    for name, ours, _ in rows:
        other = peer.get(name)
        ratio = f"{other / ours:>9.1f}x" if other else "       n/a"
        other_s = f"{other * 1000:>10.3f}ms" if other else "         n/a"
        print(f"{name:<36}{ours * 1000:>10.3f}ms{other_s}{ratio}")
    print(f"\nbyte-exact re-encoding: ours {exact}/{len(files)}", end="")
    if nistitl is not None:
        print(f", nistitl {peer_exact}/{len(parsed)} of the {len(parsed)} it parses")
        if failed:
            print(f"nistitl cannot parse: {', '.join(failed)}")
        note = "(nistitl's corpus time covers only the files it parses)"
        print(note)
    else:
        print("\nnistitl is not installed: pip install -e '.[bench]'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
