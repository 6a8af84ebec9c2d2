"""Decoding a WSQ stream: the tables and blocks, the coefficients, dequantization (clause 4.3),
the inverse transform, and the pixels (``value * R + M``, rounded half up).
"""

from __future__ import annotations

import functools

import numpy as np

from gateway.imaging.errors import CORRUPT, TOO_LARGE, ImagingError

from .geometry import _geometry
from .huffman import _decode_block, _entropy_data, _workspace
from .stream import (
    _NUM_SUBBANDS,
    _TABLE_READERS,
    EOI,
    HARD_MAX_PIXELS,
    SOB,
    SOF,
    _corrupt,
    _finish,
    _frame,
    _segment,
    _Tables,
    _u16_at,
)
from .transform import _Arena, _line_plan, _synth_columns, _synth_rows


def decode(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode a WSQ stream to an 8-bit grey image (numpy uint8, shape (height, width))."""
    try:
        with np.errstate(all="ignore"):
            return _decode(data, max_pixels)
    except ImagingError:
        raise
    except MemoryError:
        raise ImagingError(TOO_LARGE, "WSQ: not enough memory to decode the image") from None
    except Exception as exc:  # pragma: no cover - a bug must still surface as ImagingError
        raise ImagingError(CORRUPT, f"WSQ: decoder failure ({type(exc).__name__}: {exc})") from exc


def _decode(data: bytes, max_pixels: int | None) -> np.ndarray:
    header, tables, pos = _frame(data)
    data = bytes(data) if not isinstance(data, bytes) else data
    width, height = header.width, header.height
    if width == 0 or height == 0:
        raise _corrupt(f"image size {width} x {height}", pos - 15, SOF)
    limit = HARD_MAX_PIXELS if max_pixels is None else min(max_pixels, HARD_MAX_PIXELS)
    if width * height > limit:
        raise ImagingError(
            TOO_LARGE,
            f"WSQ: image of {width} x {height} pixels (SOF, frame header ending at byte "
            f"{pos}) exceeds the limit of {limit}",
        )
    stages, subbands = _geometry(width, height)

    arr = np.frombuffer(data, np.uint8)
    ff = np.flatnonzero(arr == 0xFF)
    follow = np.full(ff.size, 0xFF, np.int64)
    inside = ff + 1 < arr.size
    follow[inside] = arr[ff[inside] + 1]
    ff_markers = ff[follow != 0]  # FF xx (xx != 0), or a final FF: a marker (or truncation)
    ff_stuffed = ff[follow == 0]  # FF 00: a data byte FF

    # Blocks and the tables between them (clause 3: tables may precede any block).
    symbols, extras = [], []
    marker = _u16_at(data, pos, "marker")
    blocks = coded = 0
    while marker != EOI:  # each turn consumes at least 4 bytes
        here = pos
        if marker == SOB:
            seg = _segment(data, pos + 2, SOB)
            table_id = seg.u8()
            pos = _finish(seg)
            table = (tables.huff or {}).get(table_id)
            if table is None:
                raise _corrupt(f"block uses undefined Huffman table {table_id}", here, SOB)
            chunk, pos = _entropy_data(data, arr, ff_markers, ff_stuffed, pos)
            coded += chunk.size
            if coded > width * height + 65536:  # 8 bits a pixel: more than any WSQ needs
                raise _corrupt(f"{coded} bytes of coded data for {width * height} pixels",
                               here, SOB)  # fmt: skip
            syms, extra = _decode_block(chunk, table, here)
            symbols.append(syms)
            extras.append(extra)
            blocks += 1
        elif marker in _TABLE_READERS:
            seg = _segment(data, pos + 2, marker)
            _TABLE_READERS[marker](seg, tables)
            pos = seg.end
        else:
            raise _corrupt(f"unexpected marker 0x{marker:04X}", pos)
        marker = _u16_at(data, pos, "marker")
    if not blocks:
        raise _corrupt("no SOB block before EOI", pos, EOI)
    if tables.qbin is None:
        raise _corrupt("no DQT quantization table", pos, EOI)
    if tables.lofilt is None:
        raise _corrupt("no DTT transform table", pos, EOI)

    where, bands, values = _coefficients(symbols, extras, tables, subbands, width, height, pos)
    npix = width * height
    floats = _workspace().floats(10 * npix + 65536)  # only now: the stream is complete
    image = floats[:npix].reshape(height, width)
    _dequantize(image, where, bands, values, tables)
    _reconstruct(image, floats[npix : 2 * npix], floats[2 * npix :], stages, tables, pos)
    # pixel = value * R + M, rounded half up (NBIS adds 0.5 and truncates), clipped.
    image *= np.float32(header.scale)
    image += np.float32(header.shift)
    image += np.float32(0.5)
    # clip (NaN, possible only with absurd filter tables, stays NaN and casts to some byte)
    np.clip(image, np.float32(0.0), np.float32(255.0), out=image)
    return image.astype(np.uint8)


# per symbol: coefficients it stands for (105/106: the escape bits say), and its value
_COUNT = np.ones(256, np.int64)
_COUNT[1:101] = np.arange(1, 101)
_COUNT[[105, 106]] = 0
_VALUE = np.zeros(256, np.int64)
_VALUE[107:255] = np.arange(107, 255) - 180
_SIGN = np.zeros(256, np.int64)  # escapes 101..104: the value is +/- the escape bits
_SIGN[[101, 103]] = 1
_SIGN[[102, 104]] = -1


def _placement(width: int, height: int, present: tuple):
    """For the coefficient stream of the subbands ``present``: the flat image index of each
    coefficient (row by row within a subband, subbands in order) and its subband number.
    Cached for images up to 2 Mpx (the arrays take 5 bytes per pixel)."""
    if width * height <= 1 << 21:
        return _placement_cached(width, height, present)
    return _build_placement(width, height, present)


def _build_placement(width: int, height: int, present: tuple):
    _stages, subbands = _geometry(width, height)
    index, band = [], []  # int32: the image has at most HARD_MAX_PIXELS pixels
    for k in present:
        x, y, w, h = subbands[k]
        rows = (np.arange(y, y + h, dtype=np.int32) * width)[:, None]
        index.append((rows + np.arange(x, x + w, dtype=np.int32)).ravel())
        band.append(np.full(w * h, k, np.int8))
    return np.concatenate(index), np.concatenate(band)


_placement_cached = functools.lru_cache(maxsize=8)(_build_placement)


def _coefficients(symbols, extras, tables, subbands, width, height, pos):
    """The non-zero quantized coefficients: flat image indices, subband numbers, values."""
    syms = np.concatenate(symbols)
    extra = np.concatenate(extras)
    if np.any((syms == 0) | (syms == 255)):
        raise _corrupt("Huffman symbol 0 or 255 in the data", pos, SOB)
    counts = _COUNT[syms]
    escapes = np.flatnonzero((syms >= 101) & (syms <= 106))
    zrun = escapes[syms[escapes] >= 105]
    counts[zrun] = extra[zrun]
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0

    present = tuple(k for k in range(_NUM_SUBBANDS) if tables.qbin[k] != 0.0)
    needed = sum(subbands[k][2] * subbands[k][3] for k in present)
    if total < needed:
        raise _corrupt(f"{total} coefficients decoded, the subbands need {needed}", pos, EOI)
    if total > width * height:  # NBIS would write past its buffer
        raise _corrupt(f"{total} coefficients decoded for {width * height} pixels", pos, EOI)

    value = _VALUE[syms]
    value[escapes] = _SIGN[syms[escapes]] * extra[escapes]
    nonzero = np.flatnonzero(value)
    where = ends[nonzero] - 1
    # 16-bit escapes wrap to int16 as in NBIS (a C short)
    values = value[nonzero].astype(np.int16).astype(np.float32)
    inside = where < needed  # extra coefficients (up to the pixel count) are ignored, as NBIS
    if not inside.all():
        where, values = where[inside], values[inside]
    index, band = _placement(width, height, present)
    return index[where], band[where], values


def _dequantize(image, where, bands, p, tables) -> None:
    """Clause 4.3: q (p - C) + Z/2 for p > 0, q (p + C) - Z/2 for p < 0, in float32 as NBIS;
    placed at the flat indices ``where`` of the zeroed ``image``."""
    image.fill(0.0)
    if where.size:
        sign = np.sign(p)
        deq = tables.qbin[bands] * (p - sign * tables.center)
        deq += sign * (tables.zbin[bands] * np.float32(0.5))
        image.reshape(-1)[where] = deq


def _reconstruct(image, work_buffer, arena_buffer, stages, tables: _Tables, pos: int) -> None:
    """Undo the 20 splits, deepest first, in place: per stage all vertical syntheses (into a
    work array at the same coordinates), then all horizontal ones.  Regions of one stage with
    the same height (vertical) or width (horizontal) are filtered together."""
    filters = (tables.lofilt, tables.hifilt)
    lsz, hsz = filters[0].size, filters[1].size  # type: ignore[union-attr]
    work = work_buffer.reshape(image.shape)
    arena = _Arena(arena_buffer)
    for columns, rows in stages:
        for axis, group, src, dst in ((0, columns, image, work), (1, rows, work, image)):
            by_length: dict = {}
            for x, y, w, h, inv, *zero_high in group:
                region = (src[y : y + h, x : x + w], dst[y : y + h, x : x + w], inv)
                by_length.setdefault((w if axis else h, bool(zero_high)), []).append(region)
            for (length, zero_high), regions in by_length.items():
                plan = _line_plan(length, lsz, hsz)
                if plan is None:
                    raise _corrupt(f"image too small for its filters (a split of {length})",
                                   pos, SOF)  # fmt: skip
                if zero_high:
                    _synth_columns(regions, filters, plan, arena, zero_high=True)
                    continue
                synth = _synth_rows if axis else _synth_columns
                if plan.width > 2 * length:
                    # short bands (reference walk): the extension arrays are several times the
                    # region, so a very long thin region goes in pieces (bounded memory)
                    for piece in _pieces(regions, axis):
                        synth(piece, filters, plan, arena)
                else:
                    synth(regions, filters, plan, arena)


def _pieces(regions, axis: int, size: int = 1024):
    """Each region cut across its filtering direction into parts of at most ``size`` lines."""
    for src, dst, inv in regions:
        n = src.shape[1 - axis]
        for i in range(0, n, size):
            cut = (slice(None), slice(i, i + size)) if axis == 0 else (slice(i, i + size),)
            yield [(src[cut], dst[cut], inv)]
