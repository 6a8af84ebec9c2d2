#!/usr/bin/env python3
"""Fuzz the XML reader with mutated NIEM/ITL packages (run on demand, not in CI).

The packages are the corpus XML files (FBI EBTS 10.0 NGI templates, NBIS's ITL 2-2008 file) and the
XML the codec writes from the traditional corpus files (``write(txn, "xml")`` and ``"xml-2008"``).
Mutations: bytes (flips, insertions, deletions, truncation, splices), elements (duplicated,
removed, reordered, moved), attributes and namespaces, values (huge or negative numbers, very long
text, control characters, corrupted or truncated base64), ``ansinist-field`` processing
instructions, record-level duplication, deep nesting, floods of tiny elements, encoding
declarations and entity tricks (billion laughs, external entities to a canary file and to a canary
listener on 127.0.0.1: they must be refused, never expanded or fetched).

Contract: :func:`gateway.ansinist.read` returns a Transaction, which writes back in its own
encoding, or raises the codec's FormatError; :func:`gateway.ansinist.peek` never raises.  Any other
exception, a read taking more than ``--hang`` CPU seconds (per 10 MB of input), a MemoryError
under the ``--memory`` cap (each case runs in a child process whose RLIMIT_DATA allows that much
more than it started with), a crashed child, the canary's text in what was read, or a connection
to the canary listener is a bug, saved under ``--out`` for replay (``--replay FILE`` runs one
saved case).

    python tools/fuzz_xml.py --count 20000 --seed 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import resource
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from copy import deepcopy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuzz_codec import byte_mutation  # noqa: E402  (this folder: the format-free mutations)
from lxml import etree  # noqa: E402

from gateway.ansinist import FormatError, peek, read, write  # noqa: E402

XML_CORPUS = REPO.parent / "shared" / "conformance" / "xml"
TRADITIONAL = REPO.parent / "shared" / "conformance" / "traditional"
CANARY = "FUZZCANARY7Q"  # text of the canary file an external entity points to
NAMESPACES = [
    "http://biometrics.nist.gov/standard/2011",
    "http://biometrics.nist.gov/standard/2-2008",
    "http://niem.gov/niem/biometrics/1.0",
    "http://niem.gov/niem/ansi-nist/2.0",
    "http://niem.gov/niem/niem-core/2.0",
    "http://cjis.fbi.gov/fbi_ebts/10.0",
    "http://www.w3.org/2001/XMLSchema-instance",
    "urn:fuzz:unknown",
    "",
]
NUMBERS = [
    "0",
    "-1",
    "-99",
    "00",
    "1",
    "99",
    "100",
    "255",
    "256",
    "65535",
    "65536",
    "2147483648",
    "4294967296",
    "18446744073709551616",
    "9" * 40,
    "9" * 5000,
    "1e999",
    "-0",
    "+5",
    " 7 ",
    "0x10",
    "1.5",
    "NaN",
    "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes, int() too
    "\u00b2",  # superscript two: isdigit() True, int() fails
]


class Sample:
    """A package: its bytes and its parsed tree (for the structural mutations)."""

    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = data
        self.tree = etree.fromstring(data, etree.XMLParser(huge_tree=True))
        self.elements = [e for e in self.tree.iter() if isinstance(e.tag, str)]
        self.leaves = [e for e in self.elements if len(e) == 0]
        self.b64 = [e for e in self.leaves if e.text and len(e.text.strip()) >= 16]


def corpus() -> list[Sample]:
    out = []
    for path in sorted(XML_CORPUS.rglob("*.xml")):
        out.append(Sample(path.name, path.read_bytes()))
    for path in sorted(p for p in TRADITIONAL.rglob("*") if p.is_file()):
        for encoding in ("xml", "xml-2008"):
            try:
                data = write(read(path.read_bytes()), encoding)
            except (FormatError, ValueError):
                continue
            out.append(Sample(f"{path.name}.{encoding}", data))
    return out


def _serialize(root) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _tree_mutation(sample: Sample, rng: random.Random, kind: str) -> bytes:
    root = deepcopy(sample.tree)
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    el = rng.choice(elements[1:] or elements)
    parent = el.getparent()
    if kind == "dup" and parent is not None:
        size = len(etree.tostring(el))
        for _ in range(min(rng.choice([1, 1, 2, 10, 500]), (60 << 20) // size)):
            parent.insert(parent.index(el), deepcopy(el))
    elif kind == "remove" and parent is not None:
        parent.remove(el)
    elif kind == "reorder" and parent is not None:
        kids = list(parent)
        rng.shuffle(kids)
        parent[:] = kids
    elif kind == "move" and parent is not None:
        target = rng.choice(elements)
        if el not in target.iterancestors() and target is not el:
            target.append(el)
    elif kind == "record_dup":
        records = list(root)
        if records:
            rec = rng.choice(records)
            size = len(etree.tostring(rec))
            # past the reader's 64 MB limit is a plain TOO_LARGE: stay below it
            for _ in range(min(rng.choice([1, 2, 50, 1200]), (60 << 20) // size)):
                root.append(deepcopy(rec))
    elif kind == "attr":
        name = rng.choice(
            [
                "id",
                "{http://www.w3.org/2001/XMLSchema-instance}nil",
                "{http://www.w3.org/2001/XMLSchema-instance}type",
                "{http://www.w3.org/XML/1998/namespace}lang",
                "{urn:fuzz:unknown}x",
                "s:id",
            ]
        )
        name = name.replace("s:", "{http://release.niem.gov/niem/structures/2.0/}")
        el.set(name, rng.choice(["true", "1", "x" * rng.choice([1, 100, 100_000]), ""]))
    elif kind == "ns":
        local = etree.QName(el).localname
        uri = rng.choice(NAMESPACES)
        el.tag = f"{{{uri}}}{local}" if uri else local
    elif kind == "rename":
        uri = etree.QName(el).namespace
        local = rng.choice(
            ["RecordCategoryCode", "IdentificationID", "Unknown", "Base64BinaryObject", "Date"]
        )
        el.tag = f"{{{uri}}}{local}" if uri else local
    elif kind == "text":
        leaf = rng.choice([e for e in elements if len(e) == 0] or elements)
        leaf.text = rng.choice(
            NUMBERS
            + [
                "",
                " ",
                "\t\n",
                "x" * rng.choice([300, 100_000, 3_000_000]),
                "TESTPERSON, SYNTHETIC A",
                "2026-02-30",
                "0000-00-00",
                "9999-99-99T99:99:99Z",
                "\u00e9\u4e2d\U0001f600",
                "a,b,c",
                "true",
                "false",
            ]
        )
    elif kind == "category":
        for node in root.iter("{*}RecordCategoryCode"):
            if rng.random() < 0.3:
                node.text = rng.choice(NUMBERS + ["02", "04", "09", "14", "99", "3", "5", "6"])
    elif kind == "base64":
        leaves = [e for e in root.iter() if isinstance(e.tag, str) and len(e) == 0 and e.text]
        leaves = [e for e in leaves if len(e.text.strip()) >= 16] or leaves
        if leaves:
            leaf = rng.choice(leaves)
            text = leaf.text
            choice = rng.randrange(5)
            if choice == 0:
                leaf.text = text[: rng.randrange(len(text))]
            elif choice == 1:
                pos = rng.randrange(len(text))
                leaf.text = text[:pos] + rng.choice("!*=-_ \n") + text[pos + 1 :]
            elif choice == 2:
                leaf.text = text + "=" * rng.randint(1, 4)
            elif choice == 3:
                leaf.text = "A" * (4 * rng.choice([1, 1000, 500_000]))
            else:
                leaf.text = text[: len(text) // 2] + "\n" + text[len(text) // 2 :]
    elif kind == "pi":
        target = rng.choice([e for e in root if isinstance(e.tag, str)] or [root])
        tag = rng.choice(
            ["2.064", "1.001", "14.999", "4.999", "99.999#999", "2.018#" + "9" * 30, "x", ""]
        )
        b64 = rng.choice(["", "QQ==", "!!", "A" * 400_000, "VEVTVFBFUlNPTg=="])
        body = rng.choice([f'tag="{tag}" base64="{b64}"', f"tag='{tag}'", "junk", ""])
        pi = etree.ProcessingInstruction("ansinist-field", body)
        target.insert(rng.randrange(len(target) + 1), pi)
    elif kind == "xinclude":
        inc = etree.SubElement(el, "{http://www.w3.org/2001/XInclude}include")
        inc.set("href", CANARY_PATH)
        inc.set("parse", "text")
    return _serialize(root)


CANARY_PATH = ""  # set in main(): a file holding CANARY
LISTEN_PORT = 0  # set in main(): the canary listener


def _entity_doc(sample: Sample, rng: random.Random) -> bytes:
    body = sample.data
    if body.startswith(b"<?xml"):
        body = body[body.index(b"?>") + 2 :]
    root_name = etree.QName(sample.tree).localname
    choice = rng.randrange(6)
    if choice == 0:  # billion laughs
        ents = '<!ENTITY l0 "lol">' + "".join(
            f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
        )
        ref = "&l9;"
    elif choice == 1:
        ents = f'<!ENTITY ext SYSTEM "file://{CANARY_PATH}">'
        ref = "&ext;"
    elif choice == 2:
        ents = f'<!ENTITY ext SYSTEM "http://127.0.0.1:{LISTEN_PORT}/x">'
        ref = "&ext;"
    elif choice == 3:
        ents = f'<!ENTITY % p SYSTEM "http://127.0.0.1:{LISTEN_PORT}/p"> %p;'
        ref = ""
    elif choice == 4:
        ents = f'<!ENTITY % p SYSTEM "file://{CANARY_PATH}"> %p;'
        ref = ""
    else:
        ents = ""
        ref = "&undefined;"
    doctype = (
        f"<!DOCTYPE {root_name} [{ents}]>"
        if rng.random() < 0.8
        else f'<!DOCTYPE {root_name} SYSTEM "http://127.0.0.1:{LISTEN_PORT}/dtd">'
    )
    text = body.decode("utf-8")
    if ref:
        # put the reference in the first leaf text
        m = re.search(r">([^<>\s][^<>]*)</", text)
        if m:
            text = text[: m.start(1)] + ref + text[m.end(1) :]
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + doctype.encode() + text.encode("utf-8")


def _inside_an_element(data: bytes, rng: random.Random) -> int | None:
    """A random offset just after a start tag of ``data`` (None: it has none)."""
    opens = [m.end() for m in re.finditer(rb"<[A-Za-z][^<>]*[^/]>", data)]
    return rng.choice(opens) if opens else None


def _deep(sample: Sample, rng: random.Random) -> bytes:
    data = sample.data
    pos = _inside_an_element(data, rng)
    if pos is None:
        return data
    depth = rng.choice([100, 255, 256, 300, 5000, 100_000])
    tag = rng.choice([b"a", b"ansi-nist:RecordCategoryCode", b"nc:IdentificationID"])
    return data[:pos] + (b"<" + tag + b">") * depth + (b"</" + tag + b">") * depth + data[pos:]


def _flood(sample: Sample, rng: random.Random) -> bytes:
    """Countless tiny elements (unknown or table names) in one place of the package."""
    data = sample.data
    pos = _inside_an_element(data, rng)
    if pos is None:
        return data
    unit = rng.choice([b"<a/>", b"<a>1</a>", b"<nc:IdentificationID/>", b"<!--c--><a/>", b"<?p?>"])
    count = rng.choice([1000, 20_000, 300_000, 3_000_000])
    count = min(count, (60 << 20) // len(unit))
    return data[:pos] + unit * count + data[pos:]


def _decl(sample: Sample, rng: random.Random) -> bytes:
    data = sample.data
    if data.startswith(b"<?xml"):
        data = data[data.index(b"?>") + 2 :]
    choice = rng.randrange(6)
    if choice == 0:
        return b'<?xml version="1.0" encoding="UTF-16"?>' + data
    if choice == 1:
        return b'<?xml version="1.0" encoding="x-fuzz-unknown"?>' + data
    if choice == 2:
        return b'<?xml version="1.0" encoding="ISO-8859-1"?>' + data
    if choice == 3:
        return b"\xef\xbb\xbf\xef\xbb\xbf" + data
    if choice == 4:
        return ("\ufeff" + data.decode("utf-8")).encode("utf-16-le")
    return b'<?xml version="1.1"?>' + data.replace(b">", b">&#x1;", 1)


BYTE_KINDS = ["truncate", "flip", "flips", "insert", "delete", "splice"]
TREE_KINDS = [
    "dup",
    "remove",
    "reorder",
    "move",
    "record_dup",
    "attr",
    "ns",
    "rename",
    "text",
    "category",
    "base64",
    "pi",
    "xinclude",
]


def mutate(sample: Sample, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(BYTE_KINDS + TREE_KINDS + ["entity", "deep", "flood", "decl", "multi"])
    if kind == "multi":  # two tree mutations in a row
        first = rng.choice(TREE_KINDS)
        once = Sample(sample.name, _tree_mutation(sample, rng, first))
        second = rng.choice(TREE_KINDS)
        return f"{first}+{second}", _tree_mutation(once, rng, second)
    if kind in TREE_KINDS:
        return kind, _tree_mutation(sample, rng, kind)
    if kind == "entity":
        return kind, _entity_doc(sample, rng)
    if kind == "deep":
        return kind, _deep(sample, rng)
    if kind == "flood":
        return kind, _flood(sample, rng)
    if kind == "decl":
        return kind, _decl(sample, rng)
    data = bytearray(sample.data)
    if byte_mutation(data, kind, rng):
        pass
    else:  # splice
        a, b = rng.randrange(len(data)), rng.randrange(len(data))
        data[a:a] = data[b : b + rng.randint(1, 512)]
    return kind, bytes(data)


# -- the child that runs the cases ---------------------------------------------------------------
def check(data: bytes) -> tuple[str, str, float]:
    """(outcome, detail, CPU seconds of peek and read) of one case: "read"/"FormatError" are
    fine, "BUG" is not.  Writing back is checked, not timed (its cost is per element)."""
    t0 = time.process_time()
    try:
        peek(data)
        txn = read(data)
    except FormatError as exc:
        if CANARY in str(exc):
            return "BUG", f"canary in the error: {exc}"
        return "FormatError", exc.code, time.process_time() - t0
    except Exception:  # noqa: BLE001 - the point of fuzzing
        return "BUG", "read: " + traceback.format_exc(limit=6)
    took = time.process_time() - t0
    try:
        for record in txn.records:
            for field in record.fields.values():
                if not field.binary:
                    for sub in field.subfields:
                        if any(CANARY in item for item in sub):
                            return "BUG", f"canary expanded into {field.tag}"
        out = write(txn)
        if CANARY.encode() in out:
            return "BUG", "canary in the written package"
    except FormatError:
        return "read", "write refused", took
    except Exception:  # noqa: BLE001
        return "BUG", "write back: " + traceback.format_exc(limit=6)
    return "read", "", took


def _child(conn, memory: int, fn) -> None:
    if memory:
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        used = _vm_data()
        limit = used + memory if hard == resource.RLIM_INFINITY else min(hard, used + memory)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        t0 = time.process_time()  # CPU time: the machine is shared, wall time says little
        try:
            result = fn(data)
            outcome, detail = result[0], result[1]
        except MemoryError:
            outcome, detail, result = "BUG", f"MemoryError under a {memory >> 20} MiB cap", ()
        took = result[2] if len(result) > 2 else time.process_time() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send((outcome, detail, took, rss))


def _vm_data() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return 0


class Runner:
    """One child at a time runs the cases; a hung or dead child is replaced."""

    def __init__(self, memory: int, deadline: float, fn=None):
        self.memory = memory
        self.deadline = deadline
        self.ctx = multiprocessing.get_context("fork")
        self.fn = fn or check
        self.proc = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_child, args=(child, self.memory, self.fn), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def run(self, data: bytes) -> tuple[str, str, float, int]:
        if self.proc is None or not self.proc.is_alive():
            self.start()
        assert self.conn is not None and self.proc is not None
        t0 = time.perf_counter()
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(self.deadline):
                return self.conn.recv()
            outcome = ("BUG", f"no answer within {self.deadline:.0f} s (hang)")
        except (EOFError, OSError, BrokenPipeError):
            self.proc.join(5)
            outcome = ("BUG", f"the child died (exit code {self.proc.exitcode})")
        self.stop()
        return outcome[0], outcome[1], time.perf_counter() - t0, 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None


def _listener() -> tuple[socket.socket, list[str]]:
    """A canary TCP listener on 127.0.0.1: any connection to it is an entity being fetched."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    hits: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            hits.append(time.strftime("%H:%M:%S"))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, hits


