"""Turn the outputs of NIST NBIS (an2kconvert, an2k2txt) into the golden files of this folder.

Run by hand after the NBIS commands of README.md; never by the test suite.  Usage:

    python tests/golden/nbis-2008/make_golden.py WORKDIR

WORKDIR holds, for every corpus file NAME that an2kconvert converts: ``NAME.xml`` (an2kconvert
traditional -> 2-2008 XML), ``NAME.nbis.txt`` (an2k2txt of NBIS's own conversion of that XML back
to traditional) and ``img/NAME/fld_R_F.tmp`` (the image fields an2k2txt writes beside it).

Writes ``NAME.xml`` with every ``nc:BinaryBase64Object`` payload replaced by the base64 of the
ASCII text ``sha256=<hex> len=<n>`` of the bytes it held (so the folder stays small), and
``NAME.json``: the an2k2txt values, one list of subfields (lists of items) per field of each record,
image fields as ``{"sha256": ..., "len": ...}``; LEN (x.001) is left out (XML has no LEN).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(rb"^(\d+)\.(\d+)\.(\d+)\.(\d+) \[(\d+)\.(\d+)\]=(.*?)[\x1c-\x1f]?$")
PAYLOAD = re.compile(rb"(<nc:BinaryBase64Object>)([^<]*)(</nc:BinaryBase64Object>)")


def marker(data: bytes) -> bytes:
    return f"sha256={hashlib.sha256(data).hexdigest()} len={len(data)}".encode()


def strip_payloads(xml: bytes) -> bytes:
    def repl(m: re.Match) -> bytes:
        data = base64.b64decode(b"".join(m.group(2).split()))
        return m.group(1) + base64.b64encode(marker(data)) + m.group(3)

    return PAYLOAD.sub(repl, xml)


def an2k2txt_values(txt: Path, images: Path) -> list:
    records: dict[int, dict] = {}
    for raw in txt.read_bytes().splitlines():
        m = LINE.match(raw)
        if m is None:
            raise ValueError(f"{txt}: unexpected line {raw[:60]!r}")
        rec, _, sub, item = (int(g) for g in m.groups()[:4])
        rtype, num = int(m.group(5)), int(m.group(6))
        value = m.group(7).decode("utf-8", "surrogateescape")
        if num == 1:
            continue  # LEN
        tag = f"{rtype}.{num:03d}"
        entry = records.setdefault(rec, {"type": rtype, "fields": {}})
        image = images / value
        if value.startswith("fld_") and value.endswith(".tmp") and image.is_file():
            data = image.read_bytes()
            entry["fields"][tag] = {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
            continue
        subs = entry["fields"].setdefault(tag, [])
        while len(subs) < sub:
            subs.append([])
        items = subs[sub - 1]
        while len(items) < item - 1:
            items.append("")
        items.append(value)
    return [records[k] for k in sorted(records)]


def main(work: Path) -> None:
    for xml in sorted(work.glob("*.xml")):
        name = xml.name[: -len(".xml")]
        (HERE / f"{name}.xml").write_bytes(strip_payloads(xml.read_bytes()))
        txt = work / f"{name}.nbis.txt"
        golden = {"source": name, "an2k2txt": None}
        if txt.is_file():
            golden["an2k2txt"] = an2k2txt_values(txt, work / "img" / name)
        (HERE / f"{name}.json").write_text(dump(golden), encoding="utf-8")


def dump(golden: dict) -> str:
    """JSON with one record per line (small, and diffs stay readable)."""
    records = golden["an2k2txt"]
    if records is None:
        return json.dumps(golden) + "\n"
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    head = json.dumps(golden["source"])
    return '{"source": ' + head + ', "an2k2txt": [\n' + ",\n".join(lines) + "\n]}\n"


if __name__ == "__main__":
    main(Path(sys.argv[1]))
