"""``ebts-gateway gallery``: build a synthetic gallery, describe one, calibrate its threshold.

* ``gallery build --synthetic N --seed S DIR`` - N template-level synthetic subjects (ten fingers
  each, :mod:`gateway.matcher.synthetic`), with a progress bar on stderr;
* ``gallery info DIR [--json]`` - subjects, fingers, bytes per finger, threshold;
* ``gallery calibrate DIR [--searches N] [--fpir F] [--image-identities K]`` - runs N non-mated
  synthetic tenprint searches and stores the thresholds (per probe finger count 1-10) that meet
  the false-positive identification rate F, on the score scale of the searches (recorded in the
  index: thresholds of another scale decide nothing, and the daemon refuses to start on them);
  with K, also K image-level non-mated searches (rendered and extracted
  :mod:`gateway.synth` identities, each against the gallery and the other K - 1), which score
  higher than template-level ones: the threshold then keeps a margin over the highest of them.

Exit status: 0 done, 2 bad input (missing or damaged gallery, bad arguments).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

NAME = "gallery"
HELP = "build, describe and calibrate 1:N search galleries"

#: Identities of calibration probes: a seed no gallery builder is expected to use.
CALIBRATION_SEED = 90_000
#: First image-level calibration identity (gateway.synth): far from the demo's and the
#: benchmarks' identities (1, 2, ...).
IMAGE_CALIBRATION_IDENTITY = 900_001


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, else a line at the
    end and every ~10 %)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        frac = min(1.0, done / total)
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = f"{self.label} [{bar}] {done}/{total} {elapsed:5.1f}s eta {eta:5.1f}s"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
        else:
            tenth = int(frac * 10)
            if tenth != self.last or done >= total:
                self.last = tenth
                self.stream.write(text + "\n")
                self.stream.flush()


def error(message: str) -> int:
    """Print ``ebts-gateway: message`` on stderr; returns exit status 2."""
    print(f"ebts-gateway: {message}", file=sys.stderr)
    return 2


def open_gallery(path: str):
    """Load a gallery or print why not (returns None)."""
    from gateway.matcher.gallery import Gallery

    try:
        return Gallery.load(path)
    except ValueError as exc:
        error(str(exc))
        return None


JOURNAL_HELP = (
    "also the subjects the daemon enrolled into this gallery: they are kept in its journal "
    "(DATA_DIR/journal.sqlite3, read-only here), not in the gallery folder"
)
KIND_HELP = "which of the daemon's galleries DIR is, for --journal (default: fbi)"


def add_journal_arguments(parser) -> None:
    """``--journal FILE`` and ``--kind fbi|dhs``: read the daemon's enrolments too."""
    parser.add_argument("--journal", metavar="FILE", help=JOURNAL_HELP)
    parser.add_argument("--kind", choices=["fbi", "dhs"], default="fbi", help=KIND_HELP)


def add_enrolments(g, journal: str | None, kind: str) -> int | None:
    """Add the daemon's enrolments of gallery ``kind`` from ``journal`` to ``g`` (in memory).

    Returns how many subjects were added, or None (after a message) when the journal cannot be
    read. The pipeline's workers apply the same rows the same way.
    """
    from gateway.matcher import Template
    from gateway.store.enrolments import read_enrolments

    if journal is None:
        return 0
    if not Path(journal).is_file():
        error(f"{journal}: no such journal file")
        return None
    rows = read_enrolments(journal, kind)
    g.add_many((sid, pos, Template.from_bytes(data)) for _, sid, pos, data in rows)
    return len({sid for _, sid, _, _ in rows})


