"""Master-print geometry: class, singular points, orientation and ridge-period maps, foreground.

Coordinates are full-resolution pixels (500 ppi) of the master canvas, ``x`` to the right and ``y``
downwards.  Orientations are ridge directions in radians in the image frame, modulo pi, measured
from the x axis towards the *top* of the image (mathematical convention), so that a value of
``pi / 4`` is a ridge running from bottom-left to top-right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fingerprint classes and their commonly cited natural frequencies (Wilson et al., NIST).
CLASSES: tuple[str, ...] = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")
CLASS_FREQUENCIES: tuple[float, ...] = (0.037, 0.029, 0.338, 0.317, 0.279)

#: Size of the master canvas (square, pixels at 500 ppi).
CANVAS = 448
#: Amplitudes (px, rad) of the fine random variation of period and orientation: they set the
#: minutiae density (about 40-60 on a full-contact impression).
PERIOD_DETAIL = 1.1
ORIENT_DETAIL = 0.12


@dataclass(frozen=True)
class Geometry:
    """The class and the singular points of a master print (canvas pixel coordinates)."""

    cls: str
    cores: tuple[tuple[float, float], ...]
    deltas: tuple[tuple[float, float], ...]
    centre: tuple[float, float]  # centre of the finger-shaped foreground
    axes: tuple[float, float]  # semi-axes (horizontal, vertical) of the foreground ellipse


def _basis(n: int, cells: int) -> np.ndarray:
    """Gaussian interpolation weights from ``cells + 1`` knots to ``n`` samples (unit power)."""
    pos = (np.arange(n) + 0.5) / n * cells
    knots = np.arange(cells + 1)
    w = np.exp(-0.5 * ((pos[:, None] - knots[None, :]) / 0.6) ** 2)
    return w / np.sqrt((w * w).sum(axis=1, keepdims=True))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """A smooth random field with unit variance and about ``cells`` blobs across each axis."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    by = _basis(shape[0], cells)
    bx = _basis(shape[1], cells)
    return by @ coarse @ bx.T


def draw_geometry(rng: np.random.Generator, position: int) -> Geometry:
    """Draw the class and place the singular points, foreground centre and size."""
    cls = CLASSES[int(rng.choice(len(CLASSES), p=np.asarray(CLASS_FREQUENCIES)))]
    # Finger size by position: thumbs are wider, little fingers smaller.
    scale = {1: 1.12, 6: 1.12, 2: 1.0, 7: 1.0, 3: 1.03, 8: 1.03, 4: 0.97, 9: 0.97}.get(
        position, 0.9
    )
    scale *= rng.uniform(0.94, 1.06)
    ax = float(np.clip(150 * scale * rng.uniform(0.92, 1.05), 120, 205))
    ay = float(np.clip(190 * scale * rng.uniform(0.95, 1.05), 160, 218))
    cx = CANVAS / 2 + rng.normal(0, 4)
    cy = CANVAS / 2 + 10 + rng.normal(0, 4)
    # Reference point of the pattern: slightly above the foreground centre.
    px = cx + rng.normal(0, 10)
    py = cy - 0.12 * ay + rng.normal(0, 12)
    cores: list[tuple[float, float]] = []
    deltas: list[tuple[float, float]] = []
    if cls == "tented_arch":
        gap = rng.uniform(35, 70)
        cores.append((px, py - gap / 2))
        deltas.append((px + rng.normal(0, 4), py + gap / 2))
    elif cls in ("left_loop", "right_loop"):
        side = 1.0 if cls == "left_loop" else -1.0  # the delta lies opposite to the opening
        cores.append((px - side * rng.uniform(5, 20), py - rng.uniform(0, 15)))
        dx = side * rng.uniform(70, 115)
        dy = rng.uniform(85, 130)
        deltas.append((cores[0][0] + dx, cores[0][1] + dy))
    elif cls == "whorl":
        sep = rng.uniform(18, 45)
        tilt = rng.normal(0, 0.35)
        cores.append((px - 0.5 * sep * np.sin(tilt), py - 0.5 * sep * np.cos(tilt)))
        cores.append((px + 0.5 * sep * np.sin(tilt), py + 0.5 * sep * np.cos(tilt)))
        for side in (-1.0, 1.0):
            deltas.append(
                (px + side * rng.uniform(85, 125), py + rng.uniform(90, 135) + rng.normal(0, 8))
            )
    return Geometry(cls, tuple(cores), tuple(deltas), (cx, cy), (ax, ay))


