#!/usr/bin/env python3
"""Fuzz the traditional reader with mutated corpus files (run on demand, not in CI).

Every mutation must either read (and then write back) or raise the codec's own FormatError:
any other exception, or a read slower than ``--hang`` seconds, is reported as a bug with the
mutation that caused it (saved under ``--out`` for replay).

    python tools/fuzz_codec.py --count 100000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import FormatError, read, write  # noqa: E402

CORPUS = REPO.parent / "shared" / "conformance" / "traditional"
FS, GS, RS, US = 0x1C, 0x1D, 0x1E, 0x1F


class Sample:
    """A corpus file with the byte offsets of its records and LEN fields."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        txn = read(self.data)
        self.records = []  # (offset, length, binary)
        for record in txn.records:
            length = len(record._raw) if record._raw is not None else int(record.value("1.001"))
            self.records.append((record.offset, length, record.is_binary))
        t1_len = self.records[0][1]
        self.cnt_span = self._field_span(0, t1_len, b"1.003:", b"1.03:")

    def _field_span(self, start, length, *tags):
        for tag in tags:
            i = self.data.find(tag, start, start + length)
            if i >= 0:
                j = i + len(tag)
                k = self.data.find(b"\x1d", j, start + length)
                return j, (k if k >= 0 else start + length - 1)
        return None


def byte_mutation(data: bytearray, kind: str, rng: random.Random) -> bool:
    """The mutations any format gets, in place: ``truncate`` (cut at a random offset),
    ``flip`` (one random byte), ``flips`` (2-32 of them), ``insert`` (1-16 random bytes),
    ``delete`` (1-64 bytes).  False for any other kind (also used by tools/fuzz_xml.py)."""
    if kind == "truncate":
        del data[rng.randrange(len(data)) :]
    elif kind == "flip":
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "flips":
        for _ in range(rng.randint(2, 32)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "insert":
        pos = rng.randrange(len(data))
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        pos = rng.randrange(len(data))
        del data[pos : pos + rng.randint(1, 64)]
    else:
        return False
    return True


def mutate(sample: Sample, rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(sample.data)
    kind = rng.choice(
        [
            "truncate",
            "flip",
            "flips",
            "len",
            "huge_len",
            "cnt",
            "no_fs",
            "insert",
            "delete",
            "separator",
            "splice",
        ]
    )
    offset, length, binary = rng.choice(sample.records)
    if byte_mutation(data, kind, rng):
        pass
    elif kind in ("len", "huge_len"):
        value = rng.choice([0, 1, 17, 2**31, 2**32 - 1, 999999999, length + rng.randint(-50, 50)])
        if kind == "huge_len":
            value = rng.choice([2**32 - 1, 2**31, 10**9, 10**12])
        if binary:
            data[offset : offset + 4] = (value % 2**32).to_bytes(4, "big")
        else:
            colon = data.find(b":", offset, offset + 16)
            end = data.find(b"\x1d", colon, offset + 32)
            if colon > 0 and end > 0:
                data[colon + 1 : end] = str(value).encode()
    elif kind == "cnt" and sample.cnt_span:
        a, b = sample.cnt_span
        cnt = bytearray(data[a:b])
        choice = rng.randrange(4)
        if choice == 0 and cnt:  # change one digit
            i = rng.randrange(len(cnt))
            if chr(cnt[i]).isdigit():
                cnt[i] = ord(str(rng.randrange(10)))
        elif choice == 1:  # drop the last entry
            cut = cnt.rfind(bytes([RS]))
            if cut > 0:
                del cnt[cut:]
        elif choice == 2:  # duplicate an entry
            cut = cnt.rfind(bytes([RS]))
            if cut > 0:
                cnt += cnt[cut:]
        else:  # swap a type for a binary or a tagged one
            cnt = cnt.replace(
                b"\x1e2\x1f", rng.choice([b"\x1e4\x1f", b"\x1e9\x1f", b"\x1e8\x1f"]), 1
            )
        data[a:b] = cnt
    elif kind == "no_fs":
        end = offset + length - 1
        if not binary and end < len(data) and data[end] == FS:
            if rng.random() < 0.5:
                del data[end]
            else:
                data[end] = rng.choice([GS, RS, 0x41])
    elif kind == "separator":
        pos = rng.randrange(offset, min(offset + length, len(data)))
        data[pos] = rng.choice([FS, GS, RS, US, ord(":"), ord(".")])
    elif kind == "splice":
        a = rng.randrange(len(data))
        b = rng.randrange(len(data))
        data[a:a] = data[b : b + rng.randint(1, 256)]
    return kind, bytes(data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang", type=float, default=1.0, help="seconds counted as a hang")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "fuzz"))
    args = parser.parse_args(argv)

    samples = [Sample(p) for p in sorted(CORPUS.glob("*/*")) if p.is_file()]
    rng = random.Random(args.seed)
    outcomes: Counter = Counter()
    codes: Counter = Counter()
    bugs: list[tuple[str, str, str]] = []
    slowest = 0.0
    started = time.perf_counter()
    for i in range(args.count):
        sample = rng.choice(samples)
        kind, data = mutate(sample, rng)
        t0 = time.perf_counter()
        try:
            txn = read(data)
            write(txn)
            for record in txn.records:
                for field in record.fields.values():
                    field.subfields  # noqa: B018 - decode lazily-held text too
            outcomes["read"] += 1
        except FormatError as exc:
            outcomes["FormatError"] += 1
            codes[exc.code] += 1
        except Exception as exc:  # noqa: BLE001 - the point of fuzzing
            outcomes["BUG"] += 1
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            name = out / f"bug-{i}-{sample.path.name}-{kind}.bin"
            name.write_bytes(data)
            bugs.append((str(name), repr(exc), traceback.format_exc(limit=3)))
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, elapsed)
        if elapsed > args.hang:
            outcomes["HANG"] += 1
        if (i + 1) % 10_000 == 0:
            print(f"{i + 1} inputs, {dict(outcomes)}", flush=True)
    total = time.perf_counter() - started
    print(f"\n{args.count} mutated inputs from {len(samples)} corpus files in {total:.1f} s")
    print(f"outcomes: {dict(outcomes)}; slowest read {slowest * 1000:.1f} ms")
    print("FormatError codes:", ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    for name, exc, tb in bugs[:20]:
        print(f"\nBUG {exc} ({name})\n{tb}")
    return 1 if bugs or outcomes["HANG"] else 0


if __name__ == "__main__":
    sys.exit(main())
