"""The 1:N tenprint search of a gallery: the first stage over the codes, the fast minutiae
second stage (:func:`pair_scores`), the ``compare`` round of its best candidates (one score
scale, :func:`rescored`, shared with the sharded search), and the fusion of finger scores into
candidates (a mixin of :class:`gateway.matcher.gallery.Gallery`; the algorithm
is described in that module's docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import vector
from .gallery_store import (
    FAST_SCALE,
    POSITIONS,
    RESCORE,
    SCORE_SCALE,
    SECOND_STAGES,
    SLOT,
    Candidate,
    _check_position,
    _slot,
)


def scale_of(second_stage: str, rescore: int) -> str:
    """The score scale of a search's results: ``compare`` sums unless the fast second stage's
    scores are returned as they are (``rescore=0``)."""
    return FAST_SCALE if second_stage == "minutiae" and rescore <= 0 else SCORE_SCALE


#: Gallery templates per :func:`compare_many` call of :func:`rescored`: its cost per template
#: grows with the batch beyond 3-4 templates (CPU per ten-finger probe against 10 candidates on
#: the 100k gallery: 505 ms in one batch, 255 ms in batches of 3, 278 ms of 2, 364 ms of 4).
RESCORE_BATCH = 3


def rescored(probe: dict, cands: list, templates: list, threshold_for) -> list[Candidate]:
    """``cands`` with :func:`gateway.matcher.compare` finger scores, their sum as score and
    the decision at ``threshold_for(fingers compared)`` (on :data:`SCORE_SCALE`), best first.

    ``templates[i]`` maps the probe's positions to the serialised templates of ``cands[i]``
    (a position without one is not compared).  Batched
    :func:`gateway.matcher.template.compare_many` calls per probe finger (``RESCORE_BATCH``
    candidates each), over the candidates in the given order: the unsharded and the sharded
    search call this with the same candidates in the same order and get the same bits."""
    from .template import Template, compare_many

    fscores = np.zeros((len(cands), POSITIONS))
    compared = np.zeros((len(cands), POSITIONS), bool)
    for p, t in probe.items():
        rows, found = [], []
        for i, blobs in enumerate(templates):
            data = blobs.get(p)
            if data is not None:
                rows.append(i)
                found.append(Template.from_bytes(data))
        if found:
            step = RESCORE_BATCH
            fscores[rows, p - 1] = np.concatenate(
                [compare_many(t, found[s : s + step]) for s in range(0, len(found), step)]
            )
            compared[rows, p - 1] = True
    out = []
    for i, c in enumerate(cands):
        fs = {p: float(fscores[i, p - 1]) for p in sorted(probe)}
        score = float(sum(fs.values()))
        k = int(compared[i].sum())
        thr = threshold_for(k, SCORE_SCALE)
        decision = k > 0 and thr is not None and score >= thr
        out.append(Candidate(c.subject_id, score, fs, decision, c.stage1))
    out.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
    return out


class SearchMixin:
    """The search part of a gallery."""

    if TYPE_CHECKING:  # provided by the gallery
        _where: dict

        def _segments(self) -> list: ...
        def _locate(self, subject_id: str): ...
        def background(self): ...
        def threshold_for(self, fingers: int, scale: str = SCORE_SCALE) -> float | None: ...

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
        rescore: int = RESCORE,
    ) -> list[Candidate]:
        """Tenprint (or fewer fingers) 1:N search; ``probe`` maps positions 1-10 to Templates.

        Returns at most ``top`` candidates, best first.  The prefix scan keeps ``refine``
        subjects, the full codes ``shortlist`` of them.  ``first_stage=False`` runs the second
        stage over every subject (for measurements); ``second_stage`` is ``"minutiae"`` (fast,
        default) or ``"compare"`` (every short-listed subject scored with ``compare``).  The
        best ``max(top, rescore)`` candidates of the fast stage are scored again with
        :func:`gateway.matcher.compare` and only they are returned: as with ``"compare"``,
        each candidate's finger scores are ``compare`` scores, the ones ``ebts-gateway match``
        prints, and its score their sum (:data:`SCORE_SCALE`).  ``rescore=0`` returns the fast
        stage's scores (:data:`FAST_SCALE`, for measurements).  A decision needs thresholds
        calibrated on the scale of the scores (:meth:`calibrate`).
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
        scale = scale_of(second_stage, rescore)
        cands = self._second_stage(probe, picks, second_stage, scale)
        cands.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
        if second_stage == "minutiae" and rescore > 0:
            cands = cands[: max(top, rescore)]
            cands = rescored(probe, cands, self._templates(probe, cands), self.threshold_for)
        return cands[:top]

    def _templates(self, probe, cands) -> list[dict[int, bytes]]:
        """The serialised templates of the candidates' fingers at the probe's positions."""
        out = []
        for c in cands:
            seg, row = self._locate(c.subject_id)
            blobs = {p: seg.template_bytes(row, p) for p in probe}
            out.append({p: b for p, b in blobs.items() if b is not None})
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

    def _second_stage(self, probe, picks, how, scale: str) -> list[Candidate]:
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
        thresholds = [self.threshold_for(k, scale) for k in range(POSITIONS + 1)]
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
