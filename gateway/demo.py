"""Demo galleries for the embedded defaults: synthetic subjects only, never real people.

On first start without configured galleries, ``ebts-gateway run`` builds:

- an FBI gallery: ``subjects`` image-level synthetic identities (:mod:`gateway.synth`,
  impression 0 of fingers 1, 2, 6, 7) with invented criminal histories, among template-level
  synthetic distractors (:mod:`gateway.matcher.synthetic`);
- a DHS gallery: every third of those identities (ids ``IDENT0000003`` ...) with invented
  immigration records, among other distractors.

A CAR from :func:`demo_car` for identity ``i`` (impression 1: another capture of the same
fingers) is then identified (UCN ``demo_ucn(i)``), and for ``i % 3 == 0`` also matched by DHS,
which makes the gateway queue an IAQ to the LESC address.  Built once; later starts reuse it.
A gallery whose thresholds were calibrated on another score scale than the search's
(:data:`gateway.matcher.gallery.SCORE_SCALE`; galleries built before the scale was recorded)
is not "built": the builder calibrates it again in place (a few seconds, no rendering).

``ebts-gateway run`` builds them in the background: :func:`main` (``python -m gateway.demo``) is
the builder process the daemon starts, so that its listeners open at once; it ignores SIGINT
(the daemon stops it with SIGTERM) and writes its progress as lines on stderr, which the daemon
logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
from pathlib import Path

log = logging.getLogger("gateway.demo")

POSITIONS = (1, 2, 6, 7)  # thumbs and index fingers
DISTRACTORS = 300
CALIBRATION_SEARCHES = 200
DEMO_ORI = "NY0303000"


def demo_ucn(identity: int) -> str:
    return f"{identity:07d}DM"


def demo_dhs_id(identity: int) -> str:
    return f"IDENT{identity:07d}"


def in_dhs(identity: int) -> bool:
    return identity % 3 == 0


def gallery_path(data_dir, kind: str) -> Path:
    """Where the daemon keeps its demo gallery of ``kind`` ("fbi" or "dhs") under its data
    directory."""
    return Path(data_dir) / "galleries" / f"{kind}-demo"


def is_built(path: Path) -> bool:
    """Whether the demo gallery at ``path`` is complete (written last, by a rename) and
    calibrated on the search's score scale."""
    path = Path(path)
    if not (path / "demo.json").exists():
        return False
    from gateway.matcher.shards import decision_problem_at

    try:
        return decision_problem_at(path) is None
    except ValueError:  # a damaged index: built again
        return False


def _ignore_sigint() -> None:
    # Ctrl-C reaches every process of the terminal's group: only the daemon handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_POOL = None  # the worker pool while identities are being rendered (for _terminated)


def _terminated(signum, _frame) -> None:
    """SIGTERM in the builder: stop the worker pool, if one is running, and end quietly.

    Inside the pool's loop the pool is terminated and SystemExit unwinds (its semaphores are
    released, nothing printed); anywhere else, possibly inside an import where an exception
    would surface as an ImportError traceback, the process simply ends."""
    if _POOL is not None:
        _POOL.terminate()
        raise SystemExit(128 + signum)
    os._exit(128 + signum)


def _templates(identity: int) -> tuple[int, dict[int, bytes]]:
    from gateway import synth
    from gateway.matcher import extract

    return identity, {p: extract(synth.finger(identity, p, 0)).to_bytes() for p in POSITIONS}


