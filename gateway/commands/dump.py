"""``ebts-gateway dump FILE [--json]``: the decoded structure of a transaction."""

from __future__ import annotations

import hashlib
import json

from gateway.ansinist import Transaction
from gateway.ansinist.dictionary import lookup

from ._io import load

NAME = "dump"
HELP = "print the decoded structure of a transaction (either encoding)"

_PREVIEW = 60


def add_arguments(parser) -> None:
    parser.add_argument("file", help="transaction file (traditional or XML encoding)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def to_dict(txn: Transaction) -> dict:
    """A JSON-able description: records, fields (subfields of items), image digests, warnings."""
    records = []
    for number, record in enumerate(txn.records, start=1):
        fields: dict[str, object] = {}
        for tag, field in record.fields.items():
            if field.binary:
                data = bytes(field.raw)
                fields[tag] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            else:
                fields[tag] = [list(sub) for sub in field.subfields]
        records.append({"record": number, "type": record.type, "idc": record.idc, "fields": fields})
    return {
        "encoding": txn.encoding,
        "ver": txn.ver,
        "tot": txn.tot,
        "tcn": txn.tcn,
        "records": records,
        "warnings": [w.to_dict() for w in txn.warnings],
    }


def _text(txn: Transaction) -> str:
    lines = [f"{txn.encoding} transaction: VER {txn.ver} TOT {txn.tot} TCN {txn.tcn}"]
    for number, record in enumerate(txn.records, start=1):
        idc = "" if record.idc is None else f" IDC {record.idc}"
        lines.append(f"record {number}: Type-{record.type}{idc}")
        for tag, field in record.fields.items():
            info = lookup(tag.partition("#")[0])  # the field dictionary's mnemonic, if any
            label = f"{tag:<9} {info.mnemonic if info else '':<4}"
            if field.binary:
                lines.append(f"  {label} <{len(field.raw)} bytes>")
                continue
            text = " | ".join("^".join(sub) for sub in field.subfields)
            if len(text) > _PREVIEW:
                text = text[:_PREVIEW] + f"... ({len(field.raw)} bytes)"
            lines.append(f"  {label} {text}")
    for warning in txn.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def run(args) -> int:
    txn = load(args.file)
    if txn is None:
        return 2
    if args.json:
        print(json.dumps(to_dict(txn), indent=1, ensure_ascii=False))
    else:
        print(_text(txn))
    return 0
