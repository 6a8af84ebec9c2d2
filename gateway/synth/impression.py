"""Impressions: one capture of a master print, as a scanner would deliver it.

Each impression moves the finger (rotation up to +-20 degrees, translation), presses it with a
random contact region (partial capture when the contact is off centre or small), drags the skin
(plastic distortion: a smooth displacement that is nil around the contact centre and grows
towards the rim), and renders it with the skin condition (dry: thin, broken ridges; moist or
pressed: thick ridges), a falling pressure near the contact rim, sensor blur, noise and a light
background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import fields
from .masterprint import IMPRESSION_STREAM, Master

#: Output size in pixels (square) at 500 ppi.
SIZE = 416
#: Maximal rotation of an impression, in degrees.
MAX_ROTATION = 20.0


@dataclass(frozen=True)
class ImpressionParams:
    """The capture conditions of one impression (all drawn from its own seed)."""

    rotation: float  # degrees, counter-clockwise as seen on the image
    shift: tuple[float, float]  # (dx, dy) of the finger in output pixels
    contact_centre: tuple[float, float]  # offset from the finger centre, master pixels
    contact_axes: tuple[float, float]  # semi-axes of the contact region, master pixels
    drag: tuple[float, float, float]  # plastic distortion: rotation (rad), dx, dy at the rim
    threshold: float  # ridge-thickness threshold: < 0 thick (pressure, moist), > 0 thin (dry)
    dryness: float  # 0..1, how much ridges break up
    contrast: float  # grey depth of ridges
    background: float  # grey level of the background
    blur: float  # sensor blur sigma in pixels
    noise: float  # additive noise sigma in grey levels
    mottle: float  # amplitude of the local variation of ridge thickness (uneven pressure, sweat)
    smudge: float  # 0..1, how far the wettest areas fill the valleys
    jitter: float  # amplitude in pixels of a smooth non-rigid skin displacement
    scratches: int  # light streaks across the image (dirt or scratches on the platen)


#: The difficulty presets of an impression: "easy" (impression 0 a careful rolled capture, the
#: others moderate plain captures; what the demo and the tests are built on) and "fvc" (every
#: impression a plain capture as hard as FVC's: larger placement changes and partial
#: overlap, plastic distortion, dry and wet skin, platen streaks; issue 17).
DIFFICULTIES = ("easy", "fvc")


def check_difficulty(difficulty: str) -> None:
    """Reject an unknown difficulty preset."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, not {difficulty!r}")


def impression_params(
    m: Master, impression: int, rng: np.random.Generator, difficulty: str = "easy"
) -> ImpressionParams:
    """Draw the capture conditions of impression number ``impression`` of master ``m``.

    ``difficulty="easy"`` gives exactly the impressions of the generator before presets existed;
    "fvc" draws its own conditions (:func:`_fvc_params`) from the same stream.
    """
    check_difficulty(difficulty)
    if difficulty == "fvc":
        return _fvc_params(m, rng)
    ax, ay = m.geometry.axes
    rolled = impression == 0  # impression 0 is the careful (rolled, full-contact) one
    rot_sd = 6.0 if rolled else 9.0
    rotation = float(np.clip(rng.normal(0.0, rot_sd), -MAX_ROTATION, MAX_ROTATION))
    shift = tuple(float(v) for v in np.clip(rng.normal(0.0, 12.0, 2), -35, 35))
    if rolled:
        contact_centre = (float(rng.normal(0, 0.04 * ax)), float(rng.normal(0, 0.04 * ay)))
        contact_axes = (ax * rng.uniform(1.0, 1.1), ay * rng.uniform(0.95, 1.05))
    else:
        contact_centre = (float(rng.normal(0, 0.16 * ax)), float(rng.normal(0, 0.14 * ay)))
        contact_axes = (ax * rng.uniform(0.68, 0.98), ay * rng.uniform(0.7, 0.98))
    # The rolled impression is taken with care; the others vary like plain live-scan captures.
    hard = 0.5 if rolled else 1.35
    drag = (
        float(rng.normal(0.0, np.radians(4.0)) * hard),
        float(rng.normal(0.0, 7.0) * hard),
        float(rng.normal(0.0, 7.0) * hard),
    )
    threshold = float(np.clip(m.skin + rng.normal(0.0, 0.12), -0.45, 0.45))
    dryness = float(np.clip(0.1 + 0.9 * max(threshold, 0.0) + rng.normal(0, 0.06), 0.0, 0.6))
    return ImpressionParams(
        rotation=rotation,
        shift=shift,  # type: ignore[arg-type]
        contact_centre=contact_centre,
        contact_axes=(float(contact_axes[0]), float(contact_axes[1])),
        drag=drag,
        threshold=threshold,
        dryness=dryness,
        contrast=float(rng.uniform(150, 225) if rolled else rng.uniform(90, 215)),
        background=float(rng.uniform(215, 250)),
        blur=float(rng.uniform(0.6, 1.1) if rolled else rng.uniform(0.7, 1.5)),
        noise=float(rng.uniform(3.0, 8.0) if rolled else rng.uniform(4.0, 12.0)),
        mottle=float(rng.uniform(0.1, 0.4) * hard),
        smudge=float(rng.uniform(0.0, 0.7) * hard),
        jitter=float(rng.uniform(1.0, 3.5) * hard),
        scratches=int(rng.poisson(0.1 if rolled else 0.5)),
    )


