"""The geometry of the transform: the 20 two-dimensional splits and the 64 subbands (spec
Figure 3; the "w_tree" of NBIS).
"""

from __future__ import annotations

import functools

from .stream import _NUM_SUBBANDS


def _quads(x, y, w, h, inv_rows, inv_cols):
    """Quadrants TL, TR, BL, BR of a rectangle.  At an odd length the low-pass half is the
    longer one; it comes second when the split is spectrally inverted (clause A.2)."""
    w1 = w // 2 if inv_rows else (w + 1) // 2
    h1 = h // 2 if inv_cols else (h + 1) // 2
    return (
        (x, y, w1, h1),
        (x + w1, y, w - w1, h1),
        (x, y + h1, w1, h - h1),
        (x + w1, y + h1, w - w1, h - h1),
    )


# flags (inv_rows, inv_cols) of the split of each quadrant: a band that went through the
# high-pass filter is reversed in frequency, so its own split is inverted in that direction
_CHILD_FLAGS = ((0, 0), (1, 0), (0, 1), (1, 1))


@functools.lru_cache(maxsize=64)
def _geometry(width: int, height: int):
    """(stages, subbands): the 20 splits in five stages (deepest first; see :func:`_merge`)
    and subbands 0..59 as (x, y, w, h)."""
    node = {}

    def split(n, rect, flags):
        node[n] = (*rect, *flags)
        return [(q, f) for q, f in zip(_quads(*rect, *flags), _CHILD_FLAGS, strict=True)]

    (n1, n2, n3, _n0br) = split(0, (0, 0, width, height), (0, 0))
    (n14, n4, n5, q51) = split(1, *n1)
    split(2, *n2)
    split(3, *n3)
    kids14 = split(14, *n14)
    kids4 = split(4, *n4)
    kids5 = split(5, *n5)
    kids15 = split(15, *kids14[0])
    split(19, *kids15[0])
    for n, kid in zip((16, 17, 18), kids14[1:], strict=True):
        split(n, *kid)
    for n, kid in zip(range(6, 10), kids4, strict=True):
        split(n, *kid)
    for n, kid in zip(range(10, 14), kids5, strict=True):
        split(n, *kid)

    def leaves(n):
        return list(_quads(*node[n]))

    sub = leaves(19) + [rect for rect, _flags in kids15[1:]]
    for n in (16, 17, 18, 6, 7, 8, 9, 10, 11, 12, 13):
        sub += leaves(n)
    sub.append(q51[0])
    sub += leaves(2) + leaves(3)
    assert len(sub) == _NUM_SUBBANDS
    stages = []
    for group in ((19,), (15, 16, 17, 18, *range(6, 14)), (14, 4, 5), (1, 2, 3)):
        rects = [node[n] for n in group]
        stages.append((_merge(rects, 0), _merge(rects, 1)))
    # The last split: its bottom-right quadrant (subbands 60-63) is never transmitted, so the
    # columns right of the middle have an all-zero high band and are synthesised from their
    # low band alone (adding NBIS's products 0 * tap changes no sum).
    (_x, _y, w1, _h), (x2, _y2, w2, _h2) = n1[0], n2[0]
    whole = (0, 0, width, height, 0)
    columns = ((0, 0, w1, height, 0), (x2, 0, w2, height, 0, True)) if w2 else (whole,)
    stages.append((columns, (whole,)))
    return tuple(stages), tuple(sub)


def _merge(rects, axis: int):
    """Splits of one stage as (x, y, w, h, inv) regions for the vertical (axis 0) or the
    horizontal (axis 1) pass, neighbours with the same extent and inversion merged."""
    out: list = []
    if axis == 0:  # same y, h and inv_cols, adjacent in x
        for x, y, w, h, _ir, ic in sorted(rects, key=lambda r: (r[1], r[3], r[5], r[0])):
            last = out[-1] if out else None
            if last and (last[1], last[3], last[4]) == (y, h, ic) and last[0] + last[2] == x:
                out[-1] = (last[0], y, last[2] + w, h, ic)
            else:
                out.append((x, y, w, h, ic))
    else:  # same x, w and inv_rows, adjacent in y
        for x, y, w, h, ir, _ic in sorted(rects, key=lambda r: (r[0], r[2], r[4], r[1])):
            last = out[-1] if out else None
            if last and (last[0], last[2], last[4]) == (x, w, ir) and last[1] + last[3] == y:
                out[-1] = (x, last[1], w, last[3] + h, ir)
            else:
                out.append((x, y, w, h, ir))
    return tuple(out)
