"""A pure-numpy decoder for FBI WSQ fingerprint images (CJIS IAFIS-IC-0110, WSQ Gray-scale
Fingerprint Image Compression Specification, version 3).

Public API::

    pixels = decode(data, max_pixels=None)   # bytes -> numpy uint8 (height, width)
    header = read_header(data)               # width, height, ppi, black, white ... (cheap)

Every problem with the input raises :class:`gateway.imaging.errors.ImagingError` with code
``IMG_CORRUPT`` (or ``IMG_TOO_LARGE`` when the frame header declares more than ``max_pixels``
pixels; that is checked before anything big is allocated).  Messages name the byte offset and
the marker segment where decoding stopped.  The output is pixel-identical to NIST NBIS
(``wsq_decode_mem``, the C decoder of the PyPI ``wsq`` package) on conforming streams: every
floating-point step is done in float32 in NBIS's order of operations.

Stream structure (spec clause 3/4; all integers big-endian)
---------------------------------------------------------
A WSQ file is a sequence of marker segments, in the style of JPEG::

    SOI  FFA0                      start of image, no length
    COM  FFA8  Lc  text            comment; "NIST_COM" comments carry PPI etc.
    DTT  FFA4  Lt  ...             transform table: the two analysis filters (half of each,
                                   they are symmetric) as sign / decimal scale / uint32 value
    DQT  FFA5  Lq  ...             quantization table: bin centre C, then for the 64
                                   subbands the bin width Q and zero-bin width Z (0 = absent)
    DHT  FFA6  Lh  {Th BITS[16] HUFFVAL[n]}...   Huffman tables, JPEG style (Annex C canonical)
    SOF  FFA2  Lf  A B Y X  Em M Er R  Ev Sf     frame: black, white, height, width, shift M,
                                                 scale R, encoder number, software id
    SOB  FFA3  Ls  Td  <entropy-coded data>       block header + Huffman-coded coefficients
    ... tables and further blocks (normally 3 blocks: subbands 0-18, 19-51, 52-59) ...
    EOI  FFA1                      end of image

Decimal fields are an unsigned integer and a power-of-ten exponent (value / 10**scale); NBIS
divides by 10 one step at a time in float32, and so do we (the low bits matter).

Coefficients and subbands
-------------------------
The image is decomposed by a 2-D separable wavelet transform into 64 subbands (spec Figure 3),
along a fixed tree of 20 two-dimensional splits (the "w_tree" of NBIS; :func:`_geometry`
builds it).  Each split cuts a rectangle into a top-left / top-right / bottom-left /
bottom-right quadrant; at odd lengths the low-pass half gets the extra sample, except in bands
that were high-pass filtered before (spectral inversion: there the high band comes first,
spec clause A.2).  Subbands 60-63 are never transmitted (they are zero).  Subband ``k`` is
present iff its Q is non-zero; its coefficients follow each other row by row, the subbands in
increasing order, across all blocks (the block boundaries carry no meaning for the order).

Huffman coding (clause 5)
-------------------------
Symbols of the canonical Huffman code (codes up to 16 bits, byte stuffing: 0xFF is followed
by 0x00 inside coded data) mean::

    1..100   a run of that many zero coefficients
    101/102  next 8 bits: a positive / negative coefficient
    103/104  next 16 bits: a positive / negative coefficient
    105/106  next 8 / 16 bits: a run of zeros of that length
    107..254 the coefficient symbol - 180 (-73 .. 74)

The decoder looks the code up at *every* bit position at once (a table indexed by the next
L bits, L = longest code) and then follows the chain of real symbol starts from bit 0 by
pointer doubling, so no Python loop runs per symbol.

Dequantization (clause 4.3): ``q * (p - C) + Z/2`` for p > 0, ``q * (p + C) - Z/2`` for p < 0,
0 for p = 0.

Inverse transform (clause A): every split is undone by a vertical then a horizontal synthesis
(two-channel polyphase filtering with symmetric extension of each band; whole-sample at the
low band's left edge, half-sample at the high band's, the right edges depending on the parity
of the length).  Filter taps are applied in NBIS's order so that the float32 sums round alike.
Pixels are ``value * R + M``, rounded half up, clipped to 0..255.

Where this decoder and NBIS part ways (all on broken or unusual streams)
-----------------------------------------------------------------------
* Segment lengths are checked against their content (NBIS ignores them except for DHT/COM).
* Fewer coefficients than the subbands need is an error (NBIS reads uninitialised memory);
  more than the pixel count is an error (NBIS writes past its buffer); extra coefficients
  in between are ignored, as NBIS does.  A bit pattern that starts no Huffman code is an
  error unless it is the last 16 bits of a block (NBIS then meets the marker and stops).
* Splits shorter than the filters' centre (images under about 48 pixels a side) are refused:
  NBIS reads outside the band there.  Only odd filter lengths 3..31 are accepted (WSQ uses
  9 / 7; NBIS also has an even-length variant).  Images above HARD_MAX_PIXELS are refused.

Memory: about 40 bytes per pixel of float32 work space, kept per thread between decodes for
images up to ``_KEEP_BYTES`` (fresh large arrays page-fault on every use, which costs
milliseconds per image), plus a few bytes per bit of coded data for the Huffman stage.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from gateway.imaging.errors import CORRUPT, TOO_LARGE, ImagingError

__all__ = ["WsqHeader", "decode", "read_header", "HARD_MAX_PIXELS"]

SOI, EOI, SOF, SOB, DTT, DQT, DHT, DRT, COM = (
    0xFFA0,
    0xFFA1,
    0xFFA2,
    0xFFA3,
    0xFFA4,
    0xFFA5,
    0xFFA6,
    0xFFA7,
    0xFFA8,
)
_NAMES = {
    SOI: "SOI",
    EOI: "EOI",
    SOF: "SOF",
    SOB: "SOB",
    DTT: "DTT",
    DQT: "DQT",
    DHT: "DHT",
    DRT: "DRT",
    COM: "COM",
}

#: Ceiling on width * height whatever ``max_pixels`` says (4096 x 4096: the float32 work
#: arrays take about 40 bytes per pixel).
HARD_MAX_PIXELS = 1 << 24
_MAX_TABLES = 8  # Huffman table ids 0..7
_MAX_FILTER = 31  # longest filter accepted (the standard one has 9 / 7 taps)
_NUM_SUBBANDS = 60  # subbands 60..63 are never transmitted


@dataclass(frozen=True)
class WsqHeader:
    """What the SOF segment (and the NISTCOM comment) says about the image."""

    width: int
    height: int
    ppi: int | None
    black: int
    white: int
    shift: float  # M: pixel = value * R + M (a float32 value)
    scale: float  # R (a float32 value)
    encoder: int
    software: int


# --------------------------------------------------------------------------------------------
# errors and byte reading


def _corrupt(message: str, offset: int, marker: int | str | None = None) -> ImagingError:
    if isinstance(marker, int):
        marker = _NAMES.get(marker, f"marker 0x{marker:04X}")
    where = f" in {marker}" if marker else ""
    return ImagingError(CORRUPT, f"WSQ: {message} at byte {offset}{where}")


class _Segment:
    """Bounded reading of one marker segment (never past its declared end)."""

    __slots__ = ("data", "pos", "end", "marker")

    def __init__(self, data: bytes, pos: int, end: int, marker: int):
        self.data, self.pos, self.end, self.marker = data, pos, end, marker

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            limit = "end of data" if self.end >= len(self.data) else "end of segment"
            raise _corrupt(f"{limit} reached reading {n} byte(s)", self.pos, self.marker)
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")


def _u16_at(data: bytes, pos: int, what: str) -> int:
    if pos + 2 > len(data):
        raise _corrupt(f"data ends where a {what} was expected", pos)
    return (data[pos] << 8) | data[pos + 1]


def _segment(data: bytes, pos: int, marker: int) -> _Segment:
    """The segment whose 2-byte length field is at ``pos`` (the length counts itself)."""
    length = _u16_at(data, pos, "segment length")
    if length < 2:
        raise _corrupt(f"segment length {length} < 2", pos, marker)
    if pos + length > len(data):
        raise _corrupt(f"segment length {length} runs past the end of the data", pos, marker)
    seg = _Segment(data, pos + 2, pos + length, marker)
    return seg


def _finish(seg: _Segment) -> int:
    if seg.pos != seg.end:
        raise _corrupt(f"{seg.end - seg.pos} unexpected byte(s) at the end of segment", seg.pos,
                       seg.marker)  # fmt: skip
    return seg.end


@functools.lru_cache(maxsize=4096)
def _decimal(value: int, scale: int) -> np.float32:
    """value / 10**scale as NBIS computes it: float32, divided by 10 one step at a time."""
    f = np.float32(value)
    for _ in range(scale):  # scale is one byte: at most 255 steps
        f = np.float32(float(f) / 10.0)  # double division, rounded back to float
    return f


# --------------------------------------------------------------------------------------------
# table segments


@dataclass
class _Tables:
    lofilt: np.ndarray | None = None  # synthesis low-pass filter (float32)
    hifilt: np.ndarray | None = None  # synthesis high-pass filter
    center: np.float32 | None = None  # quantizer bin centre C
    qbin: np.ndarray | None = None  # 64 x Q (float32)
    zbin: np.ndarray | None = None  # 64 x Z
    huff: dict | None = None  # table id -> _Huffman
    ppi: int | None = None


def _read_dtt(seg: _Segment, tables: _Tables) -> None:
    # Clause 3.1.1: the counts of the two *analysis* filters, low-pass first, then each
    # filter's second half (it is symmetric).  The synthesis filters are the analysis ones
    # modulated by (-1)**n and swapped: the 9-tap analysis low-pass becomes the 9-tap synthesis
    # high-pass and vice versa (this is why NBIS names the first count "hisz").
    hisz, losz = seg.u8(), seg.u8()
    for size in (hisz, losz):
        if size % 2 == 0 or not 3 <= size <= _MAX_FILTER:
            raise _corrupt(
                f"unsupported filter length {size} (odd lengths 3 to {_MAX_FILTER} are decoded)",
                seg.pos - 1,
                DTT,
            )
    filters = []
    for size in (hisz, losz):
        half = (size + 1) // 2
        coeffs = np.zeros(size, np.float32)
        centre = half - 1
        for k in range(half):
            sign, scale, magnitude = seg.u8(), seg.u8(), seg.u32()
            value = _decimal(magnitude, scale)
            if sign:
                value = -value
            if k % 2:  # modulation by (-1)**k
                value = -value
            coeffs[centre + k] = value
            coeffs[centre - k] = value
        filters.append(coeffs)
    tables.hifilt, tables.lofilt = filters
    _finish(seg)


_DQT_ENTRY = np.dtype([("qs", "u1"), ("q", ">u2"), ("zs", "u1"), ("z", ">u2")])


def _decimals(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """:func:`_decimal` for arrays (the same float32 steps)."""
    f = values.astype(np.float32)
    for k in range(int(scales.max(initial=0))):  # at most 255 steps
        m = scales > k
        f[m] = (f[m].astype(np.float64) / 10.0).astype(np.float32)
    return f


def _read_dqt(seg: _Segment, tables: _Tables) -> None:
    scale = seg.u8()
    tables.center = _decimal(seg.u16(), scale)
    entries = np.frombuffer(seg.take(64 * 6), _DQT_ENTRY)
    tables.qbin = _decimals(entries["q"], entries["qs"])
    tables.zbin = _decimals(entries["z"], entries["zs"])
    _finish(seg)


class _Huffman:
    """A canonical Huffman table as lookup tables indexed by the next ``bits`` bits."""

    __slots__ = ("bits", "symbol", "length", "advance")

    def __init__(self, counts: bytes, values: bytes, offset: int):
        # Canonical codes (JPEG Annex C): the codes of each length follow each other from
        # the first code of that length, (last code of the shorter lengths + 1) << 1.  Read
        # MSB first they tile the code space in order, so the table of the next `bits` bits
        # is each symbol repeated over its code's span; the remainder starts no code.
        code = 0
        for length, n in enumerate(counts, 1):
            if code + n > 1 << length:
                raise _corrupt("Huffman code lengths over-subscribe the code space",
                               offset, DHT)  # fmt: skip
            code = (code + n) << 1
        n_codes = np.frombuffer(counts, np.uint8)
        lengths = np.repeat(np.arange(1, 17, dtype=np.int64), n_codes)
        if not lengths.size:
            raise _corrupt("empty Huffman table", offset, DHT)
        self.bits = bits = int(lengths[-1])
        spans = np.left_shift(1, bits - lengths)
        used = int(spans.sum())
        size = 1 << bits
        syms = np.frombuffer(values, np.uint8)
        self.symbol = np.zeros(size, np.uint8)
        self.length = np.zeros(size, np.uint8)  # 0 = no code starts with these bits
        # code length + escape bits; 1 where no code starts (such a start is caught later)
        self.advance = np.ones(size, np.uint8)
        self.symbol[:used] = np.repeat(syms, spans)
        self.length[:used] = np.repeat(lengths.astype(np.uint8), spans)
        self.advance[:used] = np.repeat((lengths + _ESCAPE_BITS[syms]).astype(np.uint8), spans)


_ESCAPE_BITS = np.zeros(256, np.int64)  # raw bits after symbols 101..106 (clause 5)
_ESCAPE_BITS[[101, 102, 105]] = 8
_ESCAPE_BITS[[103, 104, 106]] = 16


def _read_dht(seg: _Segment, tables: _Tables) -> None:
    if tables.huff is None:
        tables.huff = {}
    while seg.pos < seg.end:  # each table consumes at least 17 bytes
        start = seg.pos
        table_id = seg.u8()
        if table_id >= _MAX_TABLES:
            raise _corrupt(f"Huffman table id {table_id} > {_MAX_TABLES - 1}", start, DHT)
        counts = seg.take(16)
        total = sum(counts)
        if total > 256:
            raise _corrupt(f"Huffman table declares {total} values", start + 1, DHT)
        values = seg.take(total)
        tables.huff[table_id] = _Huffman(counts, values, start)


def _read_com(seg: _Segment, tables: _Tables) -> None:
    text = seg.take(seg.end - seg.pos)
    if text.startswith(b"NIST_COM") and tables.ppi is None:
        for line in text.split(b"\n"):
            key, _, value = line.strip().partition(b" ")
            if key == b"PPI":
                try:
                    ppi = int(value.strip())
                except ValueError:
                    continue
                if ppi > 0:
                    tables.ppi = ppi
                break


_TABLE_READERS = {DTT: _read_dtt, DQT: _read_dqt, DHT: _read_dht, COM: _read_com}


def _read_sof(seg: _Segment, ppi: int | None) -> WsqHeader:
    black, white = seg.u8(), seg.u8()
    height, width = seg.u16(), seg.u16()
    scale = seg.u8()
    shift = _decimal(seg.u16(), scale)
    scale = seg.u8()
    rscale = _decimal(seg.u16(), scale)
    encoder, software = seg.u8(), seg.u16()
    _finish(seg)
    return WsqHeader(
        width, height, ppi, black, white, float(shift), float(rscale), encoder, software
    )


def _frame(data: bytes, tables_too: bool = True) -> tuple[WsqHeader, _Tables, int]:
    """Parse SOI, the tables (or only skip them) and the frame header; return the position
    after SOF."""
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except Exception:
            raise _corrupt("the input is not bytes", 0) from None
    if _u16_at(data, 0, "SOI marker") != SOI:
        raise _corrupt("no SOI marker (FFA0)", 0)
    tables = _Tables()
    pos = 2
    while True:  # every turn consumes at least 4 bytes
        marker = _u16_at(data, pos, "marker")
        if marker == SOF:
            seg = _segment(data, pos + 2, SOF)
            return _read_sof(seg, tables.ppi), tables, seg.end
        reader = _TABLE_READERS.get(marker)
        if reader is None:
            raise _corrupt(f"unexpected marker 0x{marker:04X} before SOF", pos)
        seg = _segment(data, pos + 2, marker)
        if tables_too or marker == COM:
            reader(seg, tables)
        pos = seg.end


def read_header(data: bytes) -> WsqHeader:
    """Width, height, PPI (NISTCOM comments before SOF, else None), black/white, M and R."""
    header, _tables, _pos = _frame(data, tables_too=False)
    return header


# --------------------------------------------------------------------------------------------
# geometry: the 20 two-dimensional splits and the 64 subbands


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


# --------------------------------------------------------------------------------------------
# entropy-coded data


class _Workspace:
    """Per-thread scratch memory reused between decodes.  Fresh large arrays come from mmap
    and page-fault on first touch (several microseconds per 4 KiB page in a VM: milliseconds
    per image), so the float image, the transform temporaries and the Huffman arrays are cut
    from two buffers that are kept (up to _KEEP_BYTES) instead."""

    def __init__(self):
        self.f32 = np.empty(0, np.float32)
        self.i64 = np.empty(0, np.int64)
        self.ints_used = 0

    def floats(self, n: int) -> np.ndarray:
        if n > self.f32.size:
            buf = np.empty(n, np.float32)
            if 4 * n > _KEEP_BYTES:
                return buf
            self.f32 = buf
        return self.f32[:n]

    def reset_ints(self, n: int) -> None:
        if n > self.i64.size:
            buf = np.empty(n, np.int64)
            if 8 * n <= _KEEP_BYTES:
                self.i64 = buf
            else:
                self._big = buf
        self.ints_used = 0

    def ints(self, n: int) -> np.ndarray:
        buf = self.i64 if self.i64.size >= self.ints_used + n else getattr(self, "_big", None)
        if buf is None or buf.size < self.ints_used + n:  # pragma: no cover - sized ahead
            return np.empty(n, np.int64)
        view = buf[self.ints_used : self.ints_used + n]
        self.ints_used += n
        return view


_KEEP_BYTES = 32 << 20  # per thread: enough for single fingers, not kept for slaps
_local = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = _Workspace()
    return ws


_JUMPS = 3  # pointer-doubling levels: the Python walk visits every 8th symbol


def _chain(nxt: np.ndarray, nbits: int, start: int = 0) -> np.ndarray:
    """Bit positions of the symbols reached from bit ``start`` by ``nxt`` (position -> next
    symbol).

    ``nxt[nbits]`` (END) and ``nxt[nbits + 1]`` (BAD) point to themselves.  Pointer doubling:
    the successors 2, 4, ... 2**J symbols ahead are computed for all positions at once, a short
    Python walk takes every 2**J-th start, and the starts in between are filled in level by
    level (each level interleaves the starts with their 2**j-th successors, so the result
    stays sorted).
    """
    levels = [nxt]
    for _ in range(_JUMPS):
        last = levels[-1]
        levels.append(last[last])
    top = memoryview(levels[-1])  # type: ignore[arg-type]
    starts = []
    p = start
    while p < nbits:  # positions strictly increase: at most nbits turns (far fewer in fact)
        starts.append(p)
        p = top[p]
    s = np.array(starts, np.int64)
    for level in reversed(levels[:-1]):
        both = np.empty(2 * s.size, np.int64)
        both[0::2] = s
        both[1::2] = level[s]
        s = both
    return s


_ARANGE = np.arange(0, dtype=np.int64)


_CHUNK_BYTES = 1 << 15  # longer blocks are decoded in parts (bounded work arrays)


def _decode_block(block: np.ndarray, table: _Huffman, where: int):
    """Symbols of one entropy-coded block (unstuffed bytes): (symbols, escape bits) arrays."""
    n = block.size
    if n <= _CHUNK_BYTES:
        syms, extra, _next = _decode_span(block, 0, n, 0, table, where)
        return syms, extra
    parts = []
    start = 0  # bit offset of the first symbol in the part
    for b0 in range(0, n, _CHUNK_BYTES):  # at most n / _CHUNK_BYTES turns
        b1 = min(n, b0 + _CHUNK_BYTES)
        syms, extra, start = _decode_span(block, b0, b1, start, table, where)
        parts.append((syms, extra))
        if start < 0:  # no symbol reaches past the part (only in the last one)
            break
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _decode_span(block: np.ndarray, b0: int, b1: int, start: int, table: _Huffman, where):
    """The symbols starting in bytes b0..b1 of the block, the first at bit ``start`` of byte
    b0, and the bit offset of the next symbol in byte b1 (-1 at the end of the block)."""
    global _ARANGE
    n = b1 - b0
    nbits = 8 * n
    final = b1 == block.size
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), -1
    ws = _workspace()
    ws.reset_ints((nbits + 2) * 3 + 3 * n + 16)
    bits = table.bits
    look = block[b0 : b1 + 6]  # bits after the part: for codes and escapes that cross it
    padded = ws.ints(n + 6)
    padded[: look.size] = look
    padded[look.size :] = 0
    v = ws.ints(n + 4)  # 24 bits from each byte on
    np.left_shift(padded[: n + 4], 16, out=v)
    v |= padded[1 : n + 5] << 8
    v |= padded[2 : n + 6]
    # the next `bits` bits at every bit position p = 8 i + s: computed shift by shift (long
    # inner loops), then transposed into bit order
    shifts = np.arange(24 - bits, 16 - bits, -1, dtype=np.int64)[:, None]
    by_shift = ws.ints(nbits).reshape(8, n)
    np.right_shift(v[None, :n], shifts, out=by_shift)
    np.bitwise_and(by_shift, (1 << bits) - 1, out=by_shift)
    win = ws.ints(nbits)
    win.reshape(n, 8)[...] = by_shift.T
    nxt = ws.ints(nbits + 2)
    adv = np.take(table.advance, win)  # uint8: a small table, a cheap gather
    if _ARANGE.size < nbits:
        _ARANGE = np.arange(max(nbits, 2 * _ARANGE.size), dtype=np.int64)
    np.add(_ARANGE[:nbits], adv, out=nxt[:nbits])
    end, bad = nbits, nbits + 1
    nxt[end], nxt[bad] = end, bad
    padding = set()
    if final:
        # The last bits: a code that does not fit is the padding before the next marker
        # (NBIS meets the marker while reading it and stops), and so are up to 16 bits that
        # start no code at all (NBIS reads on, bit by bit, into the marker); escape bits
        # that do not fit are an error.
        tail = max(0, nbits - 40)
        p = np.arange(tail, nbits)
        w = win[tail:]
        length = table.length[w].astype(np.int64)
        cut = (length == 0) & (p + 16 >= nbits) | (length > 0) & (p + length > nbits)
        short = (length > 0) & ~cut & (p + table.advance[w] > nbits)  # escape bits cut off
        nxt[tail:nbits][cut] = end
        nxt[tail:nbits][short] = bad
        padding = set((p[cut]).tolist())  # starts of codes cut by the end: not symbols
    else:
        np.minimum(nxt, end, out=nxt)  # symbols after the part: its end (for now)
        nxt[bad] = bad
    starts = _chain(nxt, nbits, start)
    count = int(np.searchsorted(starts, nbits))
    if count < starts.size and starts[count] == bad:
        p = int(starts[count - 1]) if count else 0  # type: ignore[assignment]
        raise _corrupt(f"escape bits cut off at bit {p % 8} of block byte {b0 + p // 8}",
                       where, SOB)  # fmt: skip
    if count and int(starts[count - 1]) in padding:
        count -= 1
    starts = starts[:count]
    w = win[starts]
    lengths = table.length[w]
    if not lengths.all():  # a position where no code starts (NBIS: undefined behaviour)
        p = int(starts[np.argmin(lengths)])  # type: ignore[assignment]
        raise _corrupt(f"invalid Huffman code at bit {p % 8} of block byte {b0 + p // 8}",
                       where, SOB)  # fmt: skip
    syms = table.symbol[w]
    extra = np.zeros(count, np.int64)
    esc = np.flatnonzero((syms >= 101) & (syms <= 106))
    if esc.size:
        q = starts[esc] + lengths[esc]
        nb = _ESCAPE_BITS[syms[esc]]  # 8 or 16 raw bits, MSB first
        extra[esc] = (v[q >> 3] >> (24 - nb - (q & 7))) & ((1 << nb) - 1)
    following = -1
    if not final and count:
        last = int(starts[-1])
        following = last + int(adv[last]) - nbits
    return syms, extra, following


def _entropy_data(data: bytes, arr: np.ndarray, ff_markers: np.ndarray, ff_stuffed, pos: int):
    """The unstuffed bytes from ``pos`` to the next marker, and the marker's position."""
    k = int(np.searchsorted(ff_markers, pos))
    if k >= ff_markers.size:
        raise _corrupt("entropy-coded data runs to the end of the data (no EOI)", pos, SOB)
    stop = int(ff_markers[k])
    lo, hi = np.searchsorted(ff_stuffed, (pos, stop))
    chunk = arr[pos:stop]
    if hi > lo:
        keep = np.ones(stop - pos, bool)
        keep[ff_stuffed[lo:hi] + 1 - pos] = False  # drop the 00 after each data FF
        chunk = chunk[keep]
    return chunk, stop


# --------------------------------------------------------------------------------------------
# inverse wavelet transform


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


# --------------------------------------------------------------------------------------------
# decoder


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