# The "fvc" preset, tuned with benchmarks/synth_hardness.py to a mean genuine compare score of
# 0.186 (issue 17's 0.18 for FVC2000 DB1; the six FVC sets average 0.19 with today's matcher)
# with FVC2000 DB1's spread (docs/matcher.md, "Session 7").  Every impression is a plain capture
# (FVC's eight impressions of a finger are alike in kind; no careful first one).
FVC_ROTATION_SD = 9.0  # degrees (clipped to MAX_ROTATION)
FVC_SHIFT_SD = 18.0  # output pixels (clipped to +-FVC_SHIFT_MAX): partial overlap
FVC_SHIFT_MAX = 50.0
FVC_DRAG = 1.4  # scale of the plastic distortion against the easy preset's unit


def _fvc_params(m: Master, rng: np.random.Generator) -> ImpressionParams:
    ax, ay = m.geometry.axes
    rotation = float(np.clip(rng.normal(0.0, FVC_ROTATION_SD), -MAX_ROTATION, MAX_ROTATION))
    shift = tuple(
        float(v) for v in np.clip(rng.normal(0.0, FVC_SHIFT_SD, 2), -FVC_SHIFT_MAX, FVC_SHIFT_MAX)
    )
    contact_centre = (float(rng.normal(0, 0.16 * ax)), float(rng.normal(0, 0.14 * ay)))
    contact_axes = (ax * rng.uniform(0.66, 0.98), ay * rng.uniform(0.68, 0.98))
    # Cappelli's plastic distortion model (Cappelli, Maio, Maltoni 2001): the rigid centre, the
    # distorted ring and the displaced border of the contact region; see render().
    drag = (
        float(rng.normal(0.0, np.radians(4.0)) * FVC_DRAG),
        float(rng.normal(0.0, 7.0) * FVC_DRAG),
        float(rng.normal(0.0, 7.0) * FVC_DRAG),
    )
    # Skin condition varies more from capture to capture: dry (thin, broken) or wet (merged).
    threshold = float(np.clip(m.skin + rng.normal(0.0, 0.16), -0.5, 0.5))
    dryness = float(np.clip(0.1 + 1.0 * max(threshold, 0.0) + rng.normal(0, 0.07), 0.0, 0.7))
    return ImpressionParams(
        rotation=rotation,
        shift=shift,  # type: ignore[arg-type]
        contact_centre=contact_centre,
        contact_axes=(float(contact_axes[0]), float(contact_axes[1])),
        drag=drag,
        threshold=threshold,
        dryness=dryness,
        contrast=float(rng.uniform(80, 215)),
        background=float(rng.uniform(205, 250)),
        blur=float(rng.uniform(0.7, 1.5)),
        noise=float(rng.uniform(5.0, 14.0)),
        mottle=float(rng.uniform(0.15, 0.5)),
        smudge=float(rng.uniform(0.0, 0.9)),
        jitter=float(rng.uniform(1.5, 4.5)),
        scratches=int(rng.poisson(1.0)),
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def render(m: Master, p: ImpressionParams, rng: np.random.Generator) -> np.ndarray:
    """Render the impression described by ``p``: a ``SIZE`` x ``SIZE`` uint8 image."""
    cx, cy = m.geometry.centre
    ax, ay = m.geometry.axes
    # Output pixel -> master pixel: undo translation and rotation about the output centre.
    yo, xo = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    u = xo - SIZE / 2 - p.shift[0]
    v = yo - SIZE / 2 - p.shift[1]
    a = np.radians(p.rotation)
    # A counter-clockwise rotation on screen (y down) maps master (x, y) to
    # (x cos a + y sin a, -x sin a + y cos a); invert it here.
    xm = u * np.cos(a) - v * np.sin(a) + fields.CANVAS / 2
    ym = u * np.sin(a) + v * np.cos(a) + fields.CANVAS / 2
    # Plastic distortion, in master coordinates around the contact centre.
    kx = cx + p.contact_centre[0]
    ky = cy + p.contact_centre[1]
    dx = (xm - kx) / p.contact_axes[0]
    dy = (ym - ky) / p.contact_axes[1]
    r = np.sqrt(dx * dx + dy * dy)
    w = _smoothstep((r - 0.3) / 0.7)
    dr, tx, ty = p.drag
    rx = xm - kx
    ry = ym - ky
    xm = xm + w * ((np.cos(dr) - 1) * rx - np.sin(dr) * ry + tx)
    ym = ym + w * (np.sin(dr) * rx + (np.cos(dr) - 1) * ry + ty)
    if p.jitter:
        xm = xm + p.jitter * fields.smooth_noise(rng, (SIZE, SIZE), 5).astype(np.float32)
        ym = ym + p.jitter * fields.smooth_noise(rng, (SIZE, SIZE), 5).astype(np.float32)
    coords = np.stack([ym, xm])
    ridge = ndimage.map_coordinates(m.ridges, coords, order=1, cval=-1.0)
    fg = ndimage.map_coordinates(m.mask, coords, order=1, cval=0.0)
    # Contact: full pressure inside, fading over the outer fifth of the contact ellipse.
    rim = np.hypot((xm - kx) / p.contact_axes[0], (ym - ky) / p.contact_axes[1])
    pressure = _smoothstep((1.0 - rim) / 0.22) * fg
    # Ridge thickness: ridges thin out where the pressure falls.
    wet = fields.smooth_noise(rng, (SIZE, SIZE), 7).astype(np.float32)
    level = p.threshold + 0.6 * (1.0 - pressure) - p.mottle * wet
    ink = _smoothstep((ridge - level) / 0.5 + 0.5)
    # Sweat or pressure fills the valleys of the wettest patches.
    ink = np.maximum(ink, p.smudge * _smoothstep((wet - 1.0) / 0.8))
    # Dry skin: ridges break into fragments and pores.
    grain = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)).astype(np.float32), 1.6)
    grain /= float(grain.std()) or 1.0
    blotch = fields.smooth_noise(rng, (SIZE, SIZE), 14).astype(np.float32)
    breaks = _smoothstep((grain + 0.8 * blotch - (3.0 - 2.5 * p.dryness)) / 0.6)
    ink = ink * (1.0 - breaks) * pressure
    for _ in range(p.scratches):
        ink *= _scratch(rng)
    ink = ndimage.gaussian_filter(ink, p.blur)
    shade = 8.0 * fields.smooth_noise(rng, (SIZE, SIZE), 3)
    img = p.background + shade - p.contrast * ink
    img += rng.normal(0.0, p.noise, (SIZE, SIZE))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _scratch(rng: np.random.Generator) -> np.ndarray:
    """A multiplicative mask with one thin, slightly curved light streak."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(-0.35, 0.35) * SIZE
    bend = rng.normal(0, 2e-4)
    u = (xx - SIZE / 2) * np.cos(angle) + (yy - SIZE / 2) * np.sin(angle)
    v = -(xx - SIZE / 2) * np.sin(angle) + (yy - SIZE / 2) * np.cos(angle) - offset
    dist = np.abs(v - bend * u * u)
    return 1.0 - 0.85 * np.exp(-0.5 * (dist / rng.uniform(0.8, 1.8)) ** 2)


def impression_rng(identity: int, position: int, impression: int) -> np.random.Generator:
    """The random stream of one impression (independent of the master's)."""
    seq = np.random.SeedSequence([IMPRESSION_STREAM, int(identity), int(position), int(impression)])
    return np.random.default_rng(seq)
