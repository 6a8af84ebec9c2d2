"""Ridge growth: iterative oriented Gabor filtering of random noise (SFinGe style).

The pattern is grown at half resolution (a 9 px ridge period becomes 4.5 px, well above the
Nyquist limit) where one iteration costs one forward FFT and one inverse FFT per filter of a bank
of orientations x periods; the outputs are blended per pixel by the local orientation and period
(bilinear weights over the bank).  Between iterations the pattern is normalised and saturated,
which turns it into near-binary ridges; minutiae appear where ridges grown from different parts
of the random seed meet.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

N_ORIENT = 12
N_FREQ = 2
ANGULAR_BANDWIDTH = 0.035
RADIAL_BANDWIDTH = 0.16
GAIN = 4.0
SHARPNESS = 3.0


def _bank_weights(values: np.ndarray, centres: np.ndarray, circular: bool) -> list[np.ndarray]:
    """Per-pixel linear interpolation weights of ``values`` over the sorted bin ``centres``."""
    n = len(centres)
    if circular:
        pos = values / (np.pi / n)
        lo = np.floor(pos).astype(int)
        frac = (pos - lo).astype(np.float32)
        lo %= n
        hi = (lo + 1) % n
    elif n == 1:
        return [np.ones(values.shape, np.float32)]
    else:
        pos = np.interp(values, centres, np.arange(n))
        lo = np.minimum(np.floor(pos).astype(int), n - 2)
        frac = (pos - lo).astype(np.float32)
        hi = lo + 1
    out = []
    for k in range(n):
        w = np.where(lo == k, 1 - frac, 0).astype(np.float32) + np.where(hi == k, frac, 0)
        out.append(w)
    return out


def grow_ridges(
    theta: np.ndarray,
    freq: np.ndarray,
    rng: np.random.Generator,
    *,
    iterations: int = 8,
    seeds: float = 0.004,
) -> np.ndarray:
    """Grow a ridge pattern following ``theta`` (ridge direction, radians mod pi, y up) and ``freq``
    (cycles per pixel of this grid).  Returns floats in [-1, 1]: +1 on ridges (dark), -1 in valleys.
    """
    h, w = theta.shape
    fy = sfft.fftfreq(h)[:, None].astype(np.float32)
    fx = sfft.rfftfreq(w)[None, :].astype(np.float32)
    f_lo, f_hi = float(freq.min()), float(freq.max())
    f_centres = (
        np.array([0.5 * (f_lo + f_hi)]) if f_hi - f_lo < 1e-3 else np.linspace(f_lo, f_hi, N_FREQ)
    )
    o_centres = np.arange(N_ORIENT) * (np.pi / N_ORIENT)
    w_orient = _bank_weights(theta, o_centres, circular=True)
    w_freq = _bank_weights(freq, f_centres, circular=False)
    bank = []
    for k, phi in enumerate(o_centres + np.pi / 2):  # ridge normal direction
        # Normal in array coordinates (x right, y down).
        nx, ny = np.cos(phi), -np.sin(phi)
        proj_r = np.abs(fx * nx + fy * ny)
        proj_t = fx * ny - fy * nx
        angular = np.exp(-(proj_t**2) / (2 * ANGULAR_BANDWIDTH**2))
        for j, f in enumerate(f_centres):
            weight = (w_orient[k] * w_freq[j]).ravel()
            where = np.flatnonzero(weight)
            if not where.size:
                continue
            sigma_r = RADIAL_BANDWIDTH * f
            transfer = np.exp(-((proj_r - f) ** 2) / (2 * sigma_r**2)) * angular
            bank.append((transfer.astype(np.float32), where, weight[where]))
    img = np.zeros((h, w), np.float32)
    n_seeds = max(1, int(seeds * h * w))
    img[rng.integers(0, h, n_seeds), rng.integers(0, w, n_seeds)] = rng.choice(
        np.array([-1.0, 1.0], np.float32), n_seeds
    )
    out = np.empty(h * w, np.float32)
    for _ in range(iterations):
        spec = sfft.rfft2(img)
        out.fill(0.0)
        for transfer, where, weight in bank:
            filtered = sfft.irfft2(spec * transfer, s=(h, w)).ravel()
            out[where] += weight * filtered[where]
        rms = float(np.sqrt(np.mean(out * out))) or 1.0
        img = np.clip(out * (GAIN / rms), -1.0, 1.0).reshape(h, w)  # type: ignore[assignment]
    return img


def upsample(pattern: np.ndarray, factor: int = 2) -> np.ndarray:
    """Cubic-spline upsampling of a half-resolution pattern, re-saturated to [-1, 1]."""
    up = ndimage.zoom(pattern.astype(np.float32), factor, order=3, prefilter=True)
    return np.tanh(SHARPNESS * up)
