"""The fast paths of the extractor against plain reference implementations.

``features.thin`` visits only the pixels next to recent removals once few pixels change, and
``features.border_distance`` measures the distance to the print's border at a few pixels from
the block mask: both must give exactly what the textbook versions give.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gateway.matcher import features


def _reference_thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning, every pixel tested in every sub-iteration (padded uint8 result)."""
    b = np.pad(binary.astype(np.uint8), 1)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # N, NE, E, SE, S, SW, W, NW
    count = bits.sum(1)
    trans = ((bits == 0) & (np.roll(bits, -1, axis=1) == 1)).sum(1)
    n, e, s, w = bits[:, 0], bits[:, 2], bits[:, 4], bits[:, 6]
    base = (count >= 2) & (count <= 6) & (trans == 1)
    luts = (
        base & (n * e * s == 0) & (e * s * w == 0),
        base & (n * e * w == 0) & (n * s * w == 0),
    )
    shifts = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    h, wd = binary.shape
    for _ in range(60):
        changed = False
        for lut in luts:
            code = np.zeros((h, wd), np.int64)
            for k, (dy, dx) in enumerate(shifts):
                code |= b[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + wd].astype(np.int64) << k
            kill = lut[code] & (b[1:-1, 1:-1] == 1)
            if kill.any():
                b[1:-1, 1:-1][kill] = 0
                changed = True
        if not changed:
            break
    return b


def _blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    seeds = rng.random((h, w)) < rng.uniform(0.02, 0.5)
    return ndimage.binary_dilation(seeds, iterations=int(rng.integers(0, 4)))


def test_thin_matches_the_reference_on_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(3, 70, 2))
        binary = _blobs(rng, h, w)
        if rng.random() < 0.3:  # shapes touching the image edge
            binary[0, :] = True
            binary[:, -1] = True
        assert np.array_equal(features.thin(binary), _reference_thin(binary))


def test_thin_matches_the_reference_on_ridges():
    # wide, long ridges: many sub-iterations, the later ones sparse
    yy, xx = np.mgrid[0:180, 0:200]
    ridges = np.sin(0.12 * xx + 0.004 * (yy - 90) ** 2) > -0.3
    ridges &= (yy - 90) ** 2 / 80**2 + (xx - 100) ** 2 / 90**2 < 1
    assert np.array_equal(features.thin(ridges), _reference_thin(ridges))
    empty = np.zeros((10, 12), bool)
    assert not features.thin(empty).any()