def main(argv=None) -> int:
    global CANARY_PATH, LISTEN_PORT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hang", type=float, default=2.0, help="CPU s (per 10 MB) that are a hang")
    ap.add_argument("--memory", type=int, default=512, help="MiB a case may allocate (0: no cap)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "fuzz-xml")
    ap.add_argument("--replay", type=Path, help="run one saved case in this process and exit")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    canary = args.out / "canary.txt"
    canary.write_text(CANARY + "\n")
    CANARY_PATH = str(canary)
    if args.replay:
        outcome, detail, *_ = check(args.replay.read_bytes())
        print(outcome, detail)
        return 1 if outcome == "BUG" else 0
    sock, hits = _listener()
    LISTEN_PORT = sock.getsockname()[1]
    samples = corpus()
    rng = random.Random(args.seed)
    runner = Runner(args.memory << 20, max(90.0, 30 * args.hang))  # wall time, loaded machine
    outcomes: Counter = Counter()
    codes: Counter = Counter()
    kinds: Counter = Counter()
    bugs: dict[str, list[str]] = {}
    slowest = (0.0, "")
    max_rss = 0
    started = time.perf_counter()
    for case in range(args.count):
        sample = rng.choice(samples)
        kind, data = mutate(sample, rng)
        kinds[kind.split("+")[0]] += 1
        outcome, detail, took, rss = runner.run(data)
        max_rss = max(max_rss, rss)
        slowest = max(slowest, (took, f"case {case} {kind} of {sample.name}"))
        allowed = args.hang * max(1.0, len(data) / 10e6)  # the hang time per 10 MB of input
        if outcome != "BUG" and took > allowed:
            outcome, detail = "BUG", f"took {took:.2f} CPU s (hang)"
        outcomes[outcome] += 1
        if outcome == "FormatError":
            codes[detail] += 1
        if outcome == "BUG":
            # one saved case per distinct exception site (the last traceback line)
            key = detail.strip().splitlines()[-1][:120] if detail.strip() else "?"
            key = re.sub(r"\d+", "N", key)
            name = args.out / f"case-{args.seed}-{case}-{kind}.xml"
            name.write_bytes(data)
            first = key not in bugs
            bugs.setdefault(key, []).append(str(name))
            if first:
                print(f"\nBUG case {case} ({kind} of {sample.name}) -> {name}", flush=True)
                print(detail, flush=True)
        if (case + 1) % 1000 == 0:
            print(f"{case + 1} cases, {dict(outcomes)}", flush=True)
    runner.stop()
    sock.close()
    elapsed = time.perf_counter() - started
    print(
        f"\n{args.count} mutations of {len(samples)} XML packages in {elapsed:.0f} s (seed "
        f"{args.seed}): " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    )
    print("mutations:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print("FormatError codes:", ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    print(f"slowest {slowest[0] * 1000:.0f} CPU ms ({slowest[1]})")
    print(f"child max RSS {max_rss >> 10} MiB")
    print(f"connections to the canary listener: {len(hits)}")
    print(f"distinct bugs {len(bugs)}")
    for key, names in bugs.items():
        print(f"  {len(names)} x {key}  (e.g. {names[0]})")
    return 1 if bugs or hits else 0


if __name__ == "__main__":
    sys.exit(main())