def orientation_field(
    geom: Geometry, rng: np.random.Generator, shape: tuple[int, int], step: float = 1.0
) -> np.ndarray:
    """Ridge orientation (radians, modulo pi) on a grid of ``shape`` whose pixels are ``step`` wide.

    Sherlock-Monro zero-pole model: half the sum of the arguments to the cores minus half the sum
    of the arguments to the deltas, plus a smooth arch term (ridges bulging upwards towards the
    finger tip) and a small smooth random perturbation.  Adding smooth terms to the angle keeps
    the singular points and their indices unchanged.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs = (xs + 0.5) * step
    ys = (ys + 0.5) * step
    theta = np.zeros(shape)
    for cx, cy in geom.cores:
        theta += 0.5 * np.arctan2(-(ys - cy), xs - cx)
    for dx, dy in geom.deltas:
        theta -= 0.5 * np.arctan2(-(ys - dy), xs - dx)
    # Arch term: ridges follow y = -A(y) * exp(-x^2 / 2 s^2) (bulging towards the top), with a
    # bulge that grows towards the tip and vanishes at the crease.
    fx, fy = geom.centre
    ax, ay = geom.axes
    if geom.cores:
        ref_y = float(np.mean([c[1] for c in geom.cores]))
        ref_x = float(np.mean([c[0] for c in geom.cores]))
        strength = rng.uniform(0.45, 0.8)
    else:
        ref_y = fy - 0.1 * ay
        ref_x = fx + rng.normal(0, 8)
        strength = rng.uniform(0.9, 1.5)
    s = ax * rng.uniform(0.45, 0.65)
    u = (xs - ref_x) / s
    # Height of the bulge: large above the reference point, fading below it.
    v = (ys - ref_y) / ay
    amp = strength * (0.55 - np.tanh(2.2 * v) * 0.45)
    slope = -amp * u * np.exp(-0.5 * u * u)  # d(height)/dx, height measured upwards
    theta += np.arctan(slope)
    # Individuality: a slowly varying perturbation.
    theta += 0.08 * smooth_noise(rng, shape, 4) + ORIENT_DETAIL * smooth_noise(rng, shape, 12)
    return np.mod(theta, np.pi)


def period_map(
    geom: Geometry, rng: np.random.Generator, shape: tuple[int, int], step: float = 1.0
) -> np.ndarray:
    """Ridge period in full-resolution pixels: 8-11 px at 500 ppi, varying smoothly."""
    h, w = shape
    base = rng.uniform(8.6, 10.2)
    ys = (np.arange(h)[:, None] + 0.5) * step
    # Ridges are a little denser towards the tip and the flanks.
    v = (ys - geom.centre[1]) / geom.axes[1]
    period = (
        base
        + 0.35 * v
        + 0.45 * smooth_noise(rng, shape, 3)
        + PERIOD_DETAIL * smooth_noise(rng, shape, 10)
    )
    return np.clip(period, 8.0, 11.0)


def foreground(geom: Geometry, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A finger-shaped foreground: an ellipse, rounder at the tip, with a slightly irregular rim.

    Returns a float array in [0, 1] with a soft edge of a few pixels.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = geom.centre
    ax, ay = geom.axes
    dx = (xs - cx) / ax
    dy = (ys - cy) / ay
    # Flatten the lower part (the crease side) a little and widen it: a finger, not an egg.
    dx = dx / (1.0 + 0.08 * np.clip(dy, 0, None))
    angle = np.arctan2(dy, dx)
    radius = np.hypot(dx, dy)
    rim = np.ones_like(angle)
    for k in range(2, 6):
        rim += rng.normal(0, 0.025 / k * 2) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    edge = (rim - radius) * min(ax, ay) / 4.0  # signed distance-ish, in units of 4 px
    return np.clip(0.5 + edge, 0.0, 1.0)
