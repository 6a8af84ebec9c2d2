"""``ebts-gateway search GALLERY FILE [--top N] [--json]``: an offline 1:N tenprint search.

The finger images of the transaction (Type-4/14, positions 1-10) are extracted and searched
against the gallery (:meth:`gateway.matcher.gallery.Gallery.search`).  The text output lists the
candidates best first with their fused score, decision and per-finger scores; ``--json`` prints
``{"file", "gallery", "threshold", "fingers", "candidates": [{"subject_id", "score",
"decision", "finger_scores"}]}``.

The gallery folder holds the subjects it was built or enrolled with offline; the subjects the
daemon enrolled from submissions are in its journal: ``--journal DATA_DIR/journal.sqlite3``
searches those too (the output says which it read).

Exit status: 0 searched (whatever the result), 2 unreadable input, gallery or journal.
"""

from __future__ import annotations

import json

from ._io import load
from .enroll import fingers
from .gallery import (
    _positive,
    add_enrolments,
    add_journal_arguments,
    error,
    open_gallery,
    source_note,
)

NAME = "search"
HELP = "search the fingerprints of a transaction against a gallery (1:N)"


def add_arguments(parser) -> None:
    parser.add_argument("gallery", metavar="GALLERY", help="gallery directory")
    parser.add_argument("file", metavar="FILE", help="transaction file")
    parser.add_argument("--top", type=_positive, default=10, help="candidates to list")
    parser.add_argument("--shortlist", type=_positive, default=50, help="first-stage list")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_journal_arguments(parser)


def run(args) -> int:
    g = open_gallery(args.gallery)
    if g is None:
        return 2
    enrolled = add_enrolments(g, args.journal, args.kind)
    if enrolled is None:
        return 2
    txn = load(args.file)
    if txn is None:
        return 2
    probe = dict(fingers(txn, args.file))
    if not probe:
        return error(f"{args.file}: no finger image (Type-4/14, positions 1-10) to search with")
    cands = g.search(probe, top=args.top, shortlist=max(args.shortlist, args.top))
    if args.json:
        out = {
            "file": args.file,
            "gallery": args.gallery,
            "threshold": g.threshold,
            "read": source_note(args.journal, enrolled),
            "fingers": sorted(probe),
            "candidates": [c.to_dict() for c in cands],
        }
        print(json.dumps(out, indent=1))
        return 0
    problem = g.decision_problem()
    thr = "not calibrated" if g.threshold is None else f"{g.threshold:.4f}"
    if problem and g.threshold is not None:
        thr += " (not used: another score scale; run `ebts-gateway gallery calibrate`)"
    print(f"{args.file}: {len(probe)} fingers {sorted(probe)}; threshold {thr}")
    for rank, c in enumerate(cands, start=1):
        mark = "HIT " if c.decision else "    "
        fs = " ".join(f"{p}:{s:.2f}" for p, s in sorted(c.finger_scores.items()))
        print(f"{rank:3d} {mark}{c.subject_id:<24} {c.score:8.4f}  {fs}")
    if not cands:
        print("no candidates (empty gallery)")
    print(f"searched: {source_note(args.journal, enrolled)}")
    return 0