def source_note(journal: str | None, enrolled: int) -> str:
    """What an offline command read, said plainly."""
    if journal is None:
        return "gallery files only (the daemon's enrolments are in its journal: see --journal)"
    return f"gallery files and {enrolled} subjects the daemon enrolled (journal {journal})"


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    b = sub.add_parser(
        "build",
        help="build a gallery of template-level synthetic subjects",
        description="Build a gallery of N template-level synthetic subjects (ten fingers each, "
        "no images rendered), with a progress bar on stderr. Exit 0 built, 2 bad arguments or "
        "DIR exists (without --force).",
    )
    b.add_argument("--synthetic", type=_positive, required=True, metavar="N", help="subjects")
    b.add_argument("--seed", type=int, default=0, help="seed of the synthetic subjects")
    b.add_argument("--force", action="store_true", help="replace DIR if it exists")
    b.add_argument("dir", metavar="DIR", help="gallery directory to write")
    i = sub.add_parser(
        "info",
        help="describe a gallery",
        description="Subjects, fingers, bytes per finger and threshold of a gallery folder. "
        "Subjects the daemon enrolled live in its journal (DATA_DIR/journal.sqlite3), not in "
        "the folder: without --journal they are not counted. Exit 0, or 2 missing or damaged.",
    )
    i.add_argument("dir", metavar="DIR", help="gallery directory")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    add_journal_arguments(i)
    c = sub.add_parser(
        "calibrate",
        help="set the decision threshold from non-mated searches",
        description="Run N non-mated synthetic tenprint searches against the gallery and store "
        "the threshold that meets the target false-positive identification rate. Exit 0, or 2 "
        "missing or damaged gallery.",
    )
    c.add_argument("dir", metavar="DIR", help="gallery directory (its threshold is rewritten)")
    c.add_argument("--searches", type=_positive, default=200, help="non-mated searches")
    c.add_argument("--fpir", type=float, default=0.001, help="target false-positive rate")
    c.add_argument(
        "--image-identities",
        type=int,
        default=0,
        metavar="K",
        help="also K rendered synthetic identities, each searched against the others",
    )
    sh = sub.add_parser(
        "shard",
        help="split a gallery into shards by subject (Dask search)",
        description="Split the gallery PATH into N shards by a stable hash of the subject id, "
        "for searching on Dask workers ([matcher] scheduler; docs/scaling.md).",
    )
    sh.add_argument("dir", metavar="PATH", help="gallery to split (left untouched)")
    sh.add_argument("--shards", type=_positive, required=True, metavar="N", help="shard count")
    sh.add_argument("--out", metavar="DIR", help="shard set to write (default: PATH.shards)")
    parser.set_defaults(_parser=parser)


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "build":
        return _build(args)
    if action == "info":
        return _info(args)
    if action == "calibrate":
        return _calibrate(args)
    if action == "shard":
        return _shard(args)
    args._parser.print_help(sys.stderr)
    return 2


def _build(args) -> int:
    from gateway.matcher import synthetic
    from gateway.matcher.gallery import Gallery

    path = Path(args.dir)
    if path.exists() and not args.force:
        return error(f"{path} exists (use --force to replace it)")
    if path.exists() and not path.is_dir():
        return error(f"{path} is not a directory")
    if args.seed < 0 or args.seed >= CALIBRATION_SEED:
        return error(f"--seed must be 0-{CALIBRATION_SEED - 1}")
    g = Gallery()
    synthetic.populate(g, args.synthetic, seed=args.seed, progress=Progress("build"))
    if path.exists() and not (path / "index.json").exists() and any(path.iterdir()):
        return error(f"{path} is a non-empty directory that is not a gallery")
    if path.exists() and not (path / "index.json").exists():
        shutil.rmtree(path)
    g.save(path)
    print(f"{path}: {len(g)} subjects, {g.nbytes_per_finger():.0f} bytes per finger")
    return 0


def _shard(args) -> int:
    """``gallery shard PATH --shards N [--out DIR]`` (:mod:`gateway.matcher.shards`)."""
    from gateway.matcher import shards

    out = Path(args.out) if args.out else Path(str(Path(args.dir)) + ".shards")
    try:
        manifest = shards.split(args.dir, out, args.shards, progress=Progress("shard"))
    except ValueError as exc:
        return error(str(exc))
    counts = manifest["subjects"]
    print(f"{out}: {sum(counts)} subjects in {len(counts)} shards ({min(counts)}-{max(counts)})")
    return 0


def describe(g) -> dict:
    """A JSON-able summary of a gallery."""
    from gateway.matcher import vector

    return {
        "path": str(g.path) if g.path else None,
        "subjects": len(g),
        "fingers": g.fingers,
        "bytes_per_finger": round(g.nbytes_per_finger(), 1),
        "code_bits": vector.BITS,
        "threshold": g.threshold,
        "thresholds": {str(k): v for k, v in sorted(g.thresholds.items())},
        "score_scale": g.score_scale,
        # why the thresholds decide nothing (with the command that fixes it), else None
        "decision_problem": g.decision_problem(),
        "calibration": g.calibration,
    }


def _info(args) -> int:
    g = open_gallery(args.dir)
    if g is None:
        return 2
    enrolled = add_enrolments(g, args.journal, args.kind)
    if enrolled is None:
        return 2
    info = describe(g)
    info["enrolled_by_daemon"] = enrolled if args.journal else None
    info["read"] = source_note(args.journal, enrolled)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"gallery {info['path']}")
    print(f"  read              {info['read']}")
    print(f"  subjects          {info['subjects']}")
    print(f"  fingers           {info['fingers']}")
    print(f"  bytes per finger  {info['bytes_per_finger']}")
    if g.threshold is None:
        print("  threshold         not calibrated (run `ebts-gateway gallery calibrate`)")
    else:
        cal = g.calibration
        print(
            f"  threshold         {g.threshold:.4f} (FPIR {cal.get('fpir')} over "
            f"{cal.get('searches')} non-mated searches, {g.score_scale or 'no'} scale)"
        )
        if info["decision_problem"]:
            print(f"  NOT USED          {info['decision_problem']}")
    return 0


