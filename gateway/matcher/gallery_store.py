"""The gallery's storage primitives: its constants, the :class:`Candidate` of a search, the
second-stage slot of a finger's minutiae and the segments of rows (mapped or in memory); the
:class:`gateway.matcher.gallery.Gallery` builds on them (see that module's docstring)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import vector

POSITIONS = 10
SLOT = 64  # minutiae kept per finger for the second stage
FORMAT = 1
SECOND_STAGES = ("minutiae", "compare")
#: Candidates of the fast second stage a search scores again with ``compare`` (``rescore``,
#: the default; at least ``top`` of them): their scores are then on :data:`SCORE_SCALE`.
RESCORE = 3

#: The scale of the scores a default search returns and of the thresholds it decides with: a
#: candidate's score is the sum over the compared fingers of :func:`gateway.matcher.compare`
#: (the score ``ebts-gateway match`` prints).  Recorded in a gallery's index by
#: :meth:`Gallery.calibrate`; thresholds recorded on another scale (or on none: galleries
#: calibrated before the scale was recorded) decide nothing.  A change to ``compare`` that
#: moves its scores must change this name, so that every gallery is calibrated again.
#: "compare-v2" (0.5.0): the extraction's two filtering passes moved every score.
SCORE_SCALE = "compare-v2"
#: The scale of a search with ``rescore=0``: sums of the fast second stage's finger scores
#: (:func:`gateway.matcher.gallery_search.pair_scores`), kept for measurements.
FAST_SCALE = "minutiae-v2"
SCALES = (SCORE_SCALE, FAST_SCALE)


def read_index(path: Path) -> dict:
    """The JSON index (``index.json``) of the gallery folder ``path``; ValueError, saying
    what is wrong, when there is none or it is not a JSON object."""
    try:
        with open(path / "index.json", encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: not a gallery (no index.json)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable gallery index: {exc}") from None
    if not isinstance(index, dict):
        raise ValueError(f"{path}: unsupported gallery format")
    return index


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
