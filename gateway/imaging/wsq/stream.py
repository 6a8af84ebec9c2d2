"""The WSQ stream: markers, bounded reading of marker segments, the table segments (DTT,
DQT, DHT as lookup tables, COM) and the frame header (spec clauses 3 and 4).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from gateway.imaging.errors import CORRUPT, ImagingError

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
