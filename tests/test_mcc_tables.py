"""The relaxation's lookup tables in ``mcc`` (session 8): the two's-complement tables of the
one-pair scorer are the absolute-value tables, and no compatibility or relaxed similarity of a
comparison is a subnormal float32 (each such operand costs the CPU a microcode assist, which
made the relaxation's products five times slower).  No timings here."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.matcher import mcc, synthetic

TINY = np.finfo(np.float32).tiny  # the smallest normal float32, 2^-126


def test_symmetric_tables_are_the_tables_of_the_absolute_difference():
    u = np.arange(65536)
    signed = u.astype(np.uint16).view(np.int16).astype(np.int64)
    # angles: every int16 difference, |-32768| = 32768 included
    assert np.array_equal(mcc._SYM_ANGLE, mcc._LUT_ANGLE[np.abs(signed)])
    # distances: the difference of two values in 0..32767 is never -32768
    dist = signed != -32768
    assert np.array_equal(mcc._SYM_DIST[dist], mcc._LUT_DIST[np.abs(signed[dist])])
    assert mcc._SYM_DIST.dtype == mcc._SYM_ANGLE.dtype == np.float32


def test_tables_have_no_tail_below_the_floor():
    tables = (
        (mcc._LUT_DIST, 1 / mcc._DIST_SCALE, mcc.MU_1, mcc.TAU_1),
        (mcc._LUT_ANGLE, mcc._ANGLE_UNIT, mcc.MU_2, mcc.TAU_2),
    )
    for table, step, mu, tau in tables:
        nonzero = table[table > 0]
        assert nonzero.min() >= np.float32(mcc._LUT_FLOOR)
        # three factors and a relaxed similarity (at least 2^-24) stay normal
        assert float(nonzero.min()) ** 3 * 2.0**-24 >= TINY
        # the sigmoid itself down to the floor, 0 below it
        v = np.arange(table.size) * step
        sigmoid = (1 / (1 + np.exp(np.clip(-tau * (v - mu), -80, 80)))).astype(np.float32)
        kept = sigmoid >= np.float32(mcc._LUT_FLOOR)
        assert np.array_equal(table[kept], sigmoid[kept])
        assert not table[~kept].any()
        assert kept.sum() > 100


def _relaxation(a: mcc.Prepared, b: mcc.Prepared):
    """The compatibility matrix and the relaxed similarities after each step, as
    :func:`mcc._relaxed` computes them for its pairs."""
    ia, ib, _, c = mcc._relaxed(a, b)
    d = a.planes.take(ia, 1).take(ia, 2)
    d -= b.planes.take(ib, 1).take(ib, 2)
    rho = mcc._SYM_DIST[d[0]] * mcc._SYM_ANGLE[d[1]] * mcc._SYM_ANGLE[d[2]]
    nr = ia.size
    np.fill_diagonal(rho, mcc.W_R / c)
    ratio = mcc._ratio(a, b)
    lr = (1 - ratio[ia, ib]).astype(np.float32)
    steps = [lr]
    for _ in range(mcc.N_REL):
        steps.append(rho.dot(steps[-1]))
    assert nr >= 2
    return rho, steps


def _subnormal(x: np.ndarray) -> int:
    return int(((x != 0) & (np.abs(x) < TINY)).sum())


@pytest.fixture(scope="module")
def prints() -> list[mcc.Prepared]:
    out = []
    for subject in range(4):
        for imp in (0, 1):
            prints = synthetic.tenprint(synthetic.identity(17, subject), imp)
            out.extend(prints[p].prepared for p in (1, 2, 7))
    return out


def test_relaxation_meets_no_subnormal_number(prints):
    """Genuine and impostor pairs: every compatibility, every product of a compatibility and
    a relaxed similarity and every relaxed similarity is 0 or a normal float32 (the tails of
    the sigmoid tables, down to 1e-35, gave products down to 1e-45 before the floor)."""
    checked = 0
    for a in prints:
        for b in prints:
            if a is b or mcc._relaxed(a, b) is None:
                continue
            rho, steps = _relaxation(a, b)
            assert _subnormal(rho) == 0
            for lr in steps[:-1]:
                assert lr.min() > 0
                assert _subnormal(rho * lr[None, :]) == 0
            assert _subnormal(steps[-1]) == 0
            checked += 1
    assert checked > 100