@pytest.mark.parametrize("shape", [(300, 300), (364, 256), (97, 130), (64, 64)])
def test_border_distance_is_the_distance_transform(shape):
    rng = np.random.default_rng(shape[0])
    h, w = shape
    rows, cols = -(-h // features.HOP) + 1, -(-w // features.HOP) + 1
    for _ in range(5):
        block_mask = ndimage.binary_opening(rng.random((rows, cols)) < 0.75)
        mask = features.pixel_mask(block_mask, (h, w))
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        ys, xs = np.nonzero(np.ones((h, w), bool))
        limit = float(rng.uniform(5, 40))
        got = features.border_distance(block_mask, (h, w), ys, xs, limit).reshape(h, w)
        near = edt <= limit
        assert np.array_equal(got[near], edt[near])
        assert (got[~near] > limit).all()
    # a limit beyond the image is exact everywhere, and sizes nothing by itself
    got = features.border_distance(block_mask, (h, w), ys, xs, 1e12).reshape(h, w)
    assert np.array_equal(got, edt)
    assert features.border_distance(block_mask, (h, w), ys[:0], xs[:0], 10.0).shape == (0,)


def test_extraction_is_deterministic_and_leaves_its_input_alone():
    from gateway.synth import finger

    pixels = finger(1, 1, 1).astype(np.float32)
    before = pixels.copy()
    a = features.extract_features(pixels)
    b = features.extract_features(pixels)
    assert np.array_equal(pixels, before)
    assert len(a.minutiae) > 10
    assert np.array_equal(a.minutiae, b.minutiae)
    assert np.array_equal(a.block_mask, b.block_mask) and a.period == b.period


def _mean_removed(pixels: np.ndarray) -> np.ndarray:
    img = pixels.astype(np.float32)
    return ndimage.uniform_filter(img, 15, mode="reflect") - img


def test_enhance_near_the_print_equals_enhance_everywhere():
    # the extraction synthesises only the blocks whose windows reach the print (plus the reach
    # of the minutia structure tensors): there the enhanced image is exactly the full one
    from gateway.synth import finger

    for seed in range(3):
        pixels = finger(seed + 1, 1 + seed % 3, 1)
        img = _mean_removed(pixels)
        full = features.enhance(img)
        part = features.enhance(img, everywhere=False)
        for a, b in zip(full[1:], part[1:], strict=True):
            assert np.array_equal(a, b)
        mask = features.pixel_mask(full[1], img.shape)
        reach = features._reach(full[4])
        near = ndimage.binary_dilation(mask, np.ones((2 * reach + 1,) * 2, bool))
        assert near.any() and not near.all()
        assert np.array_equal(full[0][near], part[0][near])


def test_second_pass_near_the_first_print_equals_it_everywhere():
    # the extraction's second pass synthesises near the first pass's print only, and skips the
    # transforms of the first output's windows of zeros: where it is read (within the reach of
    # the first print) it is exactly the second pass computed everywhere
    from gateway.synth import finger

    for seed in range(3):
        img = _mean_removed(finger(seed + 4, 1 + seed % 3, 2))
        first, bmask, _, _, period = features.enhance(img, everywhere=False)
        full = features.enhance(first, angular_bw=features.SECOND_PASS_BW or np.pi / 4)
        part = features.enhance(first, False, features.SECOND_PASS_BW or np.pi / 4, (bmask, period))
        for a, b in zip(full[1:], part[1:], strict=True):
            assert np.array_equal(a, b)
        reach = features._reach(period)
        mask = features.pixel_mask(bmask, img.shape)
        near = ndimage.binary_dilation(mask, np.ones((2 * reach + 1,) * 2, bool))
        assert near.any() and not near.all() and (first[~near] == 0).any()
        assert np.array_equal(full[0][near], part[0][near])


@pytest.mark.parametrize("period", [5.0, 7.3, 9.0, 10.0, 10.4, 12.5, 14.0])
def test_reach_covers_the_structure_tensor_of_every_minutia(period):
    # every pixel of the square of half-side round(1.2 period) + 1 around a pixel more than the
    # border margin from the background lies within ``reach`` (along each axis) of the print
    rng = np.random.default_rng(int(period * 10))
    r = int(round(1.2 * period)) + 1
    reach = features._reach(period)
    for _ in range(5):
        bg = ndimage.binary_dilation(rng.random((120, 120)) < 0.004, iterations=4)
        minutiae = ndimage.distance_transform_edt(~bg) > features.BORDER_MARGIN * period
        used = ndimage.binary_dilation(minutiae, np.ones((2 * r + 1,) * 2, bool))
        near = ndimage.binary_dilation(~bg, np.ones((2 * reach + 1,) * 2, bool))
        assert minutiae.any()
        assert not (used & ~near).any()


def test_fast_helpers_match_their_plain_versions():
    rng = np.random.default_rng(3)
    # gradient at a few pixels
    for shape in ((5, 7), (64, 80), (97, 130)):
        img = (rng.standard_normal(shape) * 50).astype(np.float32)
        gy, gx = np.gradient(img)
        flat = rng.integers(0, img.size, (4, 3, 3))
        ax, ay = features._gradient_at(img, flat)
        assert np.array_equal(ax, gx.reshape(-1)[flat])
        assert np.array_equal(ay, gy.reshape(-1)[flat])
    # pixel mask by runs of blocks
    for h, w in ((300, 300), (97, 130), (64, 64), (40, 33)):
        block_mask = rng.random((-(-h // features.HOP) + 1, -(-w // features.HOP) + 1)) < 0.6
        rows, cols = block_mask.shape
        iy = np.minimum((np.arange(h) + features.HOP // 2) // features.HOP, rows - 1)
        ix = np.minimum((np.arange(w) + features.HOP // 2) // features.HOP, cols - 1)
        assert np.array_equal(features.pixel_mask(block_mask, (h, w)), block_mask[iy][:, ix])
    # filters: the radial part computed at the distinct radii only
    f32 = np.float32
    freq = rng.uniform(1 / 14, 1 / 5, (3, 4))
    normal = rng.uniform(-np.pi / 2, np.pi / 2, (3, 4))
    coh = rng.uniform(0, 1, (3, 4))
    f0 = freq.astype(f32)[..., None, None]
    sig_r = f32(features.RADIAL_SIGMA) * f0 + f32(0.01)
    filt = features._RADIUS - f0
    filt *= filt
    filt *= f32(-0.5) / (sig_r * sig_r)
    np.exp(filt, out=filt)
    dphi = features._PHI - normal.astype(f32)[..., None, None]
    dphi -= np.rint(dphi * f32(1 / np.pi)) * f32(np.pi)
    bw = (features.ANGULAR_BW + (1 - coh) * features.ANGULAR_BW_LOW_COH).astype(f32)
    dphi *= f32(np.pi / 2) / bw[..., None, None]
    ang = np.maximum(np.cos(dphi), 0)
    filt *= ang * ang
    filt[..., 0, 0] = 0
    assert np.array_equal(features._filters(freq, normal, coh), filt)


def test_small_array_helpers_match_scipy():
    rng = np.random.default_rng(11)
    # reflect padding by slices
    for h, w in ((3, 3), (5, 40), (64, 64), (97, 130)):
        img = rng.standard_normal((h, w)).astype(np.float32)
        for pads in ((1, 1, 1, 1), (16, min(31, h - 2), 16, min(20, w - 2)), (h - 1, 1, 2, w - 1)):
            top, bottom, left, right = (max(int(p), 1) for p in pads)
            expect = np.pad(img, ((top, bottom), (left, right)), mode="reflect")
            assert np.array_equal(features._pad_reflect(img, top, bottom, left, right), expect)
    # neighbour codes against the 2-D shifts
    b = np.pad((rng.random((30, 41)) < 0.5).astype(np.uint8), 1)
    shifts = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    code = np.zeros((30, 41), np.uint8)
    for k, (dy, dx) in enumerate(shifts):
        code |= b[1 + dy : 31 + dy, 1 + dx : 42 + dx] << k
    idx = np.flatnonzero(np.pad(np.ones((30, 41), bool), 1))
    assert np.array_equal(features._codes_at(b.reshape(-1), idx, b.shape[1]), code.ravel())
    # several Gaussian filters in one call
    fields = [rng.standard_normal((27, 25)) for _ in range(3)]
    for mode in ("nearest", "reflect"):
        stacked = features._gaussian_stack(fields, 1.5, mode)
        for f, s in zip(fields, stacked, strict=True):
            assert np.array_equal(s, ndimage.gaussian_filter(f, 1.5, mode=mode))
    # block morphology
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 35, 2))
        m = rng.random((h, w)) < rng.random()
        assert np.array_equal(features._open2(m), ndimage.binary_opening(m, np.ones((2, 2), bool)))
        for r in range(4):
            sq = np.ones((2 * r + 1, 2 * r + 1), bool)
            assert np.array_equal(
                features._box(m, r, np.logical_or), ndimage.binary_dilation(m, sq)
            )
            assert np.array_equal(
                features._box(m, r, np.logical_and), ndimage.binary_erosion(m, sq)
            )


def test_disc_gradients_match_np_gradient():
    rng = np.random.default_rng(5)
    for h, w in ((60, 70), (97, 130)):
        img = (rng.standard_normal((h, w)) * 50).astype(np.float32)
        gy, gx = np.gradient(img)
        r = 6
        ys = rng.integers(0, h, 40)
        xs = rng.integers(0, w, 40)
        ys[:5], xs[:5] = (0, h - 1, r, h - 1 - r, h // 2), (w // 2, 0, r + 1, w - 2 - r, w - 1)
        ax, ay, inside = features._disc_gradients(img, xs, ys, r)
        off = np.arange(-r, r + 1)
        yy = ys[:, None, None] + off[None, :, None]
        xx = xs[:, None, None] + off[None, None, :]
        flat = np.where((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w), yy * w + xx, 0)
        assert np.array_equal(ax, gx.reshape(-1)[flat])
        assert np.array_equal(ay, gy.reshape(-1)[flat])
        assert inside is not None
        assert np.array_equal(inside, (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))
        # all squares clear of the edge
        ys, xs = rng.integers(r + 1, h - r - 1, 10), rng.integers(r + 1, w - r - 1, 10)
        ax, ay, inside = features._disc_gradients(img, xs, ys, r)
        assert inside is None
        yy = ys[:, None, None] + off[None, :, None]
        xx = xs[:, None, None] + off[None, None, :]
        assert np.array_equal(ax, gx[yy, xx]) and np.array_equal(ay, gy[yy, xx])


def test_thin_lists_every_skeleton_pixel():
    rng = np.random.default_rng(9)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        skel, ridge = features._thin(_blobs(rng, h, w))
        flat = skel.reshape(-1)
        assert np.all(np.diff(ridge) > 0)
        assert np.array_equal(ridge[flat.view(bool)[ridge]], np.flatnonzero(flat))


def _broken_ridges(seed: int) -> np.ndarray:
    """A dry print's ridges: gently curving parallel ridges (period 9 px) broken by gaps."""
    rng = np.random.default_rng(seed)
    h = w = 256
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = 0.3 + 0.002 * (x - 128)
    ridges = np.cos(2 * np.pi * (x * np.cos(ang) + y * np.sin(ang)) / 9.0) > 0.2
    gaps = ndimage.binary_dilation(rng.random((h, w)) < 0.006, np.ones((6, 6), bool))
    pixels = np.where(ridges & ~gaps, 60.0, 200.0)
    pixels[:20], pixels[-20:], pixels[:, :20], pixels[:, -20:] = 200, 200, 200, 200
    return np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)


def test_a_wider_angular_window_passes_more():
    rng = np.random.default_rng(3)
    freq = rng.uniform(1 / 14, 1 / 5, (3, 4)).astype(np.float32)
    normal = rng.uniform(-np.pi / 2, np.pi / 2, (3, 4)).astype(np.float32)
    coh = rng.uniform(0, 1, (3, 4)).astype(np.float32)
    narrow = features._filters(freq, normal, coh)
    wide = features._filters(freq, normal, coh, np.pi / 4)
    assert np.all(wide >= narrow - 1e-6) and np.any(wide > narrow + 1e-3)


def test_the_second_pass_bridges_broken_ridges(monkeypatch):
    # every gap in these ridges is spurious: the second filtering pass joins more of them
    counts = {}
    for bw in (None, np.pi / 4):
        monkeypatch.setattr(features, "SECOND_PASS_BW", bw)
        counts[bw] = sum(
            len(features.extract_features(_broken_ridges(s)).minutiae) for s in range(6)
        )
    assert counts[np.pi / 4] < counts[None], counts


def test_the_merged_second_pass_adds_only_first_pass_minutiae_in_clean_places(monkeypatch):
    # docs/matcher.md "Session 8": the second pass's minutiae, plus the first pass's that it
    # loses where the first skeleton is clean (SECOND_PASS_KEEP candidates per 100 periods^2)
    from gateway import synth

    pixels = synth.finger(101, 2, 1)
    monkeypatch.setattr(features, "SECOND_PASS_BW", None)
    one = features.extract_features(pixels).minutiae
    monkeypatch.setattr(features, "SECOND_PASS_BW", np.pi / 4)
    found = {}
    for keep in (None, 0.0, 16.0, 1e9):
        monkeypatch.setattr(features, "SECOND_PASS_KEEP", keep)
        found[keep] = features.extract_features(pixels).minutiae
    rows = {k: {tuple(r) for r in m.tolist()} for k, m in found.items()}
    first = {tuple(r) for r in one.tolist()}
    alone = rows[None]
    assert rows[0.0] == alone  # no block that clean: the second pass's minutiae alone
    assert alone < rows[16.0] < rows[1e9]  # more first-pass minutiae as the bar rises
    assert rows[1e9] - alone <= first  # every added minutia is one of the first pass's
    for m in found.values():  # row-major order, as one extraction lists them
        assert np.all(np.diff(m[:, 1]) >= 0)


def test_distinct_is_numpy_unique():
    # the thinning's neighbour lists: np.unique's values by a sort
    rng = np.random.default_rng(7)
    for n in (0, 1, 9, 500):
        a = rng.integers(0, 40, (n, 9))
        assert np.array_equal(features._distinct(a), np.unique(a))
        assert features._distinct(a).dtype == np.unique(a).dtype


@pytest.mark.parametrize("dense", [features._DENSE_PAIRS, 0])
@pytest.mark.parametrize("same", [False, True])
def test_pairs_within_is_the_all_pairs_matrix(same, dense, monkeypatch):
    """The grid search (``dense`` 0) finds exactly the pairs an all-pairs distance matrix finds,
    with the same distances, in the same order as the small inputs' matrix path: integer pixels
    (repeated points included) and float32 coordinates, radii at and between the grid's
    cells."""
    monkeypatch.setattr(features, "_DENSE_PAIRS", dense)
    rng = np.random.default_rng(7)
    for trial in range(30):
        n, m = rng.integers(0, 60), rng.integers(1, 60)
        if trial % 2:
            ax = rng.integers(0, 120, n)
            ay = rng.integers(0, 90, n)
        else:
            ax = rng.uniform(-20, 300, n).astype(np.float32)
            ay = rng.uniform(0, 200, n).astype(np.float32)
        bx, by = (ax, ay) if same else (ax[::-1][:m], ay[::-1][:m])
        if not same and trial % 3 == 0:
            bx, by = rng.integers(0, 120, m), rng.integers(0, 90, m)
        r = float(rng.choice([0.5, 4.0, 9.0, 12.5, 18.0, 40.0]))
        i, j, d = features.pairs_within(ax, ay, bx, by, r, same=same)
        full = np.hypot(ax[:, None] - bx[None, :], ay[:, None] - by[None, :])
        want = full <= r
        if same:
            np.fill_diagonal(want, False)
        wi, wj = np.nonzero(want)
        assert np.array_equal(i, wi) and np.array_equal(j, wj)
        assert np.array_equal(d, full[wi, wj])


def test_a_noisy_image_at_the_size_limit_is_extracted_in_bounded_memory():
    """A noisy ridge texture has thousands of minutiae candidates; their clean-up (and the merge
    of the two passes) once built all-pairs matrices of them, so a 2,000-pixel image of this kind
    took over 20 GB and a 1,200-pixel one over 2 GB. Under a 1.2 GB address-space limit (a child
    process: the limit is its own) the extraction must finish."""
    from tests.conftest import run_with_memory_limit

    run = run_with_memory_limit("""
import numpy as np
from scipy import ndimage
from gateway.matcher import features
n = 1200
rng = np.random.default_rng(1)
x = np.mgrid[0:n, 0:n][1].astype(np.float32)
phase = ndimage.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), 3) * 40
img = 128 + 100 * np.sin(2 * np.pi * x / 9 + phase) + rng.normal(0, 30, (n, n))
f = features.extract_features(np.clip(img, 0, 255).astype(np.uint8), 500)
print(len(f.minutiae))
""")
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout) > 3000  # the image is as noisy as intended
