"""Fixed-length finger vectors for the first stage of a 1:N search (pure numpy).

A template's minutiae are turned into a **bag of local pair words**: for every ordered pair of
minutiae (i, j) closer than ``RADIUS`` pixels, the triple

* ``d``     - their distance,
* ``alpha`` - the direction of the segment i -> j relative to the direction of i,
* ``beta``  - the direction of j relative to the direction of i,

is invariant to the rotation and translation of the print and changes little under skin
distortion (it is local).  Each triple is quantised on two grids offset by half a cell (a cheap
soft assignment) and counted; the histogram is square-rooted (Hellinger), centred on
the average histogram of unrelated fingers and stripped of its ``DISCOUNT`` main principal
directions (the ridge-flow structure that fingers of one pattern class share and that would
otherwise count as similarity), then normalised.  Mean and directions come from a fixed,
deterministic reference sample of template-level synthetic fingers
(:mod:`gateway.matcher.synthetic`), computed once per process.

For storage and speed the centred histogram is reduced to ``BITS`` sign bits of fixed random
projections (SimHash): the fraction of equal bits of two codes estimates the angle between the
vectors, and comparing a probe with a whole gallery is an XOR and a popcount over packed uint64
words.  The first ``PREFIX_BITS`` bits are a code of their own (independent projections): a
search scans the whole gallery with them, then re-ranks the best few thousand subjects with all
``BITS`` (the estimate's noise falls with the number of bits).

``codes(minutiae, count)`` works on padded batches (B, M, 5); ``code(template)`` on one
:class:`gateway.matcher.Template`; ``similarity(a, b)`` maps Hamming distances to [-1, 1].
"""

from __future__ import annotations

import numpy as np

