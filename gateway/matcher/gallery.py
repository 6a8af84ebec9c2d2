"""A persistent, memory-mapped gallery of subjects x finger positions and its 1:N tenprint search.

Per finger the gallery keeps (about 1.1 KB in all, see :data:`BYTES_PER_FINGER`):

* the first-stage code: ``vector.BITS`` packed sign bits of the finger's fixed-length
  pair-word vector (:mod:`gateway.matcher.vector`), of which the first ``vector.PREFIX_BITS``
  are scanned for every subject and the rest only for the best ``refine`` ones;
* a compact minutiae slot for the second stage: up to ``SLOT`` minutiae (best quality first) as
  int16 x, y and a direction in 1/256 turns;
* the serialised :class:`gateway.matcher.Template` (``Template.to_bytes()``), for the precise
  :func:`gateway.matcher.compare` and for export.

On disk a gallery is a directory: ``codes.npy`` (N, 10, BYTES) uint8, ``minutiae.npy`` (N, 10,
SLOT, 3) int16, ``counts.npy`` (N, 10) uint8 (0: no finger), ``offsets.npy`` (N, 10, 2) int64
and ``templates.bin`` (the templates back to back), plus ``index.json`` (subject ids in row order,
threshold, calibration).  :meth:`Gallery.load` opens the arrays with ``mmap_mode="r"``: loading
costs the JSON index only, pages come in as searches touch them.  :meth:`Gallery.save` writes a
compacted copy into a temporary sibling directory and renames it into place.

Changes after a load (enrolment, replacement, removal) live in memory until the next save: new
and replaced subjects in an in-memory segment that grows by doubling, removed or replaced rows of
the mapped segment masked out.  A search always sees the current state.

Search (``Gallery.search``):

1. **first stage** - for each probe finger the Hamming distance of its code prefix to the code
   prefix of the same position of every subject (XOR and popcount over the whole segment),
   mapped to a cosine estimate and summed over the probe's fingers; the best ``refine``
   subjects are re-scored with the full codes and the ``shortlist`` best of them go on;
2. **second stage** - every probe finger is compared with the same finger of each shortlisted
   subject: by default a vectorised minutiae consolidation (alignment by a Hough vote over
   minutia pairs, refined on the peak's pairs, then the count of minutiae paired within
   tolerance, squared over the product of the overlapping counts), or with
   ``second_stage="compare"`` the precise :func:`gateway.matcher.compare` (much slower; run
   as one batched :func:`gateway.matcher.template.compare_many` per probe finger);
3. **fusion** - the candidate's score is the sum of its finger scores over the probe's fingers;
   ``decision`` is ``score >= threshold`` (see :meth:`Gallery.calibrate`).
4. **one score scale** (``rescore=R``) - the best ``max(top, R)`` candidates of the fast second
   stage are scored again with :func:`gateway.matcher.compare` and only they are returned:
   every candidate's finger score is then the ``compare`` score of that pair (the one
   ``ebts-gateway match`` prints) and its score their sum, as with ``second_stage="compare"``
   but at the cost of R short-listed subjects instead of all of them.  Off by default until the
   sharded search (:mod:`gateway.matcher.shards`) runs the same round after its merge: a sharded
   and an unsharded search must return the same candidates, and the thresholds of a gallery are
   on one scale (calibrate with the setting the searches will use).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import vector

POSITIONS = 10
SLOT = 64  # minutiae kept per finger for the second stage
FORMAT = 1
SECOND_STAGES = ("minutiae", "compare")
#: Candidates of the fast second stage scored again with ``compare`` when a search asks for
#: one score scale (``rescore``; at least ``top`` of them).
RESCORE = 3


#: Margin of the threshold over the highest image-level non-mated score (:meth:`calibrate`).
IMAGE_MARGIN = 1.5


def _arrays_nbytes_per_finger() -> int:
    return vector.BYTES + SLOT * 3 * 2 + 1 + 16


#: Fixed bytes per finger (codes, minutiae slot, count, template offset); the serialised template
#: comes on top (typically 300-600 bytes).
BYTES_PER_FINGER = _arrays_nbytes_per_finger()


@dataclass
class Candidate:
    """One subject of a search result."""

    subject_id: str
    score: float
    finger_scores: dict[int, float] = field(default_factory=dict)
    decision: bool = False
    stage1: float = 0.0

    def to_dict(self) -> dict:
        return {
            "subject_id": self.subject_id,
            "score": round(self.score, 6),
            "decision": self.decision,
            "finger_scores": {str(k): round(v, 6) for k, v in sorted(self.finger_scores.items())},
        }


def _slot(minutiae: np.ndarray) -> tuple[np.ndarray, int]:
    """The (SLOT, 3) int16 second-stage form of (n, 5) minutiae, best quality first."""
    m = np.asarray(minutiae, np.float64).reshape(-1, 5)
    order = np.argsort(-m[:, 4], kind="stable")[:SLOT]
    m = m[order]
    out = np.zeros((SLOT, 3), np.int16)
    n = m.shape[0]
    out[:n, 0] = np.clip(np.rint(m[:, 0]), -32768, 32767)
    out[:n, 1] = np.clip(np.rint(m[:, 1]), -32768, 32767)
    out[:n, 2] = np.rint(m[:, 2] % (2 * np.pi) / (2 * np.pi) * 256).astype(np.int64) % 256
    return out, n


def _check_position(position) -> int:
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise ValueError(f"finger position must be an integer 1-10, not {position!r}")
    if not 1 <= int(position) <= POSITIONS:
        raise ValueError(f"finger position must be 1-10, not {position}")
    return int(position)


class _Segment:
    """Rows of subjects: arrays (mapped read-only or in memory, growable) and an alive mask."""

    def __init__(self, codes, minutiae, counts, offsets, blobs, ids, growable=False):
        self.codes = codes
        self.minutiae = minutiae
        self.counts = counts
        self.offsets = offsets  # mapped segment only
        self.blobs = blobs  # mapped: uint8 memmap; growable: list of [bytes | None] * 10
        self.ids = ids  # list of subject ids, row order
        self.alive = np.zeros(codes.shape[0], bool) if growable else np.ones(len(ids), bool)
        self.growable = growable

    @classmethod
    def empty(cls, capacity=16):
        return cls(
            np.zeros((capacity, POSITIONS, vector.BYTES), np.uint8),
            np.zeros((capacity, POSITIONS, SLOT, 3), np.int16),
            np.zeros((capacity, POSITIONS), np.uint8),
            None,
            [],
            [],
            growable=True,
        )

    @property
    def rows(self) -> int:
        return len(self.ids)

    def new_row(self, subject_id: str) -> int:
        row = self.rows
        if row == self.codes.shape[0]:
            cap = max(16, 2 * row)
            for name in ("codes", "minutiae", "counts", "alive"):
                old = getattr(self, name)
                new = np.zeros((cap,) + old.shape[1:], old.dtype)
                new[:row] = old[:row]
                setattr(self, name, new)
        self.ids.append(subject_id)
        self.blobs.append([None] * POSITIONS)
        self.alive[row] = True
        return row

    def template_bytes(self, row: int, position: int) -> bytes | None:
        if self.growable:
            return self.blobs[row][position - 1]
        off, length = (int(v) for v in self.offsets[row, position - 1])
        if length == 0:
            return None
        return bytes(self.blobs[off : off + length])


class Gallery:
    """Subjects (string ids) x finger positions (1-10) with a two-stage 1:N search.

    ``Gallery()`` is empty; ``Gallery.load(path)`` maps a saved one.  ``threshold`` is the
    fused-score decision threshold (None until :meth:`calibrate`); ``thresholds`` holds the
    thresholds calibrated for probes of fewer fingers (a sum over 4 fingers is not on the scale
    of a sum over 10), see :meth:`threshold_for`.
    """

    def __init__(self):
        self._base: _Segment | None = None
        self._new = _Segment.empty()
        self._where: dict[str, tuple[_Segment, int]] = {}
        self.threshold: float | None = None
        self.thresholds: dict[int, float] = {}
        self.calibration: dict = {}
        self.path: Path | None = None
        self._dirty = False
        self._background = None

    @property
    def background(self):
        """The (mean, basis) the first-stage vectors of this gallery are centred on: saved with
        the gallery, so that loading and searching never recompute it."""
        if self._background is None:
            self._background = vector.background()
        return self._background

    @property
    def modified(self) -> bool:
        """True when subjects were added or removed since the last load or save."""
        return self._dirty

    # -- contents ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, subject_id) -> bool:
        return subject_id in self._where

    @property
    def subjects(self) -> list[str]:
        """Subject ids, in storage order."""
        out: list[str] = []
        for seg in self._segments():
            out.extend(sid for sid, ok in zip(seg.ids, seg.alive[: seg.rows], strict=True) if ok)
        return out

    def positions(self, subject_id: str) -> list[int]:
        """The finger positions enrolled for a subject."""
        seg, row = self._locate(subject_id)
        return [p for p in range(1, POSITIONS + 1) if seg.template_bytes(row, p) is not None]

    def template(self, subject_id: str, position: int):
        """The stored :class:`Template` of a finger (None when not enrolled)."""
        from .template import Template

        seg, row = self._locate(subject_id)
        data = seg.template_bytes(row, _check_position(position))
        return None if data is None else Template.from_bytes(data)

    def _locate(self, subject_id: str):
        try:
            return self._where[subject_id]
        except KeyError:
            raise KeyError(f"no subject {subject_id!r} in the gallery") from None

    def _segments(self):
        return [s for s in (self._base, self._new) if s is not None]

    def _writable_row(self, subject_id: str) -> int:
        """The row of ``subject_id`` in the in-memory segment (copied out of the mapped one)."""
        where = self._where.get(subject_id)
        if where is not None and where[0] is self._new:
            return where[1]
        row = self._new.new_row(subject_id)
        if where is not None:  # copy the mapped row, then hide it
            seg, old = where
            self._new.codes[row] = seg.codes[old]
            self._new.minutiae[row] = seg.minutiae[old]
            self._new.counts[row] = seg.counts[old]
            self._new.blobs[row] = [seg.template_bytes(old, p) for p in range(1, POSITIONS + 1)]
            seg.alive[old] = False
        self._where[subject_id] = (self._new, row)
        return row

    def add(self, subject_id: str, position: int, template, code=None) -> None:
        """Enrol (or replace) finger ``position`` (1-10) of ``subject_id``; ``code`` is its
        first-stage code when already computed (see :meth:`add_many`)."""
        if not isinstance(subject_id, str) or not subject_id:
            raise ValueError("subject id must be a non-empty string")
        position = _check_position(position)
        minutiae = np.asarray(template.minutiae, np.float32).reshape(-1, 5)
        blob = template.to_bytes()
        if code is None:
            code = vector.code(template, self.background)
        slot, n = _slot(minutiae)
        row = self._writable_row(subject_id)
        self._dirty = True
        self._new.codes[row, position - 1] = code
        self._new.minutiae[row, position - 1] = slot
        self._new.counts[row, position - 1] = n
        self._new.blobs[row][position - 1] = blob

    def add_many(self, items) -> None:
        """Enrol several ``(subject_id, position, template)`` at once (one batch of codes)."""
        items = list(items)
        if not items:
            return
        codes = vector.code_batch([t for _, _, t in items], self.background)
        for (subject_id, position, template), code in zip(items, codes, strict=True):
            self.add(subject_id, position, template, code=code)

    def add_batch(self, subject_ids, positions, codes, slots, counts, blobs) -> None:
        """Enrol many fingers at once from precomputed parts (used by the synthetic builder):
        ``codes`` (B, BYTES), ``slots`` (B, SLOT, 3), ``counts`` (B,), ``blobs`` list of bytes."""
        for i, (sid, pos) in enumerate(zip(subject_ids, positions, strict=True)):
            pos = _check_position(int(pos))
            row = self._writable_row(sid)
            self._dirty = True
            self._new.codes[row, pos - 1] = codes[i]
            self._new.minutiae[row, pos - 1] = slots[i]
            self._new.counts[row, pos - 1] = counts[i]
            self._new.blobs[row][pos - 1] = blobs[i]

    def remove(self, subject_id: str, position: int | None = None) -> None:
        """Remove a subject, or one finger of it (the subject goes when no finger is left)."""
        seg, row = self._locate(subject_id)
        self._dirty = True
        if position is None:
            seg.alive[row] = False
            del self._where[subject_id]
            return
        position = _check_position(position)
        row = self._writable_row(subject_id)
        self._new.codes[row, position - 1] = 0
        self._new.minutiae[row, position - 1] = 0
        self._new.counts[row, position - 1] = 0
        self._new.blobs[row][position - 1] = None
        if all(b is None for b in self._new.blobs[row]):
            self._new.alive[row] = False
            del self._where[subject_id]

    # -- persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the gallery to directory ``path`` (compacted; atomic: temporary sibling
        directory, then rename; a previous gallery there is replaced)."""
        path = Path(path)
        parent = path.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
        try:
            self._write(tmp)
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
                os.rename(path, old / "gallery")
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
            fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._dirty = False
        self.path = path

    def _decision_fields(self) -> dict:
        """The index entries of the decision: thresholds (JSON keys are text) and calibration."""
        return {
            "threshold": self.threshold,
            "thresholds": {str(k): v for k, v in sorted(self.thresholds.items())},
            "calibration": self.calibration,
        }

    def save_threshold(self, path) -> None:
        """Persist ``threshold`` and ``calibration``: only the index is rewritten (atomically)
        when the gallery is unchanged since it was loaded from ``path``; else a full save."""
        path = Path(path)
        if self._dirty or self.path is None or self.path.resolve() != path.resolve():
            self.save(path)
            return
        with open(path / "index.json", encoding="utf-8") as f:
            index = json.load(f)
        index.update(self._decision_fields())
        fd, tmp = tempfile.mkstemp(prefix=".index.", dir=path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(index, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path / "index.json")
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _write(self, tmp: Path) -> None:
        parts = [(seg, np.nonzero(seg.alive[: seg.rows])[0]) for seg in self._segments()]
        n = sum(len(rows) for _, rows in parts)
        fmt = np.lib.format
        codes = fmt.open_memmap(tmp / "codes.npy", "w+", np.uint8, (n, POSITIONS, vector.BYTES))
        minu = fmt.open_memmap(tmp / "minutiae.npy", "w+", np.int16, (n, POSITIONS, SLOT, 3))
        counts = fmt.open_memmap(tmp / "counts.npy", "w+", np.uint8, (n, POSITIONS))
        offsets = np.zeros((n, POSITIONS, 2), np.int64)
        ids: list[str] = []
        at = 0
        pos = 0
        with open(tmp / "templates.bin", "wb") as out:
            for seg, rows in parts:
                for s in range(0, len(rows), 4096):
                    chunk = rows[s : s + 4096]
                    k = len(chunk)
                    codes[at : at + k] = seg.codes[chunk]
                    minu[at : at + k] = seg.minutiae[chunk]
                    counts[at : at + k] = seg.counts[chunk]
                    if seg.growable:
                        for i, row in enumerate(chunk):
                            for p, blob in enumerate(seg.blobs[row]):
                                if blob is not None:
                                    out.write(blob)
                                    offsets[at + i, p] = (pos, len(blob))
                                    pos += len(blob)
                    else:
                        so = np.asarray(seg.offsets[chunk])
                        lo = (
                            int(so[:, :, 0][so[:, :, 1] > 0].min())
                            if (so[:, :, 1] > 0).any()
                            else 0
                        )
                        hi = int((so[:, :, 0] + so[:, :, 1]).max()) if k else 0
                        contiguous = (np.diff(chunk) == 1).all() if k > 1 else True
                        if contiguous and hi > lo:
                            out.write(seg.blobs[lo:hi].tobytes())
                            new = so.copy()
                            new[:, :, 0] = np.where(so[:, :, 1] > 0, so[:, :, 0] - lo + pos, 0)
                            offsets[at : at + k] = new
                            pos += hi - lo
                        else:
                            for i in range(k):
                                for p in range(POSITIONS):
                                    o, ln = (int(v) for v in so[i, p])
                                    if ln:
                                        out.write(seg.blobs[o : o + ln].tobytes())
                                        offsets[at + i, p] = (pos, ln)
                                        pos += ln
                    ids.extend(seg.ids[r] for r in chunk)
                    at += k
            out.flush()
            os.fsync(out.fileno())
        np.save(tmp / "offsets.npy", offsets)
        mean, basis = self.background
        np.savez(tmp / "background.npz", mean=mean, basis=basis)
        for arr in (codes, minu, counts):
            arr.flush()
        del codes, minu, counts
        index = {
            "format": FORMAT,
            "subjects": ids,
            "code_bits": vector.BITS,
            "slot": SLOT,
            **self._decision_fields(),
        }
        with open(tmp / "index.json", "w", encoding="utf-8") as f:
            json.dump(index, f)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path) -> Gallery:
        """Open a saved gallery (arrays memory-mapped read-only).  Raises ValueError when
        ``path`` is not a gallery."""
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"{path}: not a gallery (not a directory)")
        try:
            with open(path / "index.json", encoding="utf-8") as f:
                index = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"{path}: not a gallery (no index.json)") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: unreadable gallery index: {exc}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported gallery format")
        if index.get("code_bits") != vector.BITS or index.get("slot") != SLOT:
            raise ValueError(f"{path}: gallery built with other code parameters")
        ids = index.get("subjects")
        try:
            codes = np.load(path / "codes.npy", mmap_mode="r")
            minu = np.load(path / "minutiae.npy", mmap_mode="r")
            counts = np.load(path / "counts.npy", mmap_mode="r")
            offsets = np.load(path / "offsets.npy", mmap_mode="r")
            size = (path / "templates.bin").stat().st_size
            blobs = (
                np.memmap(path / "templates.bin", np.uint8, "r") if size else np.zeros(0, np.uint8)
            )
            with np.load(path / "background.npz") as bg:
                background = (bg["mean"], bg["basis"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: damaged gallery: {exc}") from None
        if background[0].shape != (vector.FEATURES,) or background[1].shape[0] != vector.FEATURES:
            raise ValueError(f"{path}: gallery built with other vector parameters")
        n = len(ids) if isinstance(ids, list) else -1
        if (
            codes.shape != (n, POSITIONS, vector.BYTES)
            or minu.shape != (n, POSITIONS, SLOT, 3)
            or counts.shape != (n, POSITIONS)
            or offsets.shape != (n, POSITIONS, 2)
        ):
            raise ValueError(f"{path}: damaged gallery: array shapes disagree with the index")
        g = cls()
        assert isinstance(ids, list)  # n == len(ids) above
        g._base = _Segment(codes, minu, counts, offsets, blobs, list(ids))
        g._where = {sid: (g._base, i) for i, sid in enumerate(ids)}
        if len(g._where) != n:
            raise ValueError(f"{path}: damaged gallery: duplicate subject ids")
        g._background = background
        g.threshold = index.get("threshold")
        g.thresholds = {int(k): float(v) for k, v in (index.get("thresholds") or {}).items()}
        g.calibration = index.get("calibration") or {}
        g.path = path
        return g

    @property
    def fingers(self) -> int:
        """The number of enrolled fingers."""
        total = 0
        for seg in self._segments():
            alive = np.nonzero(seg.alive[: seg.rows])[0]
            if seg.growable:
                total += sum(b is not None for r in alive for b in seg.blobs[r])
            else:
                total += int((np.asarray(seg.offsets[alive][:, :, 1]) > 0).sum())
        return total

    def nbytes_per_finger(self) -> float:
        """Average stored bytes per enrolled finger (arrays plus serialised templates)."""
        fingers = 0
        blob = 0
        for seg in self._segments():
            alive = np.nonzero(seg.alive[: seg.rows])[0]
            fingers += int((np.asarray(seg.counts[alive]) > 0).sum())
            if seg.growable:
                blob += sum(len(b) for r in alive for b in seg.blobs[r] if b is not None)
            else:
                blob += int(np.asarray(seg.offsets[alive][:, :, 1]).sum())
        if not fingers:
            return 0.0
        return BYTES_PER_FINGER + blob / fingers

    # -- search ------------------------------------------------------------------------------
    def threshold_for(self, fingers: int) -> float | None:
        """The decision threshold of a probe of ``fingers`` fingers: the one calibrated for
        that count, else ``threshold``."""
        return self.thresholds.get(fingers, self.threshold)

    def calibrate(
        self, nonmated_scores, fpir: float = 0.001, image_level=(), fingers: int | None = None
    ) -> float:
        """Set and return the threshold for a false-positive identification rate ``fpir``.

        ``nonmated_scores`` holds the best fused score of each of a set of non-mated searches.
        The threshold is the larger of the empirical one (at most ``fpir`` of those scores reach
        it) and the ``1 - fpir`` quantile of a Gumbel law fitted to them by moments (the best of
        many impostor scores is Gumbel-like): with fewer than ``1 / fpir`` searches the
        empirical rate cannot be resolved and the fitted tail keeps the threshold honest.

        ``image_level`` holds further non-mated scores of fingers rendered and extracted from
        images, which score higher than template-level synthetic ones: they join the fit, and
        the threshold keeps a margin of ``IMAGE_MARGIN`` times the highest of them (a few
        dozen such searches cannot resolve the tail on their own).

        With ``fingers``, the searches were made with probes of that many fingers and the
        result goes to ``thresholds[fingers]`` (``threshold`` stays as it is).
        """
        image_level = [float(x) for x in image_level]
        s = np.sort(np.asarray(list(nonmated_scores) + image_level, np.float64))[::-1]
        if s.size < 2:
            raise ValueError("need at least two non-mated scores to calibrate")
        if not 0 < fpir < 1:
            raise ValueError("fpir must be between 0 and 1")
        k = int(np.floor(fpir * s.size))  # searches allowed at or above the threshold
        empirical = float(s[k]) + 1e-9
        beta = float(s.std()) * np.sqrt(6) / np.pi
        mu = float(s.mean()) - 0.5772156649 * beta
        gumbel = mu - beta * np.log(-np.log1p(-fpir))
        t = max(empirical, gumbel)
        calibration = {
            "fpir": fpir,
            "searches": int(s.size),
            "empirical": empirical,
            "gumbel": gumbel,
            "gumbel_mu": mu,
            "gumbel_beta": beta,
        }
        if image_level:
            top = max(image_level)
            t = max(t, IMAGE_MARGIN * top)
            calibration["image_level"] = {"searches": len(image_level), "max": top}
        if fingers is None:
            per_fingers = self.calibration.get("per_fingers")
            if per_fingers is not None:  # the thresholds of fewer fingers stay
                calibration["per_fingers"] = per_fingers
            self.threshold = t
            self.calibration = calibration
        else:
            self.thresholds[int(fingers)] = t
            self.calibration.setdefault("per_fingers", {})[str(int(fingers))] = {
                "threshold": t,
                **calibration,
            }
        return t

    def stage1(self, probe_codes: dict[int, np.ndarray], prefix: bool = True):
        """First-stage fused scores over every subject: list of (segment, alive row indices,
        scores); ``prefix`` uses the first ``vector.PREFIX_BITS`` bits of the codes only."""
        out = []
        positions = sorted(probe_codes)
        cols = np.array(positions) - 1
        every = len(positions) == POSITIONS
        words = (vector.PREFIX_BYTES if prefix else vector.BYTES) // 8
        bits = words * 64
        pc = np.stack([probe_codes[p] for p in positions]).view(np.uint64)[:, :words]
        lut = vector.similarity(np.arange(bits + 1), bits).astype(np.float32)
        step = 16384
        for seg in self._segments():
            if not seg.rows:
                continue
            rows = seg.rows
            total = np.zeros(rows, np.float32)
            codes = seg.codes.view(np.uint64)
            for s in range(0, rows, step):
                e = min(rows, s + step)
                c = codes[s:e, :, :words]
                present = np.asarray(seg.counts[s:e]) > 0
                if not every:
                    c = c[:, cols]
                    present = present[:, cols]
                h = np.bitwise_count(c ^ pc[None]).sum(-1, dtype=np.uint16)  # (n, k)
                sim = lut[h]
                sim *= present
                total[s:e] = sim.sum(1)
            alive = seg.alive[:rows]
            out.append((seg, np.nonzero(alive)[0], total[alive]))
        return out

    def _refine(self, segs, which, rows, probe_codes):
        """Fused scores with the full codes of the rows ``rows`` of the segments
        ``segs[which]`` (parallel arrays)."""
        positions = sorted(probe_codes)
        cols = np.array(positions) - 1
        pc = np.stack([probe_codes[p] for p in positions]).view(np.uint64)
        lut = vector.similarity(np.arange(vector.BITS + 1)).astype(np.float32)
        out = np.zeros(len(rows), np.float32)
        for k in np.unique(which):
            idx = np.nonzero(which == k)[0]
            idx = idx[np.argsort(rows[idx], kind="stable")]  # sorted reads from the mapped files
            r = rows[idx]
            seg = segs[k]
            c = np.asarray(seg.codes[r])[:, cols].view(np.uint64)
            present = np.asarray(seg.counts[r])[:, cols] > 0
            h = np.bitwise_count(c ^ pc[None]).sum(-1, dtype=np.uint16)
            out[idx] = (lut[h] * present).sum(1)
        return out

    def search(
        self,
        probe: dict,
        top: int = 10,
        shortlist: int = 50,
        refine: int = 4000,
        first_stage: bool = True,
        second_stage: str = "minutiae",
        rescore: int = 0,
    ) -> list[Candidate]:
        """Tenprint (or fewer fingers) 1:N search; ``probe`` maps positions 1-10 to Templates.

        Returns at most ``top`` candidates, best first.  The prefix scan keeps ``refine``
        subjects, the full codes ``shortlist`` of them.  ``first_stage=False`` runs the second
        stage over every subject (for measurements); ``second_stage`` is ``"minutiae"`` (fast,
        default) or ``"compare"`` (every short-listed subject scored with ``compare``).  With
        ``rescore`` R > 0 the best ``max(top, R)`` candidates of the fast stage are scored
        again with :func:`gateway.matcher.compare` and only they are returned (``RESCORE`` is
        a good R): then, as with ``"compare"``, each candidate's finger scores are ``compare``
        scores, the ones ``ebts-gateway match`` prints, and its score their sum.
        """
        if second_stage not in SECOND_STAGES:
            raise ValueError(f"second_stage must be one of {SECOND_STAGES}")
        if not probe:
            raise ValueError("empty probe: no finger to search with")
        probe = {_check_position(p): t for p, t in probe.items()}
        if not self._where:
            return []
        if first_stage:
            order = sorted(probe)
            codes = dict(
                zip(
                    order,
                    vector.code_batch([probe[p] for p in order], self.background),
                    strict=True,
                )
            )
            parts = self.stage1(codes)
            segs = [seg for seg, _, _ in parts]
            which = np.concatenate([np.full(len(r), k) for k, (_, r, _) in enumerate(parts)])
            rows = np.concatenate([r for _, r, _ in parts])
            scores = np.concatenate([s for _, _, s in parts])
            if scores.size == 0:  # every subject deleted
                return []
            # re-rank the best ``refine`` subjects of the prefix scan with the full codes
            k = min(max(refine, shortlist), scores.size)
            best = np.argpartition(-scores, k - 1)[:k]
            full = self._refine(segs, which[best], rows[best], codes)
            k = min(shortlist, best.size)
            sel = np.argpartition(-full, k - 1)[:k]
            sel = sel[np.argsort(-full[sel], kind="stable")]
            best = best[sel]
            scores[best] = full[sel]
            picks = [(segs[which[i]], int(rows[i]), float(scores[i])) for i in best]
        else:
            picks = [
                (seg, int(r), 0.0)
                for seg in self._segments()
                for r in np.nonzero(seg.alive[: seg.rows])[0]
            ]
        cands = self._second_stage(probe, picks, second_stage)
        cands.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
        if second_stage == "minutiae" and rescore > 0:
            cands = self._rescore(probe, cands[: max(top, rescore)])
            cands.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
        return cands[:top]

    def _rescore(self, probe, cands: list[Candidate]) -> list[Candidate]:
        """The candidates with :func:`gateway.matcher.compare` finger scores (one batched
        :func:`gateway.matcher.template.compare_many` per probe finger), their sum as score
        and the decision at the threshold of the number of fingers compared."""
        from .template import Template, compare_many

        fscores = np.zeros((len(cands), POSITIONS))
        compared = np.zeros((len(cands), POSITIONS), bool)
        where = [self._locate(c.subject_id) for c in cands]
        for p, t in probe.items():
            rows, found = [], []
            for i, (seg, row) in enumerate(where):
                data = seg.template_bytes(row, p)
                if data is not None:
                    rows.append(i)
                    found.append(Template.from_bytes(data))
            if found:
                fscores[rows, p - 1] = compare_many(t, found)
                compared[rows, p - 1] = True
        out = []
        for i, c in enumerate(cands):
            fs = {p: float(fscores[i, p - 1]) for p in sorted(probe)}
            score = float(sum(fs.values()))
            k = int(compared[i].sum())
            thr = self.threshold_for(k)
            decision = k > 0 and thr is not None and score >= thr
            out.append(Candidate(c.subject_id, score, fs, decision, c.stage1))
        return out

    @staticmethod
    def _gather(picks):
        """Minutiae slots (C, 10, SLOT, 3) and counts (C, 10) of the picked rows, in order."""
        gm = np.zeros((len(picks), POSITIONS, SLOT, 3), np.int16)
        gc = np.zeros((len(picks), POSITIONS), np.int64)
        by_seg: dict[int, tuple] = {}
        for i, (seg, row, _) in enumerate(picks):
            by_seg.setdefault(id(seg), (seg, [], []))
            by_seg[id(seg)][1].append(i)
            by_seg[id(seg)][2].append(row)
        for seg, idx, rows in by_seg.values():
            rows = np.asarray(rows)
            order = np.argsort(rows)  # sorted reads from the mapped files
            idx = np.asarray(idx)[order]
            gm[idx] = seg.minutiae[rows[order]]
            gc[idx] = seg.counts[rows[order]]
        return gm, gc

    def _second_stage(self, probe, picks, how) -> list[Candidate]:
        fscores = np.zeros((len(picks), POSITIONS))
        compared = np.zeros((len(picks), POSITIONS), bool)  # finger pairs actually scored
        if how == "compare":
            from .template import Template, compare_many

            # per probe finger, the same finger of every shortlisted subject in one batched
            # call (same operand order and scores as gateway.matcher.compare)
            for p, t in probe.items():
                rows, found = [], []
                for i, (seg, row, _) in enumerate(picks):
                    data = seg.template_bytes(row, p)
                    if data is not None:
                        rows.append(i)
                        found.append(Template.from_bytes(data))
                if found:
                    fscores[rows, p - 1] = compare_many(t, found)
                    compared[rows, p - 1] = True
        else:
            gm, gc = self._gather(picks)
            for p, t in probe.items():
                slot, n = _slot(t.minutiae)
                if n < 2:
                    continue
                for s in range(0, len(picks), 256):
                    e = min(len(picks), s + 256)
                    fscores[s:e, p - 1] = pair_scores(slot[:n], gm[s:e, p - 1], gc[s:e, p - 1])
                compared[:, p - 1] = gc[:, p - 1] > 0
        out = []
        # the threshold of the number of fingers compared: a probe of ten against a subject
        # enrolled with four is a four-finger decision
        thresholds = [self.threshold_for(k) for k in range(POSITIONS + 1)]
        for i, (seg, row, s1) in enumerate(picks):
            fs = {p: float(fscores[i, p - 1]) for p in sorted(probe)}
            score = float(sum(fs.values()))
            k = int(compared[i].sum())
            thr = thresholds[k]
            decision = k > 0 and thr is not None and score >= thr
            out.append(Candidate(seg.ids[row], score, fs, decision, s1))
        return out


# -- the fast second stage ----------------------------------------------------------------------
ROT_MAX = np.radians(45.0)  # largest rotation between two impressions considered
ROT_BIN = np.radians(12.0)
T_BIN = 24.0  # translation bin (pixels)
T_RANGE = 288.0  # translations considered: +-T_RANGE
DIST_TOL = 16.0  # pairing tolerance after alignment (pixels)
ANGLE_TOL = np.radians(25.0)
OVERLAP = 40.0  # a minutia is in the common area when the other print has one this close
MIN_OVERLAP = 12
_ROT_UNITS = int(round(ROT_MAX / (2 * np.pi) * 256))
_ANGLE_UNITS = int(round(ANGLE_TOL / (2 * np.pi) * 256))
_NR = int(np.ceil(2 * ROT_MAX / ROT_BIN)) + 1
_NT = int(2 * T_RANGE / T_BIN) + 1


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def pair_scores(probe: np.ndarray, gallery: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Similarity in [0, 1] of one probe finger with C gallery fingers.

    ``probe`` (n, 3) and ``gallery`` (C, SLOT, 3) are slot rows (x, y, direction in 1/256
    turns); ``counts`` (C,) the valid rows of each gallery finger.
    """
    c, m = gallery.shape[:2]
    out = np.zeros(c)
    if c == 0 or probe.shape[0] < 2:
        return out
    turn = np.float32(2 * np.pi / 256)
    px = probe[:, 0].astype(np.float32)
    py = probe[:, 1].astype(np.float32)
    pu = probe[:, 2].astype(np.int16)  # directions in 1/256 turns
    gx = gallery[:, :, 0].astype(np.float32)
    gy = gallery[:, :, 1].astype(np.float32)
    gu = gallery[:, :, 2].astype(np.int16)
    gvalid = np.arange(m)[None, :] < counts[:, None]  # (C, m)
    n = px.size
    # pairs (probe i, gallery j) whose directions differ by at most ROT_MAX: the rotation and
    # translation that bring probe minutia i onto gallery minutia j
    du = ((gu[:, None, :] - pu[None, :, None] + 128) & 255) - 128  # (C, n, m) int16
    ok = np.abs(du) <= _ROT_UNITS
    ok &= gvalid[:, None, :]
    # flat indices, split by division: a 3-D np.nonzero is several times slower
    flat = np.flatnonzero(ok)
    ci, rest = np.divmod(flat, n * m)
    ii, jj = np.divmod(rest, m)
    vdt = du.ravel()[flat].astype(np.float32) * turn
    cos, sin = np.cos(vdt), np.sin(vdt)
    gj = ci * m + jj
    vtx = gx.ravel()[gj] - (cos * px[ii] - sin * py[ii])
    vty = gy.ravel()[gj] - (sin * px[ii] + cos * py[ii])
    keep = (np.abs(vtx) < T_RANGE) & (np.abs(vty) < T_RANGE)
    ci, vdt, vtx, vty = ci[keep], vdt[keep], vtx[keep], vty[keep]
    cos, sin = cos[keep], sin[keep]
    best_votes = np.zeros(c)
    best_rot = np.zeros(c)
    best_tx = np.zeros(c)
    best_ty = np.zeros(c)
    nb = _NR * _NT * _NT
    fr = (vdt + ROT_MAX) / ROT_BIN  # bin coordinates, before the grid offset
    fx = (vtx + T_RANGE) / T_BIN
    fy = (vty + T_RANGE) / T_BIN
    base = ci * nb
    first = np.arange(c) * nb
    for off in (0.0, 0.5):  # two grids offset by half a bin: a cheap soft vote
        br = np.clip(np.floor(fr + off).astype(np.int64), 0, _NR - 1)
        bx = np.floor(fx + off).astype(np.int64)
        by = np.floor(fy + off).astype(np.int64)
        idx = base + (br * _NT + bx) * _NT + by
        votes = np.bincount(idx, minlength=c * nb).reshape(c, nb)
        peak = votes.argmax(1)
        pv = votes[np.arange(c), peak]
        inpeak = idx == (first + peak)[ci]
        cp = ci[inpeak]
        w = np.bincount(cp, minlength=c).astype(np.float64)
        w = np.maximum(w, 1)
        sr = np.bincount(cp, weights=sin[inpeak], minlength=c)
        cr = np.bincount(cp, weights=cos[inpeak], minlength=c)
        mx = np.bincount(cp, weights=vtx[inpeak], minlength=c) / w
        my = np.bincount(cp, weights=vty[inpeak], minlength=c) / w
        better = pv > best_votes
        best_votes = np.where(better, pv, best_votes)
        best_rot = np.where(better, np.arctan2(sr, cr), best_rot)
        best_tx = np.where(better, mx, best_tx)
        best_ty = np.where(better, my, best_ty)
    # align the probe with each gallery finger and pair minutiae within tolerance
    cr, sr = np.cos(best_rot)[:, None], np.sin(best_rot)[:, None]
    ax = (cr * px[None, :] - sr * py[None, :] + best_tx[:, None]).astype(np.float32)
    ay = (sr * px[None, :] + cr * py[None, :] + best_ty[:, None]).astype(np.float32)
    rot_u = np.rint(best_rot / turn).astype(np.int16)
    d2 = (ax[:, :, None] - gx[:, None, :]) ** 2 + (ay[:, :, None] - gy[:, None, :]) ** 2
    d2 = np.where(gvalid[:, None, :], d2, np.float32(1e9))
    close = d2 <= DIST_TOL**2
    au = ((du - rot_u[:, None, None] + 128) & 255) - 128
    close &= np.abs(au) <= _ANGLE_UNITS
    matched = np.minimum(close.any(2).sum(1), close.any(1).sum(1))
    near = d2 <= OVERLAP**2
    n_ov = np.maximum(near.any(2).sum(1), MIN_OVERLAP)
    m_ov = np.maximum(near.any(1).sum(1), MIN_OVERLAP)
    out = matched.astype(np.float64) ** 2 / (n_ov * m_ov)
    out[counts < 2] = 0
    return np.minimum(out, 1.0) * (n > 0)
