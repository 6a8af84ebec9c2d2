"""Calibration of a gallery's decision: the thresholds for a false-positive identification
rate, per probe finger count, the score scale they were made on, and their persistence in the
gallery's index (a mixin of :class:`gateway.matcher.gallery.Gallery`).

The index records the scale (``"score_scale"``, :data:`gateway.matcher.gallery_store.SCORE_SCALE`
for the default search): a threshold decides only the searches whose scores are on its scale,
and an index without the key (calibrated before it was recorded, on the fast scale) decides
nothing until ``ebts-gateway gallery calibrate DIR`` is run again (:func:`decision_problem`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .gallery_store import IMAGE_MARGIN, SCALES, SCORE_SCALE


def decision_problem(threshold, score_scale, where: str, fix: str | None = None) -> str | None:
    """Why the thresholds of a gallery (or shard set) at ``where`` cannot decide the default
    search, said for an administrator with what fixes it (``fix``, default the command that
    calibrates ``where``); None when they can."""
    if threshold is None:
        why = "the gallery is not calibrated (no decision threshold)"
    elif score_scale != SCORE_SCALE:
        made = f"the {score_scale!r} scale" if score_scale else "an older score scale"
        why = (
            f"its thresholds were calibrated on {made}, searches score on the "
            f"{SCORE_SCALE!r} scale (sums of the compare() scores `ebts-gateway match` prints)"
        )
    else:
        return None
    return f"{where}: {why}: run {fix or f'`ebts-gateway gallery calibrate {where}`'}"


class CalibrationMixin:
    """The decision part of a gallery."""

    # provided by the gallery
    threshold: float | None
    thresholds: dict
    calibration: dict
    score_scale: str | None
    path: Path | None
    _dirty: bool

    if TYPE_CHECKING:

        def save(self, path) -> None: ...

    def _decision_fields(self) -> dict:
        """The index entries of the decision: thresholds (JSON keys are text) and calibration."""
        return {
            "threshold": self.threshold,
            "thresholds": {str(k): v for k, v in sorted(self.thresholds.items())},
            "calibration": self.calibration,
            "score_scale": self.score_scale,
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

    def threshold_for(self, fingers: int, scale: str = SCORE_SCALE) -> float | None:
        """The decision threshold of a probe of ``fingers`` fingers whose scores are on
        ``scale``: the one calibrated for that count, else ``threshold``; None when the
        thresholds were made on another scale (they cannot decide those scores)."""
        if scale != self.score_scale:
            return None
        return self.thresholds.get(fingers, self.threshold)

    def decision_problem(self) -> str | None:
        """Why this gallery's thresholds cannot decide a default search (None: they can)."""
        return decision_problem(self.threshold, self.score_scale, str(self.path or "gallery"))

    def calibrate(
        self,
        nonmated_scores,
        fpir: float = 0.001,
        image_level=(),
        fingers: int | None = None,
        scale: str = SCORE_SCALE,
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

        ``scale`` is the scale of the scores (``SCORE_SCALE``: default searches; ``FAST_SCALE``:
        searches with ``rescore=0``), recorded as the gallery's ``score_scale``; the thresholds
        of another scale are dropped first (one gallery, one scale).
        """
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}")
        if scale != self.score_scale:
            self.threshold, self.thresholds, self.calibration = None, {}, {}
            self.score_scale = scale
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
            "score_scale": scale,
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
