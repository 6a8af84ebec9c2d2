"""Synthetic fingerprints (SFinGe style) and synthetic CAR transactions for tests and load.

Public API::

    img = finger(identity, position, impression)   # 416 x 416 uint8, 500 ppi, dark ridges
    img = finger(identity, position, impression, difficulty="fvc")  # as hard as FVC2000 DB1
    m = master(identity, position)                  # the finger itself (class, singular points)
    p = capture(identity, position, impression)     # the capture conditions of an impression
    txn = car_transaction(identity)                 # Type-1 + Type-2 + 10 x Type-14 (WSQ)

Everything is deterministic: the random streams are seeded from ``(identity, position)`` for the
master and ``(identity, position, impression)`` for an impression; no global random state is used.
Pure library: numpy and scipy only (the transaction builder also uses Pillow and ``wsq``).
See ``docs/synth.md`` for the model.
"""

from __future__ import annotations

import numpy as np

from .fields import CLASS_FREQUENCIES, CLASSES
from .impression import (
    DIFFICULTIES,
    MAX_ROTATION,
    SIZE,
    ImpressionParams,
    check_difficulty,
    impression_params,
    impression_rng,
)
from .impression import render as _render
from .masterprint import Master, check_args, master

#: Resolution of every image produced here, pixels per inch.
PPI = 500

__all__ = [
    "CLASSES",
    "CLASS_FREQUENCIES",
    "DIFFICULTIES",
    "MAX_ROTATION",
    "PPI",
    "SIZE",
    "ImpressionParams",
    "Master",
    "capture",
    "car_transaction",
    "finger",
    "master",
]


def capture(
    identity: int, position: int, impression: int, difficulty: str = "easy"
) -> ImpressionParams:
    """The capture conditions (rotation, shift, contact, distortion, skin) of an impression."""
    check_args(identity, position)
    check_difficulty(difficulty)
    if impression < 0:
        raise ValueError(f"impression must be >= 0, not {impression!r}")
    rng = impression_rng(identity, position, impression)
    return impression_params(master(identity, position), impression, rng, difficulty)


def finger(identity: int, position: int, impression: int, difficulty: str = "easy") -> np.ndarray:
    """Impression ``impression`` of finger ``position`` (FGP 1-10) of ``identity``.

    A ``SIZE`` x ``SIZE`` uint8 array at 500 ppi: light background, dark ridges.  The same
    arguments always give the same image; the same ``(identity, position)`` is the same finger.
    Impression 0 is a careful full-contact capture (used for the rolled prints of
    :func:`car_transaction`); the others vary more in placement, contact and distortion.
    ``difficulty`` is a preset of :data:`DIFFICULTIES`: "easy" (the default, above) or "fvc"
    (every impression a plain capture whose genuine scores are as hard as FVC2000 DB1's).
    """
    check_args(identity, position)
    check_difficulty(difficulty)
    if impression < 0:
        raise ValueError(f"impression must be >= 0, not {impression!r}")
    m = master(identity, position)
    rng = impression_rng(identity, position, impression)
    params = impression_params(m, impression, rng, difficulty)
    return _render(m, params, rng)


def car_transaction(*args, **kwargs):
    """Build a synthetic CAR transaction; see :func:`gateway.synth.transactions.car_transaction`."""
    from .transactions import car_transaction as build

    return build(*args, **kwargs)
