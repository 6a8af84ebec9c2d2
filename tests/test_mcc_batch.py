"""The one-to-many MCC scorer (``mcc.Batch`` / ``mcc.score_many``, ``template.compare_many``)
gives the one-pair scores (``mcc.score``, ``compare``) up to float rounding.  No timings here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gateway.matcher import Template, compare, extract, mcc, synthetic
from gateway.matcher.gallery import Gallery
from gateway.matcher.template import candidate_batches, compare_many
from tests.conftest import print_image

TOL = 1e-5  # float rounding; identical cylinders are the documented exception
SELF_TOL = 1e-3


@pytest.fixture(scope="module")
def fvc() -> list[Template]:
    """FVC2000 DB2 set B: 3 impressions of 5 fingers (synthetic prints in their place without
    ../shared: tests/conftest.py, print_image)."""
    out = []
    for f in (101, 102, 103, 104, 105):
        for i in (1, 2, 3):
            path = print_image(f, i)
            if not path.exists():
                pytest.fail(f"the FVC evaluation images are missing: {path}")
            out.append(extract(np.asarray(Image.open(path).convert("L"))))
    return out


@pytest.fixture(scope="module")
def synth() -> list[Template]:
    """Template-level synthetic fingers: two impressions of 12 fingers, various sizes."""
    out = []
    for subject in range(3):
        for imp in (0, 1):
            prints = synthetic.tenprint(synthetic.identity(11, subject), imp)
            out.extend(prints[p] for p in (1, 2, 6, 7))
    return out


def _tiny(t: Template) -> list[Template]:
    """Truncated copies with 0, 1, 2, 3, 6 minutiae (0 to a few usable cylinders)."""
    return [Template(t.width, t.height, t.minutiae[:n], t.block_mask) for n in (0, 1, 2, 3, 6)]


def _shares_cylinder(a: mcc.Prepared, b: mcc.Prepared) -> bool:
    """Whether two templates hold an identical cylinder (a template and a truncated copy of it
    may: a minutia whose neighbours all survive the cut), the documented exception to TOL: the
    distance of identical cylinders is a float32 cancellation."""
    return bool((a.values[:, None, :] == b.values[None, :, :]).all(2).any())


def _check_all(templates: list[Template]) -> int:
    """Every template against a batch of all the others, in both operand orders."""
    prepared = [t.prepared for t in templates]
    checked = 0
    for i, a in enumerate(prepared):
        others = [p for j, p in enumerate(prepared) if j != i]
        batch = mcc.Batch.from_prepared(others)
        got = mcc.score_many(a, batch)
        want = np.array([mcc.score(a, b) for b in others])
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
        got = mcc.score_many(a, batch, first=False)
        want = np.array([mcc.score(b, a) for b in others])
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
        checked += 2 * len(others)
    return checked


def _pairs(a: mcc.Prepared, b: mcc.Prepared) -> int:
    """The number of one-to-one pairs of ``score(a, b)`` before the MAX_PAIRS cut."""
    if a.n < 2 or b.n < 2:
        return 0
    ratio = mcc._ratio(a, b)
    j = ratio.argmin(1)
    prop = np.full((b.n, a.n), 2.0, np.float32)
    prop[j, np.arange(a.n)] = ratio[np.arange(a.n), j]
    return int((prop.min(1) < 1).sum())


@pytest.mark.parametrize("max_pairs", [mcc.MAX_PAIRS, 20])
def test_fvc_pairs_match_the_one_pair_score(fvc, max_pairs, monkeypatch):
    # with at most MAX_CYLINDERS (40) cylinders few pairs of this set have more than 32
    # one-to-one pairs: a lower cut makes both scorers trim many of them
    monkeypatch.setattr(mcc, "MAX_PAIRS", max_pairs)
    assert _check_all(fvc) == 2 * 15 * 14
    # the set includes pairs cut to MAX_PAIRS and genuine pairs with high scores
    prepared = [t.prepared for t in fvc]
    assert max(_pairs(a, b) for a in prepared for b in prepared if a is not b) > 20
    # (three impressions of each of five fingers, in order: the genuine pairs)
    genuine = [(prepared[k], prepared[k + i]) for k in range(0, 15, 3) for i in (1, 2)]
    assert max(mcc.score(a, b) for a, b in genuine) > 0.1


def test_synthetic_pairs_match_the_one_pair_score(synth):
    sizes = {t.prepared.n for t in synth}
    assert len(sizes) > 5  # mixed sizes in one batch
    _check_all(synth)


def test_ridge_period_gate_is_the_same_in_both_scorers(fvc, synth):
    """Templates with ridge periods (some pairs within the tolerance, some partly gated, some
    to 0, some without a period): the same scores one pair at a time and batched."""
    periods = [0.0, 7.0, 7.5, 8.0, 8.4, 8.9, 9.5, 10.2, 11.0, 12.5]
    gated = [
        Template(t.width, t.height, t.minutiae, t.block_mask, t.source_ppi, t.cores, p)
        for t, p in zip(fvc + synth[:4], periods * 2, strict=False)
    ]
    _check_all(gated)
    for probe in gated[:3]:
        got = compare_many(probe, gated)
        want = np.array([compare(probe, c) for c in gated])
        same = np.array([c is probe for c in gated])
        assert np.abs(got - want)[~same].max() <= TOL


def test_closed_period_gate_skips_the_comparison(fvc, monkeypatch):
    """A pair whose ridge periods differ beyond the gate scores 0 without the cylinder work
    (the full steps give 0 too: the score times a factor of 0); an open or partly closed gate
    still runs every step, with the same score as before the shortcut."""

    def with_period(t: Template, period: float) -> Template:
        return Template(t.width, t.height, t.minutiae, t.block_mask, t.source_ppi, t.cores, period)

    # the same finger, so that the steps would give a clearly positive score
    a, b, c = with_period(fvc[0], 7.0), with_period(fvc[1], 12.5), with_period(fvc[1], 8.3)
    pa, pb, pc = a.prepared, b.prepared, c.prepared
    assert mcc.period_factor(pa.log_period, pb.log_period) == 0.0
    assert 0.0 < mcc.period_factor(pa.log_period, pc.log_period) < 1.0
    full = mcc.detail(pa, pb)  # detail runs every step whatever the gate
    assert full["score"] == 0.0 and len(full["pairs"]) >= 2
    assert mcc.detail(pa, pc)["score"] > 0.05
    want = {(x, y): mcc.detail(x, y)["score"] for x, y in [(pa, pc), (pc, pa)]}
    calls = []
    relaxed = mcc._relaxed

    def counted(x, y):
        calls.append((x, y))
        return relaxed(x, y)

    monkeypatch.setattr(mcc, "_relaxed", counted)
    assert mcc.score(pa, pb) == mcc.score(pb, pa) == 0.0
    assert compare(a, b) == compare(b, a) == 0.0
    assert calls == []
    for (x, y), s in want.items():
        assert mcc.score(x, y) == s
    assert len(calls) == 2
    # the batched scorer (no shortcut) agrees
    assert compare_many(a, [b, c]).tolist() == pytest.approx([0.0, compare(a, c)], abs=TOL)


def test_edge_cases(fvc):
    big = fvc[4]
    tiny = _tiny(big)
    assert [t.prepared.n for t in tiny][:3] == [0, 0, 0]  # no usable cylinder
    everything = tiny + fvc[:4] + [big]
    prepared = [t.prepared for t in everything]
    # every probe (0..many cylinders) against K = 1 and against all, in both orders
    for a in prepared:
        for b in prepared:
            if a is b:
                continue
            for first in (True, False):
                got = mcc.score_many(a, mcc.Batch.from_prepared([b]), first)
                want = mcc.score(a, b) if first else mcc.score(b, a)
                assert got.shape == (1,) and abs(got[0] - want) <= TOL
        others = [b for b in prepared if b is not a]
        got = mcc.score_many(a, mcc.Batch.from_prepared(others))
        assert np.abs(got - [mcc.score(a, b) for b in others]).max() <= TOL
    # an empty batch, and a batch of templates without usable cylinders
    assert mcc.score_many(prepared[-1], mcc.Batch.from_prepared([])).shape == (0,)
    got = mcc.score_many(prepared[-1], mcc.Batch.from_prepared(prepared[:3]))
    assert (got == 0).all()
    # a template against itself: identical cylinders, within the documented tolerance
    got = mcc.score_many(prepared[-1], mcc.Batch.from_prepared([prepared[-1]]))
    assert abs(got[0] - mcc.score(prepared[-1], prepared[-1])) <= SELF_TOL


def test_chunks_of_many_sizes(synth, fvc, monkeypatch):
    """Small chunks: candidates spread over many chunks, results unchanged."""
    monkeypatch.setattr(mcc, "_CHUNK_COLUMNS", 64)
    templates = synth[:8] + fvc[:6]
    batch = mcc.Batch.from_prepared([t.prepared for t in templates])
    assert len(batch.chunks) > 3
    for a in fvc[6:9]:
        got = mcc.score_many(a.prepared, batch)
        want = [mcc.score(a.prepared, t.prepared) for t in templates]
        assert np.abs(got - want).max() <= TOL
        got = mcc.score_many(a.prepared, batch, first=False)
        want = [mcc.score(t.prepared, a.prepared) for t in templates]
        assert np.abs(got - want).max() <= TOL


def test_chunk_cuts():
    """Chunks cover the candidates in order, stay within _CHUNK_COLUMNS (or hold one
    candidate) and pad less than one chunk per candidate count would."""
    rng = np.random.default_rng(3)
    for k in (1, 2, 7, 40, 300):
        counts = np.sort(rng.integers(2, 81, k))
        cuts = mcc._cuts(counts)
        assert cuts[0][0] == 0 and cuts[-1][1] == k
        assert all(e0 == s1 for (_, e0), (s1, _) in zip(cuts, cuts[1:], strict=False))
        for s, e in cuts:
            assert e > s and ((e - s) * counts[e - 1] <= mcc._CHUNK_COLUMNS or e - s == 1)
        padded = sum((e - s) * counts[e - 1] for s, e in cuts)
        assert padded <= (k * counts[-1] if k else 0)


def test_workspace_reuse(fvc):
    """Buffers shared between calls (small after large and large after small): same scores."""
    prepared = [t.prepared for t in fvc]
    small = mcc.Batch.from_prepared(prepared[1:3])
    large = mcc.Batch.from_prepared(prepared[1:])
    a = prepared[0]
    first = mcc.score_many(a, small)
    everything = mcc.score_many(a, large)
    assert np.array_equal(mcc.score_many(a, small), first)
    assert np.abs(everything[:2] - first).max() <= TOL  # other chunks: other rounding


def test_compare_many_is_compare(fvc, synth):
    candidates = fvc + synth[:6] + _tiny(fvc[0])
    for probe in fvc[:4] + synth[:2]:
        got = compare_many(probe, candidates)
        want = np.array([compare(probe, c) for c in candidates])
        same = np.array([_shares_cylinder(c.prepared, probe.prepared) for c in candidates])
        assert np.abs(got - want)[~same].max() <= TOL
        assert np.abs(got - want)[same].max(initial=0) <= SELF_TOL
        # both operand orders occur, and prepacked batches give the same
        rows = candidate_batches(candidates, probe.key)
        assert all(r.size for r, _, _ in rows)
        assert np.array_equal(compare_many(probe, candidates, rows), got)


def test_gallery_compare_stage_uses_compare_scores():
    g = Gallery()
    synthetic.populate(g, 12, seed=5)
    probe = synthetic.tenprint(synthetic.identity(5, 3), 1)
    res = g.search(probe, top=12, first_stage=False, second_stage="compare")
    assert res[0].subject_id == synthetic.subject_id(5, 3)
    for cand in res:
        for p, s in cand.finger_scores.items():
            assert abs(s - compare(probe[p], g.template(cand.subject_id, p))) <= TOL


def _reference_score(a: mcc.Prepared, b: mcc.Prepared) -> float:
    """LSS-R written plainly from the documented steps in float64 (the restricted distance of
    every two cylinders cell by cell, dictionary pairing, geometry differences wrapped by hand,
    a matrix power): the reference the fast one-pair scorer is checked against.  Only the
    90-degree direction test is the scorer's own product (at exactly 90 degrees it hangs on
    rounding)."""
    if a.n < 2 or b.n < 2:
        return 0.0
    cells = mcc._DISC_CELLS
    va = a.values.reshape(a.n, cells, mcc.ND).astype(np.float64)
    vb = b.values.reshape(b.n, cells, mcc.ND).astype(np.float64)
    ma, mb = a.left[a.n :, :cells].astype(np.float64), b.left[b.n :, :cells].astype(np.float64)
    both = ma[:, None, :] * mb[None, :, :]  # (na, nb, cells) valid in both
    diff = (((va[:, None] - vb[None, :]) ** 2).sum(3) * both).sum(2)
    norm_a = ((va**2).sum(2)[:, None, :] * both).sum(2) + 1e-12
    norm_b = ((vb**2).sum(2)[None, :, :] * both).sum(2)
    ratio = np.sqrt(diff) / (np.sqrt(norm_a) + np.sqrt(norm_b))
    directions = a.dirs @ b.dirs_t >= mcc._ROOT_COMMON
    ratio[(both.sum(2) < mcc.MIN_COMMON * cells) | ~directions] = 1
    j = ratio.argmin(1)
    pairs = {}
    for i in range(a.n):  # each cylinder of a proposes; each of b keeps the best proposal
        if ratio[i, j[i]] < 1 and (j[i] not in pairs or ratio[i, j[i]] < pairs[j[i]][0]):
            pairs[j[i]] = (ratio[i, j[i]], i)
    ib = np.array(sorted(pairs), np.int64)
    if ib.size < 2:
        return 0.0
    r0 = np.array([pairs[t][0] for t in ib])
    if ib.size > mcc.MAX_PAIRS:
        keep = np.sort(np.argsort(r0, kind="stable")[: mcc.MAX_PAIRS])
        ib, r0 = ib[keep], r0[keep]
    ia = np.array([pairs[t][1] for t in ib], np.int64)
    nr = ib.size
    ga = a.planes[:, ia][:, :, ia].astype(np.int64)
    gb = b.planes[:, ib][:, :, ib].astype(np.int64)
    d = ga - gb
    d[1:] = (d[1:] + 32768) % 65536 - 32768  # the angle planes wrap
    d = np.abs(d)
    rho = mcc._LUT_DIST[d[0]] * mcc._LUT_ANGLE[d[1]] * mcc._LUT_ANGLE[d[2]]
    c = (1 - mcc.W_R) / (nr - 1)
    rho = rho.astype(np.float64) * c
    np.fill_diagonal(rho, mcc.W_R)
    lr = np.linalg.matrix_power(rho, mcc.N_REL) @ (1 - r0)
    k = min(mcc._n_pairs(min(a.n, b.n)), nr)
    s = np.sort(lr)[nr - k :].sum() / k
    return s * mcc.period_factor(a.log_period, b.log_period)


@pytest.mark.parametrize("max_pairs", [mcc.MAX_PAIRS, 12])
def test_one_pair_score_is_the_plain_lss_r(fvc, synth, max_pairs, monkeypatch):
    """The one-pair scorer (fused products, matrix-vector relaxation, float32) against the
    plain float64 reference: the same pairs and scores up to float32 rounding (TOL: five
    relaxation steps in float32)."""
    monkeypatch.setattr(mcc, "MAX_PAIRS", max_pairs)
    templates = [t.prepared for t in fvc + synth[:6] + _tiny(fvc[0])]
    checked = 0
    for a in templates:
        for b in templates:
            if a is not b:
                tol = SELF_TOL if _shares_cylinder(a, b) else TOL
                assert abs(mcc.score(a, b) - _reference_score(a, b)) <= tol
                checked += 1
    assert checked == len(templates) * (len(templates) - 1)
