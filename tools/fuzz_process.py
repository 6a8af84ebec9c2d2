#!/usr/bin/env python3
"""Fuzz the whole processing of a transaction with mutated submissions (run on demand, not in CI).

Each case is one :func:`gateway.routing.processing.process` call, as a worker makes it, on a
mutated submission: CARs built from NIST's tenprint card (``tests/integration/cars.make_car``) and
the synthetic ones (``gateway.synth``) plus the validation fixtures, traditional and XML, with a
canary Type-2 (name, date of birth, SSN), and the corpus files of ../shared as they are (every TOT
and record type; their Type-2 gets the canary too). Mutations: field values (empty, long, huge or
negative numbers, separators, control and non-ASCII characters, the field's own value altered),
repeated subfields, fields removed or added, records removed or duplicated, TOT and version, image
header fields and image bytes, then bytes of the encoded file (or the XML mutations of
``tools/fuzz_xml.py``). A share of the cases (``--gallery-share``) runs with a small synthetic FBI
gallery, so that the fingers are decoded and extracted too.

Contract: ``process`` never raises and always returns a Result whose response is an SRE or an
ERRT that reads back, or no response where the TOT requires none; an INTERNAL_ERROR answer
(``summary["internal_error"]``) or WORK_MEMORY under the ``--memory`` cap, a case taking more
than ``--hang`` CPU seconds, a crashed child, or the canary's text in an ERRT, in
``result.summary`` or in the steps (they are logged) is a bug, saved under ``--out``
(``--replay FILE`` runs one saved case; a ``.gallery`` suffix means it ran with the gallery).

    python tools/fuzz_process.py --count 3000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from fuzz_xml import Runner, Sample  # noqa: E402
from fuzz_xml import mutate as xml_mutate  # noqa: E402

from gateway.ansinist import FormatError, Record, read, write  # noqa: E402
from gateway.routing.processing import Job, process  # noqa: E402
from tests.integration.cars import SYNTHETIC_TYPE2  # noqa: E402

# The canary Type-2: the test CARs' Type-2 with personal fields whose values must never reach an
# ERRT, a log or a summary (an SSN added).
CANARY_TYPE2 = {
    **SYNTHETIC_TYPE2,
    "2.016": "212345679",  # SOC (SSN)
    "2.018": "CANARYSUR, CANARYGIVEN Q",
    "2.022": "19800229",  # DOB
}
CANARIES = ["CANARYSUR", "CANARYGIVEN", "19800229", "212345679"]
TODAY = "2026-11-25"

WEIRD = [
    "",
    " ",
    "0",
    "-1",
    "00",
    "1",
    "99",
    "255",
    "256",
    "65535",
    "65536",
    "4294967296",
    "9" * 30,
    "9" * 4000,
    "X" * 300,
    "X" * 100_000,
    "1.5",
    "-0",
    "\x00",
    "\x7f",
    "\u00e9",
    "\u4e2d\u6587",
    "\u0661\u0662",  # Arabic-Indic digits
    "\u00b2",  # superscript two: isdigit() but not int()
    "20261301",
    "20260230",
    "00000000",
    "99999999",
    "NONE",
    "WSQ20",
    "JP2",
    "JP2L",
    "PNG",
    "FACE",
    "Y",
    "N",
]
TOTS = ["CAR", "CNA", "FANC", "MAP", "TPIS", "SRE", "ERRT", "IAQ", "XYZ", "", "car", "CAR "]
IMAGE_TAGS = ["14.006", "14.007", "14.008", "14.009", "14.010", "14.011", "14.012", "14.013"]


def _personal(car_type2: Record) -> None:
    for tag, value in CANARY_TYPE2.items():
        car_type2[tag] = value


def bases(fingers: list[int], corpus: bool = True) -> list[tuple[str, bytes]]:
    """The unmutated submissions: (name, bytes)."""
    from gateway import synth

    out: list[tuple[str, bytes]] = []
    txns = []
    try:
        from tests.integration.cars import make_car

        for k in fingers:
            txns.append((f"card-{k}", read(make_car("NY-FUZZ-000001", fingers=k))))
    except (FileNotFoundError, OSError):
        pass  # the NIST card lives in ../shared: fresh clones fuzz the synthetic CARs only
    for identity in (3, 11):
        txns.append((f"synth-{identity}", read(write(synth.car_transaction(identity)))))
    fixtures = REPO / "fixtures" / "validation"
    for name in ("car-valid.eft", "car-valid-xml.xml"):
        if (fixtures / name).is_file():
            txns.append((name, read((fixtures / name).read_bytes())))
    for name, txn in txns:
        t2 = next(r for r in txn.records if r.type == 2)
        _personal(t2)
        out.append((f"{name}.trad", write(txn, "traditional", canonical=True)))
        t1 = txn.records[0]
        t1["1.002"] = "0500"
        t1["1.013"] = [("NORAM", "EBTS 10.0")]
        out.append((f"{name}.xml", write(txn, "xml")))
    if corpus:  # every TOT and record type of the corpus, as they are (Type-2: the canary)
        shared = REPO.parent / "shared" / "conformance"
        for path in sorted(shared.glob("traditional/*/*")) + sorted(shared.glob("xml/*/*/*.xml")):
            try:
                txn = read(path.read_bytes())
                for t2 in (r for r in txn.records if r.type == 2):
                    _personal(t2)
                kind = "xml" if txn.encoding == "xml" else "trad"
                out.append((f"{path.name}.{kind}", write(txn)))
            except (FormatError, ValueError, OSError):
                continue
    return out


def _copy(record: Record) -> Record:
    """A copy of ``record``'s fields; a duplicate field's second occurrence ("2.034#335", the
    reader's key for it) is left out: the model takes no such key."""
    copy = Record(record.type)
    for tag, field in record.fields.items():
        if "#" not in tag:
            copy[tag] = bytes(field.raw) if field.binary else [list(s) for s in field.subfields]
    return copy


def _pick_field(record: Record, rng: random.Random):
    tags = [t for t in record.fields if not t.endswith(".001")]
    return rng.choice(tags) if tags else None


FIELD_KINDS = ("value", "value", "own", "repeat", "remove", "add", "record", "tot", "image", "data")


def _field_mutation(txn, rng: random.Random, kinds=FIELD_KINDS) -> str:
    records = txn.records
    kind = rng.choice(kinds)
    record = rng.choice(records if rng.random() < 0.3 else [r for r in records if r.type <= 2])
    if kind == "tot":
        records[0]["1.004"] = rng.choice(TOTS)
        return "tot"
    if kind in ("image", "data"):
        images = [r for r in records if r.type in (4, 14)]
        if not images:
            return "none"
        record = rng.choice(images)
        if kind == "data":
            data_tag = "14.999" if record.type == 14 else "4.009"
            field = record.get(data_tag)
            if field is None:
                return "none"
            buf = bytearray(bytes(field.raw))
            how = rng.randrange(4)
            if how == 0 and buf:
                del buf[rng.randrange(len(buf)) :]
            elif how == 1 and buf:
                for _ in range(rng.randint(1, 40)):
                    buf[rng.randrange(len(buf))] = rng.randrange(256)
            elif how == 2:
                buf = bytearray(rng.choice([b"", b"\xff\xa0", b"\x89PNG\r\n\x1a\n", b"\0" * 64]))
            else:
                pos = rng.randrange(max(1, len(buf)))
                buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            record[data_tag] = bytes(buf)
            return "data"
        if record.type == 14:
            record[rng.choice(IMAGE_TAGS)] = rng.choice(WEIRD)
        else:  # Type-4 header: numbers in bytes
            tag = rng.choice(["4.003", "4.004", "4.005", "4.006", "4.007", "4.008"])
            record[tag] = rng.choice(["0", "1", "255", "7", "11", "99", "65535"])
        return "image"
    if kind == "record":
        how = rng.randrange(3)
        if how == 0 and len(records) > 1:
            del records[rng.randrange(1, len(records))]
        elif how == 1:
            src = rng.choice(records[1:] or records)
            for _ in range(rng.choice([1, 1, 20])):
                records.insert(rng.randrange(1, len(records) + 1), _copy(src))
        else:
            rng.shuffle(records)
        return "record"
    tag = _pick_field(record, rng)
    if tag is None:
        return "none"
    field = record.fields[tag]
    if kind == "remove":
        del record.fields[tag]
        return "remove"
    if kind == "add":
        number = rng.choice([3, 19, 200, 899, 998, 999, 9999])
        record[f"{record.type}.{number:03d}"] = rng.choice(WEIRD) or "X"
        return "add"
    if field.binary:
        return "none"
    subs = [list(s) for s in field.subfields] or [[""]]
    if kind == "repeat":
        subs = subs * rng.choice([2, 10, 1000])
    else:
        sub = rng.choice(subs)
        i = rng.randrange(len(sub))
        if kind == "own":  # the field's own value, altered (for Type-2: still personal)
            value = sub[i]
            sub[i] = rng.choice(
                [
                    value + "\x01",
                    value + "\u00e9",
                    value * 40,
                    value + "!",
                    value.lower(),
                    " " + value,
                    value + ", " + value,
                    value[: max(1, len(value) // 2)] + "'" + value[len(value) // 2 :],
                ]
            )
        else:
            sub[i] = rng.choice(WEIRD)
    record[tag] = subs
    return kind


def mutate(
    name: str, data: bytes, rng: random.Random, kinds=FIELD_KINDS, byte_share: float = 0.3
) -> tuple[str, bytes]:
    xml = name.endswith(".xml")
    done: list[str] = []
    if rng.random() < 0.85:
        txn = read(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            done.append(_field_mutation(txn, rng, kinds))
        try:
            if xml:
                data = write(txn, rng.choice(["xml", "xml", "xml-2008"]))
            else:
                data = write(txn, "traditional", canonical=True)
        except (FormatError, ValueError, KeyError, TypeError) as exc:
            done.append(f"unwritable-{type(exc).__name__}")
    if xml and rng.random() < 0.15:  # a personal value as the XML carries it, altered
        value = rng.choice([b"1980-02-29", b"CANARYSUR", b"CANARYGIVEN", b"212345679"])
        altered = rng.choice(
            [b"O'" + value, value + b"'", value * 30, value + b" x", value[:4] + b"'" + value[4:]]
        )
        data = data.replace(value, altered)
        done.append("xml-personal")
    if rng.random() < byte_share or not done:
        if xml:
            what, data = xml_mutate(Sample(name, data), rng)
            done.append(f"xml-{what}")
        else:
            buf = bytearray(data)
            how = rng.choice(["flip", "flips", "insert", "delete", "truncate"])
            pos = rng.randrange(len(buf))
            if how == "flip":
                buf[pos] = rng.randrange(256)
            elif how == "flips":
                for _ in range(rng.randint(2, 16)):
                    buf[rng.randrange(len(buf))] = rng.randrange(256)
            elif how == "insert":
                buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif how == "delete":
                del buf[pos : pos + rng.randint(1, 64)]
            else:
                del buf[pos:]
            data = bytes(buf)
            done.append(f"bytes-{how}")
    return "+".join(done), data


# -- the child --------------------------------------------------------------------------------
GALLERY = ""  # set in main()


def _job(payload: bytes, gallery: bool) -> Job:
    """The Job the daemon makes (gateway.routing.pipeline), with its default limits; with the
    gallery, the FBI and DHS legs both search it (NY and WV activated) and IAQs are built."""
    import datetime as dt

    from gateway.config import Jurisdiction, Limits

    activated = dt.date(2026, 1, 1)
    return Job(
        message_id="M-FUZZ",
        payload=payload,
        response_tcn="GWTCN0000001",
        gateway_ori="WVIAFIS0Z",
        today=TODAY,
        fbi_gallery=GALLERY if gallery else None,
        dhs_gallery=GALLERY if gallery else None,
        jurisdictions=(Jurisdiction("NY", activated), Jurisdiction("WV", activated)),
        lesc=gallery,
        new_subject_id="0000001GW" if gallery else None,
        search_positions=(1, 2, 6, 7),
        max_pixels=Limits().max_pixels_per_transaction,
    )


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def check(message: bytes) -> tuple[str, str]:
    """(outcome, detail) of one case; the first byte says whether it runs with the gallery."""
    gallery, payload = message[:1] == b"G", message[1:]
    try:
        result = process(_job(payload, gallery))
    except Exception:  # noqa: BLE001 - process never raises
        return "BUG", "process raised: " + traceback.format_exc(limit=8)
    summary = result.summary
    if "internal_error" in summary:
        return "BUG", f"INTERNAL_ERROR: {summary['internal_error']}"
    states = [(str(s[0]), s[1]) for s in result.steps]
    if any(outcome == "WORK_MEMORY" for _, outcome in states):
        return "BUG", "WORK_MEMORY under the memory cap"
    leaked = _leaks(json.dumps(summary, default=str)) + _leaks(repr(states))
    if leaked:
        return "BUG", f"personal value {leaked} in the summary or steps: {states} {summary}"[:3000]
    if result.response is None:
        if states and states[-1][1] == "no answer required":
            return "no answer", states[-1][1]
        return "BUG", f"no answer: {states}"
    try:
        answer = read(result.response)
    except FormatError as exc:
        return "BUG", f"our {result.response_tot} does not read back: {exc}"
    if answer.tot != result.response_tot or answer.tot not in ("SRE", "ERRT"):
        return "BUG", f"answer TOT {answer.tot} (said {result.response_tot})"
    if answer.tot == "ERRT":
        leaked = _leaks(result.response.decode("latin-1"))
        if leaked:
            return "BUG", f"personal value {leaked} in the ERRT: {result.response[:3000]!r}"
        code = next((s[1] for s in reversed(states) if "REJECTED" in s[0]), "?")
        return "ERRT", re.sub(r"\d+", "N", code)
    return "SRE", ""


def _make_gallery(path: Path) -> None:
    from gateway.matcher import synthetic
    from gateway.matcher.gallery import Gallery

    g = Gallery()
    synthetic.populate(g, 20, seed=17)
    g.save(path)


def main(argv=None) -> int:
    global GALLERY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hang", type=float, default=30.0, help="CPU s that count as a hang")
    ap.add_argument("--memory", type=int, default=1024, help="MiB a case may allocate (0: no cap)")
    ap.add_argument("--gallery-share", type=float, default=0.15, help="share run with a gallery")
    ap.add_argument("--fingers", default="1,2,4", help="finger counts of the card CARs")
    ap.add_argument("--no-corpus", action="store_true", help="the CARs only, not ../shared")
    ap.add_argument("--kinds", default="all", help="field mutations: a comma list, or all")
    ap.add_argument("--byte-share", type=float, default=0.3, help="share of byte mutations after")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "fuzz-process")
    ap.add_argument("--replay", type=Path, help="run one saved case in this process and exit")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        GALLERY = str(Path(tmp) / "fbi")
        _make_gallery(Path(GALLERY))
        if args.replay:
            flag = b"G" if args.replay.name.endswith(".gallery") else b"-"
            outcome, detail = check(flag + args.replay.read_bytes())
            print(outcome, detail)
            return 1 if outcome == "BUG" else 0
        return _campaign(args)


def _campaign(args) -> int:
    base = bases([int(k) for k in args.fingers.split(",")], corpus=not args.no_corpus)
    runner = Runner(args.memory << 20, max(60.0, 2 * args.hang), check)
    answers: Counter = Counter()
    for name, data in base:  # the unmutated CARs are answered with an SRE
        outcome, detail, _, _ = runner.run(b"G" + data)
        answers[outcome] += 1
        if name.startswith(("card", "synth", "car-")) or outcome == "BUG":
            print(f"base {name}: {len(data)} bytes, {outcome} {detail}", flush=True)
    print(f"{len(base)} unmutated submissions: {dict(answers)}", flush=True)
    rng = random.Random(args.seed)
    kinds = tuple(args.kinds.split(",")) if args.kinds != "all" else FIELD_KINDS
    outcomes: Counter = Counter()
    errts: Counter = Counter()
    bugs: dict[str, list[str]] = {}
    slowest = (0.0, "")
    started = time.perf_counter()
    for case in range(args.count):
        name, data = rng.choice(base)
        kind, payload = mutate(name, data, rng, kinds, args.byte_share)
        gallery = rng.random() < args.gallery_share
        outcome, detail, took, _ = runner.run((b"G" if gallery else b"-") + payload)
        slowest = max(slowest, (took, f"case {case} {kind} of {name}"))
        if outcome != "BUG" and took > args.hang:
            outcome, detail = "BUG", f"took {took:.1f} CPU s (hang)"
        outcomes[outcome] += 1
        if outcome == "ERRT":
            errts[detail] += 1
        if outcome == "BUG":
            key = re.sub(r"\d+", "N", detail.strip().splitlines()[-1][:100]) if detail else "?"
            suffix = ".gallery" if gallery else ""
            path = args.out / f"case-{args.seed}-{case}-{name}{suffix}"
            path.write_bytes(payload)
            first = key not in bugs
            bugs.setdefault(key, []).append(str(path))
            if first:
                print(f"\nBUG case {case} ({kind} of {name}) -> {path}\n{detail}", flush=True)
        if (case + 1) % 200 == 0:
            print(f"{case + 1} cases, {dict(outcomes)}", flush=True)
    runner.stop()
    elapsed = time.perf_counter() - started
    print(
        f"\n{args.count} mutated submissions of {len(base)} in {elapsed:.0f} s (seed {args.seed},"
        f" gallery share {args.gallery_share}): "
        + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    )
    print("ERRT states:", ", ".join(f"{c} {n}" for c, n in errts.most_common(25)))
    print(f"slowest {slowest[0]:.2f} CPU s ({slowest[1]})")
    print(f"distinct bugs {len(bugs)}")
    for key, names in bugs.items():
        print(f"  {len(names)} x {key}  (e.g. {names[0]})")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
