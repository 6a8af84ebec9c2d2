"""Master prints: the finger itself, before any capture (one per identity and finger position)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import fields, ridges

#: Domain tags that keep the random streams of masters and impressions apart.
MASTER_STREAM = 1
IMPRESSION_STREAM = 2


def check_args(identity: int, position: int) -> None:
    """Reject identities and finger positions the generator does not define."""
    if not isinstance(identity, int | np.integer) or isinstance(identity, bool) or identity < 0:
        raise ValueError(f"identity must be a non-negative integer, not {identity!r}")
    if not isinstance(position, int | np.integer) or not 1 <= position <= 10:
        raise ValueError(f"position must be a finger position code 1-10, not {position!r}")


@dataclass(frozen=True, eq=False)
class Master:
    """A master print on the full-resolution canvas (``fields.CANVAS`` pixels square, 500 ppi).

    ``ridges`` is +1 on ridge crests and -1 in valleys (float32, read-only); ``mask`` the
    finger-shaped foreground in [0, 1]; ``period`` the ridge period map in pixels; ``skin`` the
    finger's own skin condition (negative: moist, positive: dry).
    """

    identity: int
    position: int
    geometry: fields.Geometry
    ridges: np.ndarray
    mask: np.ndarray
    period: np.ndarray
    skin: float

    @property
    def cls(self) -> str:
        """The fingerprint class: one of :data:`gateway.synth.fields.CLASSES`."""
        return self.geometry.cls


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=12)
def master(identity: int, position: int) -> Master:
    """The master print of finger ``position`` (FGP 1-10) of ``identity``, deterministic."""
    check_args(identity, position)
    rng = np.random.default_rng(np.random.SeedSequence([MASTER_STREAM, int(identity), position]))
    geom = fields.draw_geometry(rng, position)
    n = fields.CANVAS // 2  # the pattern is grown at half resolution
    theta = fields.orientation_field(geom, rng, (n, n), step=2.0)
    period_half = fields.period_map(geom, rng, (n, n), step=2.0)
    pattern = ridges.grow_ridges(theta, 2.0 / period_half, rng)
    full = ridges.upsample(pattern, 2).astype(np.float32)
    mask = fields.foreground(geom, rng, full.shape).astype(np.float32)
    skin = float(np.clip(rng.normal(0.0, 0.14), -0.35, 0.35))
    return Master(
        identity=int(identity),
        position=int(position),
        geometry=geom,
        ridges=_readonly(full),
        mask=_readonly(mask),
        period=_readonly(period_half.astype(np.float32)),
        skin=skin,
    )
