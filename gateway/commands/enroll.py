"""``ebts-gateway enroll GALLERY FILE... [--subject ID]``: add the fingers of transactions.

Every Type-4 and Type-14 record with a finger position 1-10 is decoded
(:func:`gateway.imaging.decode_record`), brought to 500 ppi, and its template extracted and
enrolled under the subject id: ``--subject``, else the transaction's 2.014 FBI number, else its
1.009 TCN.  A finger already enrolled for that subject is replaced.  The gallery directory is
created when missing.

Exit status: 0 all files enrolled; 2 when a file, a finger image or the gallery could not be
read (whatever could be read is still enrolled).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._io import load
from .gallery import Progress, error

NAME = "enroll"
HELP = "enrol the fingerprints of transactions into a 1:N gallery"

FINGER_TYPES = (4, 14)


def add_arguments(parser) -> None:
    parser.add_argument("gallery", metavar="GALLERY", help="gallery directory (created if new)")
    parser.add_argument("files", metavar="FILE", nargs="+", help="transaction files")
    parser.add_argument("--subject", metavar="ID", help="subject id (default: 2.014, else TCN)")


def fingers(txn, name: str, errors: list | None = None):
    """Yield ``(position, Template)`` for the finger images of a transaction; problems with one
    record are reported on stderr, appended to ``errors`` and skipped."""
    from gateway.imaging import ImagingError, decode_record, finger_position, ntr_of, to_500ppi
    from gateway.matcher import extract

    ntr = ntr_of(txn)
    for recno, record in enumerate(txn.records, start=1):
        if record.type not in FINGER_TYPES:
            continue
        position = finger_position(record)
        if position is None:
            continue
        try:
            image = to_500ppi(decode_record(record, ntr=ntr, recno=recno))
            yield position, extract(image.pixels, image.ppi or 500)
        except (ImagingError, ValueError) as exc:
            print(f"{name}: record {recno} (Type-{record.type}): {exc}", file=sys.stderr)
            if errors is not None:
                errors.append((recno, str(exc)))


def subject_of(txn) -> str | None:
    """2.014 FBI number of the transaction, else its TCN."""
    for record in txn.records_of_type(2):
        fbi = record.value("2.014")
        if fbi and fbi.strip():
            return fbi.strip()
    tcn = txn.tcn
    return tcn.strip() if tcn and tcn.strip() else None


def run(args) -> int:
    from gateway.matcher.gallery import Gallery

    path = Path(args.gallery)
    if path.exists():
        try:
            g = Gallery.load(path)
        except ValueError as exc:
            return error(str(exc))
    else:
        g = Gallery()
    if args.subject is not None and not args.subject.strip():
        return error("--subject must not be empty")
    failed = 0
    enrolled = 0
    progress = Progress("enroll")
    for n, name in enumerate(args.files, start=1):
        txn = load(name)
        if txn is None:
            failed += 1
            continue
        sid = args.subject.strip() if args.subject else subject_of(txn)
        if sid is None:
            print(f"{name}: no 2.014 FBI number nor TCN: use --subject", file=sys.stderr)
            failed += 1
            continue
        count = 0
        errors: list = []
        for position, template in fingers(txn, name, errors):
            g.add(sid, position, template)
            count += 1
        if errors:
            failed += 1
        if not count:
            if not errors:
                print(
                    f"{name}: no finger image (Type-4/14, positions 1-10) to enrol", file=sys.stderr
                )
                failed += 1
        else:
            print(f"{name}: {count} fingers enrolled as {sid}")
            enrolled += count
        progress(n, len(args.files))
    if enrolled:
        g.save(path)
    print(f"{path}: {len(g)} subjects")
    return 2 if failed else 0
