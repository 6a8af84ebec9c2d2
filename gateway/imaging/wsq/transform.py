"""The inverse wavelet transform (clause A): each split undone by a vertical then a horizontal
two-channel synthesis, taps applied in NBIS's order so that the float32 sums round alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


def _walk(nb, start, rep_left, rep_right, flen, otap, pix, tail_stop):
    """Reference walk over one band (used for short bands, where the symmetric extension
    reflects more than once): the band index and tap of every term of every output, in the
    order NBIS accumulates them.  ``rep_*``: the edge sample is repeated (half-sample
    symmetry) instead of not (whole-sample)."""
    out = []
    pos, step, rep = start, -1, rep_left

    def chain(tap):
        p, d, lrep, rrep = pos, step, rep, rep_right
        terms = [(p, tap)]
        for i in range(tap + 2, flen, 2):
            if p == 0:
                d, lrep = (0, False) if lrep else (1, lrep)
            if p == nb - 1:
                d, rrep = (0, False) if rrep else (-1, rrep)
            p += d
            if not 0 <= p < nb:
                raise ValueError("band too short for the filter")
            terms.append((p, i))
        return terms

    for m in range(pix):
        for tap in range(otap if m == 0 else 1, -1, -1):
            out.append(chain(tap))
        if pos == 0:
            step, rep = (0, False) if rep else (1, rep)
        pos += step
        if not 0 <= pos < nb:
            raise ValueError("band too short for the filter")
    for tap in range(1, tail_stop - 1, -1):
        out.append(chain(tap))
    return out


def _fold(w: np.ndarray, nb: int, rep_left: int, rep_right: int) -> np.ndarray:
    """Band index of the unfolded position ``w`` (w < 0: reflected at the left edge, then at
    the right edge), valid while no term reflects twice (bands longer than the filters)."""
    k = np.where(w >= 0, w, -w - rep_left)
    return np.where(k > nb - 1, 2 * (nb - 1) + rep_right - k, k)


def _runs(idx: np.ndarray):
    """Split an index array into runs of step +1 or -1: [(dst slice, src slice)]."""
    runs = []
    start = 0
    n = idx.size
    while start < n:
        stop = start + 1
        step = int(idx[stop] - idx[start]) if stop < n else 1
        if step not in (1, -1):
            step = 1
        else:
            while stop < n and idx[stop] - idx[stop - 1] == step:
                stop += 1
        first, last = int(idx[start]), int(idx[stop - 1])
        src = slice(first, last + 1) if step == 1 else slice(first, last - 1 if last else None, -1)
        runs.append((slice(start, stop), src))
        start = stop
    return runs


@dataclass(frozen=True)
class _Plan:
    """How to synthesise a line of n samples from its low and high bands (see _line_plan)."""

    llen: int
    hlen: int
    width: int  # E: length of both extension arrays
    ext: tuple  # (low, high) index arrays into the band, length E each
    runs: tuple  # the same as slice copies: (low, high) lists of (dst, src)
    classes: tuple  # parity -> (count, ((band, tap, offset), ...)), in summation order
    products: tuple  # distinct (band, tap) products; taps k and L-1-k are the same float32
    refs: tuple  # parity -> (count, ((product index, offset), ...))


@functools.lru_cache(maxsize=512)
def _line_plan(n: int, lsz: int, hsz: int) -> _Plan | None:
    """How to synthesise a line of ``n`` samples from its low and high bands, or None if the
    bands are too short for the filters.

    The synthesis (clause A.3; NBIS ``join_lets``) walks each band from a start sample ``loc``
    (low) or ``hoc`` (high) that moves back one sample per output pair; output ``k`` sums the
    low-band terms, then the high-band terms, in increasing tap order.  Each band is copied
    once into an *extension* array (symmetric extension, clause A.1) so that every term of
    every output of one parity is a contiguous slice ``ext[offset : offset + count]``.
    """
    odd = n % 2
    llen = (n + 1) // 2
    hlen = llen - odd
    loc, hoc = (lsz - 1) // 4, (hsz + 1) // 4 - 1
    lotap, hotap = ((lsz - 1) // 2) % 2, ((hsz + 1) // 2) % 2
    if hlen < 1 or loc > llen - 1 or hoc > hlen - 1:
        return None
    # edge repetition flags (left, right): whole-sample symmetry (0) or half-sample (1)
    low_rep = (0, 0) if odd else (0, 1)
    high_rep = (1, 1) if odd else (1, 0)
    ltail = (1 if lotap else 0) if odd else (2 if lotap else 1)
    htail = (1 if hotap else 0) if odd else (2 if hotap else 1)
    bands = (
        (llen, loc, low_rep, lsz, lotap, ltail),
        (hlen, hoc, high_rep, hsz, hotap, htail),
    )
    counts = ((n + 1) // 2, n // 2)
    terms: tuple[list, list] = ([], [])
    exts = []
    if min(llen, hlen) < max(lsz, hsz) + 2:
        # short bands: the reference walk (reflections may repeat); the extension array is
        # the concatenation of every term's index array
        for b, (nb, start, (rl, rr), flen, otap, tail) in enumerate(bands):
            try:
                walk = _walk(nb, start, rl, rr, flen, otap, hlen, tail)
            except ValueError:
                return None
            if len(walk) != n:  # pragma: no cover - cannot happen for odd filters
                return None
            parts = []
            used = 0
            for parity in (0, 1):
                outs = walk[parity::2]
                for j in range(len(outs[0])):
                    parts.append([o[j][0] for o in outs])
                    terms[parity].append((b, outs[0][j][1], used))
                    used += len(outs)
            exts.append(np.array([i for part in parts for i in part], np.int64))
    else:
        # closed form: output 2m + otap - tap (tap 0 or 1) uses the unfolded positions
        # start - m - j, j = 0, 1, ... with taps tap, tap + 2, ...
        u = np.arange(hlen + (max(lsz, hsz) + 1) // 2 + 2, dtype=np.int64)
        for b, (nb, start, (rl, rr), flen, otap, _tail) in enumerate(bands):
            exts.append(_fold(start - u, nb, rl, rr))
            for parity in (0, 1):
                tap = (otap - parity) % 2
                m0 = (parity - otap + tap) // 2
                for j, i in enumerate(range(tap, flen, 2)):
                    terms[parity].append((b, i, m0 + j))
    width = max(e.size for e in exts)
    exts = [np.concatenate((e, np.zeros(width - e.size, np.int64))) for e in exts]
    # The filters are symmetric (built so from their halves), so the product of a sample with
    # tap k equals its product with tap L-1-k bit for bit: one product array serves both.
    sizes = (lsz, hsz)
    products = []
    refs: tuple[list, list] = ([], [])
    for p in (0, 1):
        for band, tap, off in terms[p]:
            key = (band, min(tap, sizes[band] - 1 - tap))
            if key not in products:
                products.append(key)
            refs[p].append((products.index(key), off))
    return _Plan(
        llen,
        hlen,
        width,
        tuple(exts),
        tuple(_runs(e) for e in exts),
        tuple((counts[p], tuple(terms[p])) for p in (0, 1)),
        tuple(products),
        tuple((counts[p], tuple(refs[p])) for p in (0, 1)),
    )


def _bands(src, axis: int, inv: int, plan: _Plan):
    llen, hlen = plan.llen, plan.hlen
    if axis == 0:
        return (src[hlen:], src[:hlen]) if inv else (src[:llen], src[llen:])
    return (src[:, hlen:], src[:, :hlen]) if inv else (src[:, :llen], src[:, llen:])


class _Arena:
    """Scratch float32 memory handed out as views (see :class:`_Workspace`)."""

    __slots__ = ("buffer", "used")

    def __init__(self, buffer: np.ndarray):
        self.buffer = buffer
        self.used = 0

    def take(self, shape: tuple) -> np.ndarray:
        n = shape[0] * shape[1] if len(shape) == 2 else shape[0]
        used = self.used
        if used + n > self.buffer.size:  # pragma: no cover - sized generously
            return np.empty(shape, np.float32)
        self.used = used + n
        return self.buffer[used : used + n].reshape(shape)


def _products(ext, filters, plan: _Plan, arena: _Arena):
    """ext * tap for every distinct tap in use (see _Plan.products); None for a band
    without an extension array (known to be zero)."""
    out = []
    for band, tap in plan.products:
        e = ext[band]
        out.append(
            None if e is None else np.multiply(e, filters[band][tap], out=arena.take(e.shape))
        )
    return out


def _synth_columns(regions, filters, plan: _Plan, arena: _Arena, zero_high=False) -> None:
    """Vertical synthesis of every column of each (src, dst, inv) region (all of the same
    height): the regions' bands sit side by side in one extension array, so the filtering of
    all of them is one set of array operations.

    Output row k sums its low-band terms, then its high-band terms, in increasing tap order,
    one addition after the other: the same float32 roundings as NBIS's ``*p = x0 * f0;
    *p += x1 * f1; ...``.  The products are computed once per distinct tap (_Plan.products).
    """
    arena.used = 0
    cols = sum(src.shape[1] for src, _dst, _inv in regions)
    ext = [arena.take((plan.width, cols)), None if zero_high else arena.take((plan.width, cols))]
    c0 = 0
    for src, _dst, inv in regions:
        c1 = c0 + src.shape[1]
        for k, band in enumerate(_bands(src, 0, inv, plan)):
            if ext[k] is None:
                continue
            e = ext[k][:, c0:c1]  # type: ignore[index]
            if len(plan.runs[k]) > 8:
                e[...] = np.take(band, plan.ext[k], axis=0)
            else:
                for to, frm in plan.runs[k]:
                    e[to] = band[frm]
        c0 = c1
    prods = _products(ext, filters, plan, arena)
    for parity, (count, terms) in enumerate(plan.refs):
        acc = arena.take((count, cols))
        x = [prods[k][off : off + count] for k, off in terms if prods[k] is not None]
        if len(x) == 1:  # (a 3-tap low-pass filter with a zero high band)
            x.insert(0, np.zeros_like(x[0]))
        np.add(x[0], x[1], out=acc)
        for term in x[2:-1]:
            np.add(acc, term, out=acc)
        c0 = 0
        for src, dst, _inv in regions:  # the last addition writes the output rows
            c1 = c0 + src.shape[1]
            if len(x) == 2:
                dst[parity::2] = acc[:, c0:c1]
            else:
                np.add(acc[:, c0:c1], x[-1][:, c0:c1], out=dst[parity::2])
            c0 = c1


def _synth_rows(regions, filters, plan: _Plan, arena: _Arena) -> None:
    """Horizontal synthesis of every row of each (src, dst, inv) region (all of the same
    width), the regions' bands stacked in one extension array (see :func:`_synth_columns`).

    The extension arrays are (rows, E) and contiguous, so a term's slice for all rows is the
    1-D range ``flat[off : off + (rows - 1) * E + count]`` (the few samples between rows are
    computed and thrown away): one contiguous operation instead of a strided 2-D one."""
    arena.used = 0
    rows = sum(src.shape[0] for src, _dst, _inv in regions)
    width = plan.width
    ext = [arena.take((rows, width)), arena.take((rows, width))]
    r0 = 0
    for src, _dst, inv in regions:
        r1 = r0 + src.shape[0]
        for k, band in enumerate(_bands(src, 1, inv, plan)):
            e = ext[k][r0:r1]
            if len(plan.runs[k]) > 8:
                e[...] = np.take(band, plan.ext[k], axis=1)
            else:
                for to, frm in plan.runs[k]:
                    e[:, to] = band[:, frm]
        r0 = r1
    prods = _products([e.reshape(-1) for e in ext], filters, plan, arena)
    grid = arena.take((rows, width))
    acc = grid.reshape(-1)
    for parity, (count, terms) in enumerate(plan.refs):
        size = (rows - 1) * width + count
        a = acc[:size]
        x = [prods[k][off : off + size] for k, off in terms]
        np.add(x[0], x[1], out=a)
        for term in x[2:-1]:
            np.add(a, term, out=a)
        last = np.lib.stride_tricks.as_strided(x[-1], (rows, count), (4 * width, 4))
        r0 = 0
        for src, dst, _inv in regions:  # the last addition writes the strided output
            r1 = r0 + src.shape[0]
            np.add(grid[r0:r1, :count], last[r0:r1], out=dst[:, parity::2])
            r0 = r1
