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
4. **one score scale** (``rescore=R``, default ``RESCORE``) - the best ``max(top, R)``
   candidates of the fast second stage are scored again with :func:`gateway.matcher.compare`
   and only they are returned: every candidate's finger score is then the ``compare`` score of
   that pair (the one ``ebts-gateway match`` prints) and its score their sum
   (``SCORE_SCALE``), as with ``second_stage="compare"`` but at the cost of R short-listed
   subjects instead of all of them.  The sharded search (:mod:`gateway.matcher.shards`) runs
   the same round after its merge and returns the same bits.  ``rescore=0`` returns the fast
   stage's sums (``FAST_SCALE``, for measurements);
5. **decision** - ``score >= threshold`` of the number of fingers compared, with thresholds
   calibrated on the scale of the scores (:meth:`Gallery.calibrate` records it in the index
   as ``score_scale``; thresholds of another scale, or of an index without one, decide
   nothing: ``ebts-gateway gallery calibrate DIR`` makes new ones).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import vector
from .gallery_calibration import CalibrationMixin
from .gallery_search import (  # noqa: F401 - the search's names, re-exported
    ANGLE_TOL,
    DIST_TOL,
    ROT_MAX,
    SearchMixin,
    pair_scores,
)
from .gallery_store import (  # noqa: F401 - the storage primitives, re-exported
    BYTES_PER_FINGER,
    FAST_SCALE,
    FORMAT,
    IMAGE_MARGIN,
    POSITIONS,
    RESCORE,
    SCORE_SCALE,
    SECOND_STAGES,
    SLOT,
    Candidate,
    _check_position,
    _Segment,
    _slot,
    read_index,
)


class Gallery(SearchMixin, CalibrationMixin):
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
        # the scale of the thresholds: a new gallery's are made on the default search's
        self.score_scale: str | None = SCORE_SCALE
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
        index = read_index(path)
        if index.get("format") != FORMAT:
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
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # (a truncated .npz is a BadZipFile, not an OSError)
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
        # every template inside templates.bin (a truncated file would fail each comparison
        # that reads past its end: an INTERNAL_ERROR answer per transaction)
        if n and not _templates_fit(offsets, size):
            raise ValueError(f"{path}: damaged gallery: templates.bin is shorter than its index")
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
        scale = index.get("score_scale")  # absent: calibrated before scales were recorded
        g.score_scale = scale if isinstance(scale, str) else None
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


def _templates_fit(offsets, size: int) -> bool:
    """Whether every template of an (n, 10, 2) offsets array (offset, length) lies within a
    templates.bin of ``size`` bytes; one pass in blocks of rows (a million subjects' offsets are
    160 MB, memory-mapped)."""
    for start in range(0, offsets.shape[0], 65536):
        block = np.asarray(offsets[start : start + 65536])
        if block.min() < 0 or int((block[..., 0] + block[..., 1]).max()) > size:
            return False
    return True