def ensure_demo_gallery(path: Path, subjects: int, *, kind: str = "fbi") -> Path:
    """Build the demo gallery ``kind`` ("fbi" or "dhs") at ``path`` unless it is there."""
    path = Path(path)
    if is_built(path):
        return path
    if (path / "demo.json").exists() and _recalibrated(path, kind):
        return path
    from gateway.matcher import Template
    from gateway.matcher import synthetic as distractors
    from gateway.matcher.gallery import Gallery
    from gateway.routing.interop.subjects import (
        SYNTHETIC_PROFILES,
        SubjectStore,
        synthetic_dhs_subject,
        synthetic_fbi_subject,
    )

    identities = [i for i in range(1, subjects + 1) if kind == "fbi" or in_dhs(i)]
    log.info(
        "building the %s demo gallery (%d synthetic identities + %d distractors) in %s; "
        "this takes a minute, once",
        kind,
        len(identities),
        DISTRACTORS,
        path,
    )
    gallery = Gallery()
    distractors.populate(gallery, DISTRACTORS, seed=11 if kind == "fbi" else 13)
    log.info("%s demo gallery: %d distractors enrolled", kind, DISTRACTORS)
    enrolled = {}
    step = max(1, len(identities) // 4)
    global _POOL
    with multiprocessing.get_context("spawn").Pool(2, initializer=_ignore_sigint) as pool:
        _POOL = pool
        try:
            for identity, templates in pool.imap_unordered(_templates, identities):
                sid = demo_ucn(identity) if kind == "fbi" else demo_dhs_id(identity)
                enrolled[sid] = {p: Template.from_bytes(d) for p, d in templates.items()}
                if len(enrolled) % step == 0 or len(enrolled) == len(identities):
                    log.info(
                        "%s demo gallery: %d/%d identities rendered and extracted",
                        kind,
                        len(enrolled),
                        len(identities),
                    )
        finally:
            _POOL = None
    gallery.add_many((sid, p, t) for sid, probe in enrolled.items() for p, t in probe.items())
    _calibrate(gallery, enrolled, kind)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gallery.save(tmp)
    store = SubjectStore(tmp / "subjects.jsonl")
    profiles = sorted(SYNTHETIC_PROFILES)
    for identity in identities:
        if kind == "fbi":
            profile = profiles[identity % len(profiles)]
            store.put(synthetic_fbi_subject(demo_ucn(identity), identity, profile=profile))
        else:
            store.put(synthetic_dhs_subject(demo_dhs_id(identity), identity))
    (tmp / "demo.json").write_text(
        json.dumps(
            {
                "kind": kind,
                "identities": identities,
                "positions": list(POSITIONS),
                "threshold": gallery.threshold,
            },
            indent=1,
        )
    )
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(path)
    log.info("%s demo gallery ready: threshold %.4f", kind, gallery.threshold)
    return path


def _calibrate(gallery, enrolled: dict, kind: str) -> None:
    """The thresholds of a demo gallery on the search's score scale: four-finger (the demo's
    search) and one-finger (``ebts-gateway match --gallery``), each from non-mated searches of
    template-level distractors plus the enrolled identities searched against the others."""
    from gateway.matcher import synthetic as distractors

    log.info("%s demo gallery: calibrating (%d searches)", kind, CALIBRATION_SEARCHES)
    scores: dict[int, list[float]] = {4: [], 1: []}
    for i in range(CALIBRATION_SEARCHES):
        probe = distractors.tenprint(distractors.identity(97, i), impression=1)
        four = {p: t for p, t in probe.items() if p in POSITIONS}
        one = POSITIONS[i % len(POSITIONS)]
        for k, part in ((4, four), (1, {one: probe[one]})):
            best = gallery.search(part, top=1)
            scores[k].append(best[0].score if best else 0.0)
    # Image-level impostors cost nothing more: each enrolled identity against the others.
    image_level: dict[int, list[float]] = {4: [], 1: []}
    for n, (sid, probe) in enumerate(enrolled.items()):
        one = POSITIONS[n % len(POSITIONS)]
        for k, part in ((4, probe), (1, {one: probe[one]})):
            others = [c for c in gallery.search(part, top=2) if c.subject_id != sid]
            image_level[k].append(others[0].score if others else 0.0)
    # template-level distractors score lower than rendered prints do: the threshold keeps a
    # margin over the highest image-level impostor
    gallery.calibrate(scores[1], fpir=0.001, image_level=image_level[1], fingers=1)
    gallery.calibrate(scores[4], fpir=0.001, image_level=image_level[4])


def _recalibrated(path: Path, kind: str) -> bool:
    """Calibrate a complete demo gallery again (its thresholds are on another score scale);
    False when it cannot be read (then it is built again)."""
    from gateway.matcher.gallery import Gallery

    try:
        gallery = Gallery.load(path)
        meta = json.loads((path / "demo.json").read_text())
        ids = [demo_ucn(i) if kind == "fbi" else demo_dhs_id(i) for i in meta.get("identities", [])]
        enrolled = {sid: {p: gallery.template(sid, p) for p in POSITIONS} for sid in ids}
    except (ValueError, KeyError, OSError, TypeError) as exc:
        log.info("%s demo gallery unreadable (%s): building it again", kind, exc)
        return False
    log.info("%s demo gallery: calibrated on another score scale, calibrating it again", kind)
    _calibrate(gallery, enrolled, kind)
    gallery.save_threshold(path)  # the index only, atomically
    meta["threshold"] = gallery.threshold
    tmp = path / "demo.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / "demo.json")
    log.info("%s demo gallery ready: threshold %.4f", kind, gallery.threshold)
    return True


def demo_car(identity: int, *, tcn: str | None = None, ori: str = DEMO_ORI, dat: str | None = None):
    """A CAR for a demo identity (impression 1: a different capture than the enrolled one)."""
    from gateway import synth

    return synth.car_transaction(identity, impression=1, ori=ori, tcn=tcn, dat=dat)


def main(argv: list[str] | None = None) -> int:
    """The background builder: ``python -m gateway.demo --subjects N FBI_PATH DHS_PATH``."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo",
        description="Build the FBI and DHS demo galleries (synthetic subjects) unless present; "
        "progress lines on stderr. Started by 'ebts-gateway run' on a fresh data directory.",
    )
    parser.add_argument("--subjects", type=int, required=True, help="synthetic identities")
    parser.add_argument("fbi", type=Path, help="folder of the FBI demo gallery")
    parser.add_argument("dhs", type=Path, help="folder of the DHS demo gallery")
    args = parser.parse_args(argv)
    _ignore_sigint()
    # SIGTERM (the daemon stopping): see _terminated. No half gallery is left: a gallery is
    # written to NAME.tmp and renamed when complete.
    signal.signal(signal.SIGTERM, _terminated)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ensure_demo_gallery(args.fbi, args.subjects, kind="fbi")
    ensure_demo_gallery(args.dhs, args.subjects, kind="dhs")
    return 0


if __name__ == "__main__":
    # run the imported module's main: the worker pool pickles gateway.demo._templates by name
    from gateway.demo import main as _main

    sys.exit(_main())