def _image_templates(identity: int) -> dict[int, bytes]:
    from gateway import synth
    from gateway.matcher import extract

    return {p: extract(synth.finger(identity, p, 0)).to_bytes() for p in range(1, 11)}


def _subsets(i: int) -> dict[int, tuple[int, ...]]:
    """The finger positions of probe ``i`` for each finger count 1-10 (a seeded draw)."""
    import random

    rng = random.Random(i)
    return {k: tuple(sorted(rng.sample(range(1, 11), k))) for k in range(1, 11)}


def _best(galleries, probe: dict, exclude: str | None = None) -> float:
    """The best fused score of ``probe`` over several galleries, ``exclude`` left out."""
    best = 0.0
    for g in galleries:
        for c in g.search(probe, top=2):
            if c.subject_id != exclude:
                best = max(best, c.score)
                break
    return best


def nonmated_scores(galleries, probe: dict, i: int, exclude: str | None = None) -> dict:
    """Best non-mated fused score of probe number ``i`` for each finger count 1-10 (``probe``
    restricted to a seeded subset of its fingers)."""
    out = {}
    for k, positions in _subsets(i).items():
        part = {p: probe[p] for p in positions if p in probe}
        if len(part) == k:
            out[k] = _best(galleries, part, exclude)
    return out


def image_level_scores(g, count: int, first: int = 0) -> dict[int, list[float]]:
    """Per finger count, the best non-mated fused score of each of ``count`` rendered
    identities, searched against ``g`` and against the other identities (rendered and
    extracted in two processes)."""
    import multiprocessing

    from gateway.matcher import Template
    from gateway.matcher.gallery import Gallery

    identities = range(IMAGE_CALIBRATION_IDENTITY, IMAGE_CALIBRATION_IDENTITY + count)
    progress = Progress("render")
    probes = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for n, (identity, blobs) in enumerate(
            zip(identities, pool.imap(_image_templates, identities), strict=True), start=1
        ):
            probes[str(identity)] = {p: Template.from_bytes(b) for p, b in blobs.items()}
            progress(n, count)
    others = Gallery()
    others.add_many((sid, p, t) for sid, probe in probes.items() for p, t in probe.items())
    scores: dict[int, list[float]] = {}
    for n, (sid, probe) in enumerate(probes.items()):
        for k, best in nonmated_scores((g, others), probe, first + n, exclude=sid).items():
            scores.setdefault(k, []).append(best)
    return scores


def _calibrate(args) -> int:
    from gateway.matcher import synthetic

    if not 0 < args.fpir < 1:
        return error("--fpir must be between 0 and 1")
    if args.searches < 2:
        return error("--searches must be at least 2")
    if args.image_identities < 0 or args.image_identities == 1:
        return error("--image-identities must be 0 or at least 2")
    g = open_gallery(args.dir)
    if g is None:
        return 2
    if not len(g):
        return error(f"{args.dir}: the gallery is empty")
    progress = Progress("calibrate")
    scores: dict[int, list[float]] = {}
    for i in range(args.searches):
        probe = synthetic.tenprint(synthetic.identity(CALIBRATION_SEED, i), impression=1)
        for k, best in nonmated_scores((g,), probe, i).items():
            scores.setdefault(k, []).append(best)
        progress(i + 1, args.searches)
    image_level: dict[int, list[float]] = {}
    if args.image_identities > 0:
        image_level = image_level_scores(g, args.image_identities, first=args.searches)
    # one threshold per probe finger count; the ten-finger one is the gallery's threshold
    for k in range(1, 10):
        if len(scores.get(k, ())) >= 2:
            g.calibrate(scores[k], fpir=args.fpir, image_level=image_level.get(k, ()), fingers=k)
    t = g.calibrate(scores.get(10, []), fpir=args.fpir, image_level=image_level.get(10, ()))
    g.save_threshold(args.dir)
    extra = f", {args.image_identities} image-level" if image_level else ""
    print(f"{args.dir}: threshold {t:.4f} for FPIR {args.fpir} ({args.searches} searches{extra})")
    print(
        "  by probe fingers: " + ", ".join(f"{k}: {g.threshold_for(k):.3f}" for k in range(1, 11))
    )
    if args.searches * args.fpir < 1:
        print(
            f"note: {args.searches} searches cannot resolve FPIR {args.fpir}: the threshold is "
            "just above the highest non-mated score",
            file=sys.stderr,
        )
    return 0