RADIUS = 96.0  # pixels at 500 ppi
D_BIN = 16.0
A_BINS = 12  # alpha cells over 2 pi
B_BINS = 12  # beta cells over 2 pi
MAX_USED = 64  # minutiae used per finger (highest quality first)
D_CELLS = int(RADIUS // D_BIN) + 1
GRID = D_CELLS * A_BINS * B_BINS
FEATURES = 2 * GRID  # two offset grids
BITS = 2048
BYTES = BITS // 8
PREFIX_BITS = 512  # the first bits: the code the whole gallery is scanned with
PREFIX_BYTES = PREFIX_BITS // 8
_SEED = 0x5EC7_0001

_rng = np.random.default_rng(_SEED)
#: The fixed projection matrix (FEATURES x BITS) of the sign codes.
PROJECTION = _rng.standard_normal((FEATURES, BITS)).astype(np.float32)
DISCOUNT = 8  # principal directions of the reference sample removed
REFERENCE = 3000  # fingers in the reference sample
_BACKGROUND = None


def _background() -> tuple[np.ndarray, np.ndarray]:
    """Mean (FEATURES,) and main principal directions (FEATURES, DISCOUNT) of the histograms of
    a fixed reference sample of unrelated synthetic fingers (built once per process)."""
    global _BACKGROUND
    if _BACKGROUND is None:
        from gateway.synth import templates as synthetic

        ids = np.arange(REFERENCE) + 900_000_000
        b = synthetic.impressions(ids, np.arange(REFERENCE) % 10 + 1, 0)
        h = histograms(b.minutiae, b.count).astype(np.float64)
        mean = h.mean(0)
        _BACKGROUND = (mean.astype(np.float32), _principal(h - mean, DISCOUNT))
    return _BACKGROUND


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product; small ones avoid BLAS, whose threads cost far more than the product on
    a busy machine.  A few rows against the projection (2016 x 2048) is not small: BLAS does
    it 3-5 times faster than einsum even on one thread."""
    if a.shape[0] < 64 and a.shape[1] * b.shape[1] < 1_000_000:
        return np.einsum("ij,jk->ik", a, b)
    return a @ b


def _principal(x: np.ndarray, k: int) -> np.ndarray:
    """The k main principal directions (columns) of centred rows ``x``: subspace iteration
    (a few products with ``x``; far cheaper than a full eigendecomposition)."""
    rng = np.random.default_rng(_SEED + 1)
    q = np.linalg.qr(rng.standard_normal((x.shape[1], 2 * k)))[0]
    for _ in range(8):
        q = np.linalg.qr(x.T @ (x @ q))[0]
    small = (x @ q).T @ (x @ q)
    w, v = np.linalg.eigh(small)
    return (q @ v[:, ::-1][:, :k]).astype(np.float32)


def histograms(minutiae: np.ndarray, count: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Square-rooted pair-word histograms (B, FEATURES) float32 of a padded batch.

    ``minutiae`` is (B, M, 5) (x, y, theta, type, quality), rows past ``count[b]`` ignored; the
    ``MAX_USED`` best-quality minutiae of each finger are used.
    """
    minutiae = np.asarray(minutiae, np.float32)
    count = np.asarray(count)
    b = minutiae.shape[0]
    out = np.zeros((b, FEATURES), np.float32)
    for s in range(0, b, chunk):
        out[s : s + chunk] = _hist_chunk(minutiae[s : s + chunk], count[s : s + chunk])
    return out


def _hist_chunk(m: np.ndarray, count: np.ndarray) -> np.ndarray:
    b, mm = m.shape[:2]
    valid = np.arange(mm)[None, :] < count[:, None]
    if mm > MAX_USED:
        q = np.where(valid, m[:, :, 4], -1.0)
        order = np.argsort(-q, axis=1, kind="stable")[:, :MAX_USED]
        m = np.take_along_axis(m, order[:, :, None], 1)
        valid = np.take_along_axis(valid, order, 1)
        mm = MAX_USED
    x, y, t = m[:, :, 0], m[:, :, 1], m[:, :, 2]
    dx = x[:, None, :] - x[:, :, None]  # (b, i, j): j - i
    dy = y[:, None, :] - y[:, :, None]
    d2 = dx * dx + dy * dy
    ok = valid[:, :, None] & valid[:, None, :] & (d2 < RADIUS * RADIUS) & (d2 > 0)
    fb, fi, fj = np.nonzero(ok)
    pdx, pdy = dx[fb, fi, fj], dy[fb, fi, fj]
    ti, tj = t[fb, fi], t[fb, fj]
    d = np.sqrt(pdx * pdx + pdy * pdy)
    two_pi = np.float32(2 * np.pi)
    alpha = (np.arctan2(pdy, pdx) - ti) % two_pi
    beta = (tj - ti) % two_pi
    fd = d / D_BIN
    fa = alpha / (two_pi / A_BINS)
    fbt = beta / (two_pi / B_BINS)
    hist = np.zeros(b * FEATURES, np.float32)
    for grid, off in ((0, 0.0), (1, 0.5)):
        cd = np.minimum(np.floor(fd + off).astype(np.int64), D_CELLS - 1)
        ca = np.floor(fa + off).astype(np.int64) % A_BINS
        cb = np.floor(fbt + off).astype(np.int64) % B_BINS
        idx = fb * FEATURES + grid * GRID + (cd * A_BINS + ca) * B_BINS + cb
        hist += np.bincount(idx, minlength=b * FEATURES).astype(np.float32)
    return np.sqrt(hist.reshape(b, FEATURES))


def background() -> tuple[np.ndarray, np.ndarray]:
    """The (mean, basis) pair the vectors are centred on (see the module documentation)."""
    return _background()


def embed(minutiae: np.ndarray, count: np.ndarray, background=None) -> np.ndarray:
    """Centred, unit-length pair-word vectors (B, FEATURES) float32; ``background`` is a
    (mean, basis) pair saved with a gallery (default: :func:`background`)."""
    mean, basis = _background() if background is None else background
    h = histograms(minutiae, count) - mean
    h -= _mm(_mm(h, basis), basis.T)
    n = np.linalg.norm(h, axis=1, keepdims=True)
    return h / np.maximum(n, 1e-6)


def codes(minutiae: np.ndarray, count: np.ndarray, background=None) -> np.ndarray:
    """Packed sign codes (B, BYTES) uint8 of a padded batch of fingers."""
    e = embed(minutiae, count, background)
    return np.packbits(_mm(e, PROJECTION) > 0, axis=1)


def code(template, background=None) -> np.ndarray:
    """The packed code (BYTES,) uint8 of one template (anything with ``.minutiae`` (n, 5))."""
    return code_batch([template], background)[0]


def code_batch(templates, background=None) -> np.ndarray:
    """Packed codes (k, BYTES) uint8 of several templates, computed as one batch."""
    ms = [np.asarray(t.minutiae, np.float32).reshape(-1, 5) for t in templates]
    width = max([1] + [m.shape[0] for m in ms])
    pad = np.zeros((len(ms), width, 5), np.float32)
    for i, m in enumerate(ms):
        pad[i, : m.shape[0]] = m
    return codes(pad, np.array([m.shape[0] for m in ms], np.int64), background)


def similarity(hamming, bits: int = BITS) -> np.ndarray:
    """Cosine estimate in [-1, 1] from a Hamming distance between two codes of ``bits``."""
    return np.cos(np.pi * np.asarray(hamming, np.float32) / bits)


def hamming(gallery: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Hamming distances between ``probe`` (..., BYTES) uint8 and ``gallery`` (N, ..., BYTES),
    broadcast over the leading axes; returns (N, ...) int."""
    g = np.ascontiguousarray(gallery).view(np.uint64)
    p = np.ascontiguousarray(probe).view(np.uint64)
    return np.bitwise_count(g ^ p).sum(-1, dtype=np.int32)
