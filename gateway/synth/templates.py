"""Template-level synthetic fingerprints: minutiae sets without images, for galleries at scale.

Rendering and extracting a million images is out of reach on a small machine, so the 1:N
benchmarks populate their galleries with minutiae sets drawn directly from a statistical model:

* a **master finger** per ``(subject, position)``: a pattern class (arch, tented arch, left or
  right loop, whorl, with roughly the frequencies of large tenprint files), singular points, an
  orientation field from the zero-pole model (Sherlock and Monro) over an elliptical,
  finger-shaped region, and 40-72 minutiae on a jittered grid inside it, each pointing along the
  local ridge orientation (either sense), half of them ridge endings, with a quality;
* an **impression** per ``(subject, position, impression)``: a rigid rotation (up to 20 degrees)
  and translation, a smooth elastic displacement field, per-minutia position and direction
  noise, missed minutiae, spurious ones, type flips and partial contact (the part of the finger
  outside a shifted, shrunken contact ellipse or the 416 x 416 image is lost).  Impression 0 is
  the careful enrolment capture (small rotation and loss); the others vary more.  With
  ``difficulty="fvc"`` every impression is a plain capture as hard as FVC2000 DB1's (a larger
  placement change, Cappelli's ring distortion, more loss; tuned with
  ``benchmarks/synth_hardness.py`` to the genuine scores of the image-level "fvc" preset).

Everything is vectorised over a batch of fingers and deterministic per ``(subject, position,
impression)``: the random numbers come from a counter-based hash (splitmix64) of those keys, so a
finger does not depend on the batch it was generated in.

``impressions(subjects, positions, impression)`` returns a :class:`Batch` (padded minutiae
arrays, counts and contact masks); :func:`template` turns one finger into a
:class:`gateway.matcher.Template`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 416  # image side in pixels at 500 ppi (the same canvas as gateway.synth)
HOP = 16  # block size of the template's block mask
MAX_MINUTIAE = 96
CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")
CLASS_FREQUENCIES = (0.04, 0.03, 0.34, 0.31, 0.28)
ENDING_FRACTION = 0.5

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z) -> np.ndarray:
    """splitmix64 finaliser (vectorised, uint64 wrap-around)."""
    z = np.asarray(z, np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _keys(subjects, positions, impression: int | None) -> np.ndarray:
    s = np.asarray(subjects, np.uint64)
    p = np.asarray(positions, np.uint64)
    k = _mix(_mix(s) ^ (p * np.uint64(0x632BE59BD9B4E019)))
    if impression is not None:
        imp = np.uint64((int(impression) + 1) * 0xD6E8FEB86659FD93 % (1 << 64))
        k = _mix(k ^ _mix(imp))
    return k


class _Stream:
    """Counter-based uniform / normal draws for a batch of keys."""

    def __init__(self, keys: np.ndarray, stream: int):
        self.keys = _mix(keys ^ _mix(np.uint64(stream + 1)))
        self.counter = 0

    def uniform(self, count: int | None = None) -> np.ndarray:
        n = 1 if count is None else count
        ctr = np.arange(self.counter, self.counter + n, dtype=np.uint64)
        self.counter += n
        with np.errstate(over="ignore"):
            bits = _mix(self.keys[:, None] + ctr[None, :] * np.uint64(0x9E3779B97F4A7C15))
        u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
        return u[:, 0] if count is None else u

    def normal(self, count: int | None = None) -> np.ndarray:
        n = 1 if count is None else count
        u1, u2 = self.uniform(n), self.uniform(n)
        z = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
        return z[:, 0] if count is None else z


@dataclass
class Batch:
    """Minutiae of a batch of B synthetic impressions.

    ``minutiae`` (B, MAX_MINUTIAE, 5) float64 rows x, y, theta, type, quality (rows past
    ``count`` are zero), ``count`` (B,) int, ``block_mask`` (B, rows, cols) bool and
    ``pattern`` (B,) int index into :data:`CLASSES`.
    """

    minutiae: np.ndarray
    count: np.ndarray
    block_mask: np.ndarray
    pattern: np.ndarray

    def __len__(self) -> int:
        return int(self.count.shape[0])

    def finger(self, i: int) -> np.ndarray:
        """The (n, 5) minutiae of finger ``i``."""
        return self.minutiae[i, : self.count[i]]


# -- the master finger ------------------------------------------------------------------------
def _orientation(px, py, pattern, sp, region):
    """Ridge orientation (mod pi) at points (B, K) from the zero-pole model."""
    cx, cy, _ax, _ay = region
    z = px + 1j * py
    theta = np.zeros(px.shape)
    cores = sp["cores"]  # (B, 2) complex, nan when absent
    deltas = sp["deltas"]
    for k in range(2):
        c = cores[:, k : k + 1]
        d = deltas[:, k : k + 1]
        theta += np.where(np.isnan(c), 0.0, 0.5 * np.angle(np.nan_to_num(z - c)))
        theta -= np.where(np.isnan(d), 0.0, 0.5 * np.angle(np.nan_to_num(z - d)))
    # arches: a bump of horizontal ridges, higher in the middle
    arch = (pattern == 0)[:, None]
    s = 90.0
    dx = px - cx[:, None]
    bump = np.arctan(-sp["amp"][:, None] * dx / s * np.exp(-(dx**2) / (2 * s**2)))
    bump = bump * np.clip((cy[:, None] + 120 - py) / 200, 0, 1)
    theta = np.where(arch, bump, theta + sp["tilt"][:, None])
    return theta % np.pi


def _master(subjects, positions):
    keys = _keys(subjects, positions, None)
    b = keys.size
    r = _Stream(keys, 1)
    cx = SIZE / 2 + 12 * r.normal()
    cy = SIZE / 2 + 12 * r.normal()
    ax = 150 + 30 * r.uniform()
    ay = 178 + 26 * r.uniform()
    u = r.uniform()
    pattern = np.searchsorted(np.cumsum(CLASS_FREQUENCIES), u * 0.999999)
    cores = np.full((b, 2), np.nan + 0j)
    deltas = np.full((b, 2), np.nan + 0j)
    j = r.normal(8)
    core = (cx + 18 * j[:, 0]) + 1j * (cy - 35 + 18 * j[:, 1])
    side = np.where(pattern == 2, 1.0, -1.0)  # left loop: delta on the right of the image
    loop = (pattern == 2) | (pattern == 3)
    cores[loop, 0] = core[loop]
    dl = core + side * (95 + 35 * r.uniform()) + 1j * (115 + 35 * r.uniform())
    deltas[loop, 0] = dl[loop]
    tent = pattern == 1
    cores[tent, 0] = core[tent]
    deltas[tent, 0] = (core + 6 * j[:, 2] + 1j * (55 + 25 * r.uniform()))[tent]
    whorl = pattern == 4
    sep = 14 + 22 * r.uniform()
    ang = np.pi / 2 + 0.6 * j[:, 3]
    off = sep * np.exp(1j * ang)
    cores[whorl, 0] = (core + off / 2)[whorl]
    cores[whorl, 1] = (core - off / 2)[whorl]
    deltas[whorl, 0] = (core - 110 - 25 * r.uniform() + 1j * (110 + 30 * r.uniform()))[whorl]
    deltas[whorl, 1] = (core + 110 + 25 * r.uniform() + 1j * (110 + 30 * r.uniform()))[whorl]
    sp = {"cores": cores, "deltas": deltas, "amp": 0.6 + 1.2 * r.uniform(), "tilt": 0.12 * j[:, 4]}

    # minutiae on a jittered grid of 22 px cells inside the ellipse, random priorities
    step = 22.0
    g = np.arange(step / 2, SIZE, step)
    gx, gy = np.meshgrid(g, g)
    gx, gy = gx.ravel(), gy.ravel()
    ncell = gx.size
    jx = (r.uniform(ncell) - 0.5) * step * 0.8
    jy = (r.uniform(ncell) - 0.5) * step * 0.8
    px = gx[None, :] + jx
    py = gy[None, :] + jy
    ell = ((px - cx[:, None]) / ax[:, None]) ** 2 + ((py - cy[:, None]) / ay[:, None]) ** 2
    # slightly denser near the singular points (more ridge turns), never outside the ellipse
    prio = r.uniform(ncell)
    prio = np.where(ell < 0.92, prio, -1.0)
    n = (40 + 32 * r.uniform()).astype(int)
    order = np.argsort(-prio, axis=1)[:, :MAX_MINUTIAE]
    px = np.take_along_axis(px, order, 1)
    py = np.take_along_axis(py, order, 1)
    ell = np.take_along_axis(ell, order, 1)
    ok = (np.arange(MAX_MINUTIAE)[None, :] < n[:, None]) & (ell < 0.92)
    region = (cx, cy, ax, ay)
    ori = _orientation(px, py, pattern, sp, region)
    flip = r.uniform(MAX_MINUTIAE) < 0.5
    theta = (ori + np.pi * flip) % (2 * np.pi)
    kind = np.where(r.uniform(MAX_MINUTIAE) < ENDING_FRACTION, 1.0, 2.0)
    qual = np.clip(0.62 + 0.3 * r.uniform(MAX_MINUTIAE) - 0.3 * np.clip(ell - 0.6, 0, 1), 0.05, 1)
    return {
        "x": px,
        "y": py,
        "theta": theta,
        "kind": kind,
        "qual": qual,
        "ok": ok,
        "region": region,
        "pattern": pattern,
        "sp": sp,
    }


# -- impressions ------------------------------------------------------------------------------
#: The difficulty presets (as :data:`gateway.synth.DIFFICULTIES`): "easy" (impression 0 the careful
#: enrolment capture, the others moderate) and "fvc" (every impression a plain capture whose
#: genuine compare scores are as hard as FVC2000 DB1's and as the image-level "fvc" preset's).
DIFFICULTIES = ("easy", "fvc")


@dataclass(frozen=True)
class _Preset:
    rot_sd: float  # degrees
    rot_max: float
    shift_sd: float  # pixels
    wave: float  # amplitude of the elastic plane waves, pixels
    drag: float  # Cappelli ring distortion at the rim: rotation sd (degrees) ...
    drag_shift: float  # ... and translation sd (pixels); 0: none
    jitter: float  # per-minutia position noise, pixels
    angle: float  # per-minutia direction noise, degrees
    flip: float  # type flip probability
    shrink: tuple[float, float]  # contact ellipse scale: low, span
    offset: float  # contact centre offset sd, pixels
    loss: tuple[float, float]  # missed minutiae fraction: low, span
    spurious: tuple[int, int]  # spurious minutiae per print: low, span


_ENROL = _Preset(4, 8, 8, 2.5, 0, 0, 1.8, 7, 0.1, (0.93, 0.07), 10, (0.06, 0.08), (2, 5))
_PLAIN = _Preset(9, 20, 22, 5.0, 0, 0, 1.8, 7, 0.1, (0.72, 0.26), 35, (0.12, 0.16), (4, 8))
# tuned with benchmarks/synth_hardness.py against FVC2000 DB1 set B and the image-level preset
_FVC = _Preset(10, 20, 22, 3.0, 2.2, 4.5, 0.45, 3.5, 0.1, (0.66, 0.32), 35, (0.1, 0.14), (4, 8))


def impressions(subjects, positions, impression: int = 0, difficulty: str = "easy") -> Batch:
    """Impression ``impression`` of finger ``positions[i]`` of ``subjects[i]`` (arrays of ints).

    ``positions`` may be a scalar (the same position for every subject).  ``difficulty`` is
    one of :data:`DIFFICULTIES`; "easy" is the generator as it was before presets existed.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, not {difficulty!r}")
    subjects = np.atleast_1d(np.asarray(subjects, np.int64))
    positions = np.broadcast_to(np.asarray(positions, np.int64), subjects.shape)
    if subjects.size and (subjects.min() < 0 or positions.min() < 1 or positions.max() > 10):
        raise ValueError("subjects must be >= 0 and positions 1-10")
    m = _master(subjects, positions)
    b = subjects.size
    r = _Stream(_keys(subjects, positions, impression), 2)
    pr = _FVC if difficulty == "fvc" else _ENROL if impression == 0 else _PLAIN
    rot_sd, rot_max = np.radians(pr.rot_sd), np.radians(pr.rot_max)
    rot = np.clip(rot_sd * r.normal(), -rot_max, rot_max)
    shift = pr.shift_sd * r.normal(2)
    cx, cy, ax, ay = m["region"]
    x, y = m["x"] - cx[:, None], m["y"] - cy[:, None]
    if pr.drag_shift:
        x, y = _ring_distortion(
            x, y, m["region"], pr, _Stream(_keys(subjects, positions, impression), 3)
        )
    # smooth elastic displacement: three random plane waves of 5-10 px over 250-500 px
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    for _ in range(3):
        w = r.uniform(4)
        k = 2 * np.pi / (250 + 250 * w[:, 0])
        d = 2 * np.pi * w[:, 1]
        amp = pr.wave * (0.5 + w[:, 2])
        phase = 2 * np.pi * w[:, 3]
        arg = k[:, None] * (x * np.cos(d)[:, None] + y * np.sin(d)[:, None]) + phase[:, None]
        dx += amp[:, None] * np.cos(d + 1.3)[:, None] * np.sin(arg)
        dy += amp[:, None] * np.sin(d + 1.3)[:, None] * np.sin(arg)
    kk = MAX_MINUTIAE
    x = x + dx + pr.jitter * r.normal(kk)
    y = y + dy + pr.jitter * r.normal(kk)
    c, s = np.cos(rot)[:, None], np.sin(rot)[:, None]
    nx = c * x - s * y + cx[:, None] + shift[:, 0:1]
    ny = s * x + c * y + cy[:, None] + shift[:, 1:2]
    theta = (m["theta"] + rot[:, None] + np.radians(pr.angle) * r.normal(kk)) % (2 * np.pi)
    kind = np.where(r.uniform(kk) < pr.flip, 3 - m["kind"], m["kind"])
    qual = np.clip(m["qual"] + 0.12 * r.normal(kk), 0.05, 1.0)

    # contact region: the rotated/shifted master ellipse, shrunk and moved for partial captures
    shrink = pr.shrink[0] + pr.shrink[1] * r.uniform()
    off = pr.offset * r.normal(2)
    ccx = cx + shift[:, 0] + off[:, 0]
    ccy = cy + shift[:, 1] + off[:, 1]
    cax, cay = ax * shrink, ay * shrink

    def inside(qx, qy, margin=0.0):
        ux = qx - ccx[:, None]
        uy = qy - ccy[:, None]
        rx = c * ux + s * uy
        ry = -s * ux + c * uy
        e = (rx / cax[:, None]) ** 2 + (ry / cay[:, None]) ** 2
        return (
            (e <= 1) & (qx >= margin) & (qy >= margin) & (qx < SIZE - margin) & (qy < SIZE - margin)
        )

    loss = pr.loss[0] + pr.loss[1] * r.uniform()
    keep = m["ok"] & inside(nx, ny, 8.0) & (r.uniform(kk) >= loss[:, None])

    # spurious minutiae: a few per print, anywhere in the contact region
    ns = 16
    sx = ccx[:, None] + (r.uniform(ns) - 0.5) * 2 * cax[:, None]
    sy = ccy[:, None] + (r.uniform(ns) - 0.5) * 2 * cay[:, None]
    nspur = np.floor(pr.spurious[0] + pr.spurious[1] * r.uniform()).astype(int)
    skeep = inside(sx, sy, 8.0) & (np.arange(ns)[None, :] < nspur[:, None])
    sth = 2 * np.pi * r.uniform(ns)
    skind = np.where(r.uniform(ns) < 0.5, 1.0, 2.0)
    squal = 0.1 + 0.4 * r.uniform(ns)

    allx = np.concatenate([nx, sx], 1)
    ally = np.concatenate([ny, sy], 1)
    allt = np.concatenate([theta, sth], 1)
    allk = np.concatenate([kind, skind], 1)
    allq = np.concatenate([qual, squal], 1)
    allok = np.concatenate([keep, skeep], 1)
    # order: kept first, by decreasing quality; truncate to MAX_MINUTIAE
    prio = np.where(allok, allq, -1.0)
    order = np.argsort(-prio, axis=1, kind="stable")[:, :MAX_MINUTIAE]
    count = np.minimum(allok.sum(1), MAX_MINUTIAE)
    out = np.zeros((b, MAX_MINUTIAE, 5))
    for col, arr in enumerate((allx, ally, allt, allk, allq)):
        out[:, :, col] = np.take_along_axis(arr, order, 1)
    out[:, :, 0] = np.clip(np.rint(out[:, :, 0]), 0, SIZE - 1)
    out[:, :, 1] = np.clip(np.rint(out[:, :, 1]), 0, SIZE - 1)
    out[np.arange(MAX_MINUTIAE)[None, :] >= count[:, None]] = 0
    # block mask of the contact region (block (i, j) centred on pixel (i*HOP, j*HOP))
    nb = -(-SIZE // HOP) + 1
    by, bx = np.meshgrid(np.arange(nb) * HOP, np.arange(nb) * HOP, indexing="ij")
    bm = inside(
        np.broadcast_to(bx.ravel(), (b, nb * nb)).astype(float),
        np.broadcast_to(by.ravel(), (b, nb * nb)).astype(float),
    ).reshape(b, nb, nb)
    return Batch(out, count.astype(np.int64), bm, m["pattern"])


def _ring_distortion(x, y, region, pr: _Preset, r: _Stream):
    """Cappelli's plastic distortion (Cappelli, Maio, Maltoni 2001): no displacement in a rigid
    centre (30 % of the finger's ellipse around a random contact point), a rigid drag (a small
    rotation and translation) of the border, blended over the ring between by a smoothstep.
    ``x``, ``y`` are relative to the finger centre; returns the displaced coordinates."""
    _cx, _cy, ax, ay = region
    j = r.normal(5)
    kx = (0.15 * ax * j[:, 0])[:, None]
    ky = (0.15 * ay * j[:, 1])[:, None]
    rx, ry = x - kx, y - ky
    rho = np.sqrt((rx / ax[:, None]) ** 2 + (ry / ay[:, None]) ** 2)
    t = np.clip((rho - 0.3) / 0.6, 0.0, 1.0)
    w = t * t * (3 - 2 * t)
    a = (np.radians(pr.drag) * j[:, 2])[:, None]
    tx = (pr.drag_shift * j[:, 3])[:, None]
    ty = (pr.drag_shift * j[:, 4])[:, None]
    x = x + w * ((np.cos(a) - 1) * rx - np.sin(a) * ry + tx)
    y = y + w * (np.sin(a) * rx + (np.cos(a) - 1) * ry + ty)
    return x, y


def template(batch: Batch, i: int):
    """Finger ``i`` of a batch as a :class:`gateway.matcher.Template` (416 x 416, 500 ppi)."""
    from gateway.matcher.template import Template

    return Template(SIZE, SIZE, batch.finger(i), batch.block_mask[i], 500.0)


def tenprint(subject: int, impression: int = 0, difficulty: str = "easy") -> dict:
    """``{position: Template}`` for the ten fingers of one synthetic subject."""
    b = impressions(np.full(10, subject), np.arange(1, 11), impression, difficulty)
    return {p: template(b, p - 1) for p in range(1, 11)}


def subject_id(seed: int, index: int) -> str:
    """The subject id of synthetic subject ``index`` of a gallery built with ``seed``."""
    return f"SYN-{seed}-{index:07d}"


def identity(seed: int, index: int) -> int:
    """The generator identity of synthetic subject ``index`` of seed ``seed``."""
    return int(seed) * 100_000_000 + int(index)


def enrolment_parts(
    seed: int, start: int, stop: int, background=None, difficulty: str = "easy"
) -> tuple:
    """The gallery parts of synthetic subjects ``start``..``stop - 1`` (impression 0, ten fingers):
    ``(subject_ids, positions, codes, slots, counts, blobs)`` for
    :meth:`gateway.matcher.gallery.Gallery.add_batch` (picklable, for worker processes)."""
    from gateway.matcher import gallery as _gallery
    from gateway.matcher import vector

    idx = np.repeat(np.arange(start, stop), 10)
    pos = np.tile(np.arange(1, 11), stop - start)
    b = impressions(identity(seed, 0) + idx, pos, 0, difficulty)
    slots = np.zeros((len(b), _gallery.SLOT, 3), np.int16)
    counts = np.zeros(len(b), np.int64)
    quantised = np.zeros_like(b.minutiae)
    blobs = []
    for i in range(len(b)):
        t = template(b, i)
        slots[i], counts[i] = _gallery._slot(t.minutiae)
        quantised[i, : len(t)] = t.minutiae  # the codes see what a probe template sees
        blobs.append(t.to_bytes())
    cds = vector.codes(quantised, b.count, background)
    ids = [subject_id(seed, int(i)) for i in idx]
    return ids, pos, cds, slots, counts, blobs


def populate(gallery, count: int, seed: int = 0, start: int = 0, progress=None, batch=2000):
    """Enrol ``count`` synthetic subjects (ten fingers, impression 0) into ``gallery``.

    Subject ``i`` (from ``start``) gets the id :func:`subject_id` ``(seed, i)`` and the fingers of
    identity :func:`identity` ``(seed, i)``.  ``progress(done, total)`` is called per batch.
    """
    per = max(1, batch // 10)
    done = 0
    for s in range(start, start + count, per):
        e = min(start + count, s + per)
        gallery.add_batch(*enrolment_parts(seed, s, e, gallery.background))
        done += e - s
        if progress is not None:
            progress(done, count)
    return gallery


def image_tenprint(
    identity: int, impression: int = 0, positions=range(1, 11), difficulty: str = "easy"
) -> dict:
    """``{position: Template}`` of image-level synthetic fingers: rendered by
    :func:`gateway.synth.finger` and extracted by :func:`gateway.matcher.extract` (slow: about
    a second a finger; for validating the template-level model on a small subset).  Raises
    ImportError when :mod:`gateway.synth` is not available."""
    from gateway import synth
    from gateway.matcher import extract

    return {p: extract(synth.finger(int(identity), p, impression, difficulty)) for p in positions}
