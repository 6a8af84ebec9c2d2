"""Cheap reading of image stream headers: what a stream is and how large it claims to be.

Nothing here decompresses.  The functions look at magic bytes and walk marker segments or
boxes just far enough to find the frame size, so that a decompression bomb (a tiny stream
claiming 60000 x 60000 pixels) is refused before any decoder allocates memory for it.

Formats: WSQ (FBI IAFIS-IC-0110 markers FFA0..FFA8), JPEG (ISO/IEC 10918-1 SOFn; JPEG-LS SOF55),
PNG (IHDR), JPEG 2000 (JP2 ``ihdr`` box and codestream SIZ/COD, ISO/IEC 15444-1), TIFF (IFD 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import CORRUPT, NO_HEADER, ImagingError

WSQ, JPEG, PNG, JP2, J2K, TIFF = "WSQ", "JPEG", "PNG", "JP2", "J2K", "TIFF"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_MAX_SEGMENTS = 10_000  # no real header has this many marker segments or boxes


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """What a stream's header says: container ``kind``, size, samples per pixel and bits.

    ``process`` names the coding process where it matters: JPEG ``"baseline"``,
    ``"extended"``, ``"progressive"``, ``"lossless"`` (SOF3), ``"jpeg-ls"``, ``"hierarchical"``,
    ``"arithmetic"``; JPEG 2000 ``"reversible"`` (5-3 wavelet) or ``"irreversible"`` (9-7).
    """

    kind: str
    width: int
    height: int
    components: int = 1
    precision: int = 8
    process: str | None = None
    ppi: float | None = None

    @property
    def bits(self) -> int:
        """Bits per pixel, as BPX counts them (8 gray, 24 RGB)."""
        return self.components * self.precision


def sniff(data) -> str | None:
    """The container kind of ``data`` from its magic bytes, or ``None``."""
    head = bytes(data[:12])
    if head[:2] == b"\xff\xa0":
        return WSQ
    if head[:2] == b"\xff\xd8":
        return JPEG
    if head[:8] == _PNG_MAGIC:
        return PNG
    if head == _JP2_MAGIC:
        return JP2
    if head[:4] == b"\xff\x4f\xff\x51":
        return J2K
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    return None


def read_header(data, kind: str | None = None) -> StreamHeader:
    """Parse the header of ``data`` (of ``kind``, sniffed when not given).

    Raises :class:`ImagingError` ``IMG_NO_HEADER`` when no frame header is found and
    ``IMG_CORRUPT`` when the header itself is malformed.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    kind = kind or sniff(data)
    if kind is None:
        raise ImagingError(NO_HEADER, "the data does not start with a known image signature")
    try:
        return _READERS[kind](data)
    except ImagingError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise ImagingError(CORRUPT, f"malformed {kind} header ({exc})") from None


def _u16(data: bytes, pos: int) -> int:
    return struct.unpack_from(">H", data, pos)[0]


def _segment_end(data: bytes, pos: int, kind: str) -> int:
    """End of the marker segment whose length field is at ``pos`` (checked against the data)."""
    if pos + 2 > len(data):
        raise ImagingError(CORRUPT, f"{kind} marker segment cut short at byte {pos}")
    length = _u16(data, pos)
    if length < 2 or pos + length > len(data):
        raise ImagingError(CORRUPT, f"{kind} marker segment at byte {pos - 2} has bad length")
    return pos + length


# -- WSQ ----------------------------------------------------------------------------------------
# FBI WSQ Gray-scale Fingerprint Image Compression Specification (IAFIS-IC-0110 v3), clause A:
# SOI FFA0, EOI FFA1, SOF FFA2, SOB FFA3, DTT FFA4, DQT FFA5, DHT FFA6, DRI FFA7, COM FFA8.
_WSQ_SOF, _WSQ_SOB, _WSQ_DTT, _WSQ_DQT, _WSQ_DHT, _WSQ_DRI, _WSQ_COM = range(0xA2, 0xA9)
_WSQ_EOI = 0xA1
_WSQ_MAX_TABLES = 8  # NBIS MAX_DHT_TABLES
_WSQ_MAX_FILTER = 32  # real filters have 7 and 9 taps
_WSQ_MIN_SIDE = 32  # smaller images cannot carry the 5-level decomposition of the spec


def _read_wsq(data: bytes) -> StreamHeader:
    """Walk every WSQ marker segment and check the tables before the C decoder sees them.

    The NBIS decoder inside PyPI ``wsq`` trusts the stream: truncated or inconsistent tables
    crash the process (segfault, found by fuzzing).  So the whole structure is validated here:
    segment lengths, filter and Huffman tables, and the block order up to EOI.
    """
    if data[:2] != b"\xff\xa0":
        raise ImagingError(NO_HEADER, "WSQ stream does not start with SOI (FFA0)")
    pos, frame, tables, have_dtt, have_dqt, blocks = 2, None, set(), False, False, 0
    n = len(data)
    for _ in range(_MAX_SEGMENTS):
        if pos + 2 > n:
            raise ImagingError(CORRUPT, "WSQ stream ends without EOI (FFA1)")
        if data[pos] != 0xFF:
            raise ImagingError(CORRUPT, f"WSQ marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == _WSQ_EOI:
            break
        if marker not in range(_WSQ_SOF, _WSQ_COM + 1):
            raise ImagingError(CORRUPT, f"unknown WSQ marker FF{marker:02X} at byte {pos}")
        start = pos + 2
        end = _segment_end(data, start, "WSQ")
        body = data[start + 2 : end]
        if marker == _WSQ_SOF:
            if frame is not None or len(body) != 15:
                raise ImagingError(CORRUPT, "WSQ frame header (FFA2) repeated or of bad length")
            height, width = _u16(body, 2), _u16(body, 4)
            frame = (width, height)
        elif marker == _WSQ_DTT:
            _check_wsq_dtt(body)
            have_dtt = True
        elif marker == _WSQ_DQT:
            if len(body) != 3 + 64 * 6:  # C (3 bytes), then Q and Z for 64 subbands
                raise ImagingError(CORRUPT, "WSQ quantization table (FFA5) of bad length")
            have_dqt = True
        elif marker == _WSQ_DHT:
            tables.update(_check_huffman_tables(body))
        elif marker == _WSQ_DRI:
            if len(body) != 2:
                raise ImagingError(CORRUPT, "WSQ restart interval (FFA7) of bad length")
        elif marker == _WSQ_SOB:
            if frame is None or not (have_dtt and have_dqt) or len(body) != 1:
                raise ImagingError(CORRUPT, "WSQ block (FFA3) before its frame and tables")
            if body[0] not in tables:
                raise ImagingError(CORRUPT, f"WSQ block uses undefined Huffman table {body[0]}")
            blocks += 1
            end = _skip_entropy_data(data, end)
        pos = end
    else:
        raise ImagingError(CORRUPT, "too many WSQ marker segments")
    if frame is None:
        raise ImagingError(NO_HEADER, "WSQ stream has no frame header (FFA2)")
    if blocks == 0:
        raise ImagingError(CORRUPT, "WSQ stream has no coded block (FFA3)")
    width, height = frame
    if width < _WSQ_MIN_SIDE or height < _WSQ_MIN_SIDE:
        raise ImagingError(CORRUPT, f"WSQ frame of {width} x {height} is too small to be real")
    return StreamHeader(WSQ, width, height, 1, 8, "wsq", _nistcom_ppi(data))


def _check_wsq_dtt(body: bytes) -> None:
    # L0, L1 (lowpass / highpass filter lengths), then the half-filters' coefficients,
    # each a sign byte, a scale byte and a 4-byte value.
    if len(body) < 2:
        raise ImagingError(CORRUPT, "WSQ transform table (FFA4) too short")
    lo, hi = body[0], body[1]
    if not (1 <= lo <= _WSQ_MAX_FILTER and 1 <= hi <= _WSQ_MAX_FILTER):
        raise ImagingError(CORRUPT, "WSQ transform table (FFA4) has implausible filter lengths")
    coefficients = (lo + 1) // 2 + (hi + 1) // 2
    if len(body) != 2 + 6 * coefficients:
        raise ImagingError(CORRUPT, "WSQ transform table (FFA4) of bad length")


def _check_huffman_tables(body: bytes) -> set[int]:
    """Table ids of a DHT segment; each table must be a complete-or-less prefix code."""
    ids, pos = set(), 0
    while pos < len(body):
        if pos + 17 > len(body):
            raise ImagingError(CORRUPT, "Huffman table cut short")
        table = body[pos]
        counts = body[pos + 1 : pos + 17]
        total = sum(counts)
        if table >= _WSQ_MAX_TABLES or not 0 < total <= 256 or pos + 17 + total > len(body):
            raise ImagingError(CORRUPT, "Huffman table with a bad id or symbol count")
        # Kraft: the codes of each length must fit the code space left by shorter codes.
        room = 1
        for count in counts:
            room = room * 2 - count
            if room < 0:
                raise ImagingError(CORRUPT, "Huffman table is not a prefix code")
        ids.add(table)
        pos += 17 + total
    return ids


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """Position of the marker ending the entropy-coded data that starts at ``pos``."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise ImagingError(CORRUPT, "WSQ coded block runs past the end of the data")
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xB0 <= nxt <= 0xB7:  # stuffed zero or restart marker
            pos += 2
            continue
        return pos


def _nistcom_ppi(data: bytes) -> float | None:
    """The ``PPI`` of a NISTCOM comment (FFA8), when the encoder wrote one."""
    head = data[:512]
    at = head.find(b"\nPPI ")
    if at < 0:
        return None
    value = head[at + 5 : at + 16].split(b"\n", 1)[0]
    try:
        ppi = float(value)
    except ValueError:
        return None
    return ppi if 0 < ppi < 100_000 else None


# -- JPEG ---------------------------------------------------------------------------------------
_SOF_PROCESS = {
    0xC0: "baseline",
    0xC1: "extended",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic",
    0xCA: "arithmetic",
    0xCB: "arithmetic",
    0xCD: "hierarchical",
    0xCE: "hierarchical",
    0xCF: "hierarchical",
    0xDE: "hierarchical",  # DHP: the size of the whole hierarchical image (10918-1 B.3.2)
    0xF7: "jpeg-ls",  # ISO/IEC 14495-1 SOF55
}


def _read_jpeg(data: bytes) -> StreamHeader:
    if data[:2] != b"\xff\xd8":
        raise ImagingError(NO_HEADER, "JPEG stream does not start with SOI (FFD8)")
    pos, n = 2, len(data)
    for _ in range(_MAX_SEGMENTS):
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > n:
            break
        if data[pos] != 0xFF:
            raise ImagingError(CORRUPT, f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            break  # EOI or SOS before any frame header
        start = pos + 2
        end = _segment_end(data, start, "JPEG")
        if marker in _SOF_PROCESS:
            if end - start < 8:
                raise ImagingError(CORRUPT, "JPEG frame header too short")
            precision = data[start + 2]
            height, width = _u16(data, start + 3), _u16(data, start + 5)
            components = data[start + 7]
            if height == 0:
                # Height 0 defers it to a DNL marker after the first scan (10918-1 B.2.5).
                raise ImagingError(CORRUPT, "JPEG frame height 0 (DNL) is not accepted")
            if width == 0 or not 1 <= components <= 4 or not 2 <= precision <= 16:
                raise ImagingError(CORRUPT, "JPEG frame header with impossible values")
            return StreamHeader(JPEG, width, height, components, precision, _SOF_PROCESS[marker])
        pos = end
    raise ImagingError(NO_HEADER, "JPEG stream has no frame header (SOFn)")


# -- PNG ----------------------------------------------------------------------------------------
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _read_png(data: bytes) -> StreamHeader:
    if data[:8] != _PNG_MAGIC or data[12:16] != b"IHDR" or len(data) < 29:
        raise ImagingError(NO_HEADER, "PNG stream does not start with an IHDR chunk")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or not width or not height:
        raise ImagingError(CORRUPT, "PNG IHDR with impossible values")
    precision = 8 if colour == 3 else depth  # palette entries are 8-bit samples
    return StreamHeader(PNG, width, height, _PNG_CHANNELS[colour], precision, "png")


# -- JPEG 2000 ----------------------------------------------------------------------------------
def _boxes(data: bytes, pos: int, end: int):
    """(type, body start, body end) of the boxes in data[pos:end] (ISO/IEC 15444-1 I.4)."""
    for _ in range(_MAX_SEGMENTS):
        if pos + 8 > end:
            return
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if length == 1:
            length = struct.unpack_from(">Q", data, body)[0]
            body += 8
        elif length == 0:
            length = end - pos
        if length < body - pos or pos + length > end:
            raise ImagingError(CORRUPT, f"JPEG 2000 box {kind!r} has bad length")
        yield kind, body, pos + length
        pos += length


def _read_jp2(data: bytes) -> StreamHeader:
    ihdr = None
    codestream = None
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind == b"jp2h":
            for sub, sbody, send in _boxes(data, body, end):
                if sub == b"ihdr" and send - sbody >= 11:
                    height, width, nc, bpc = struct.unpack_from(">IIHB", data, sbody)
                    ihdr = (width, height, nc, (bpc & 0x7F) + 1)
        elif kind == b"jp2c":
            codestream = data[body:end]
            break
    if codestream is None:
        raise ImagingError(NO_HEADER, "JP2 file has no codestream box (jp2c)")
    siz = _read_j2k(codestream)
    if ihdr is not None and ihdr[:2] != (siz.width, siz.height):
        raise ImagingError(CORRUPT, "JP2 ihdr box and codestream SIZ disagree on the size")
    return StreamHeader(JP2, siz.width, siz.height, siz.components, siz.precision, siz.process)


def _read_j2k(data: bytes) -> StreamHeader:
    if data[:4] != b"\xff\x4f\xff\x51":
        raise ImagingError(NO_HEADER, "JPEG 2000 codestream does not start with SOC, SIZ")
    end = _segment_end(data, 4, "JPEG 2000")
    if end - 4 < 41:
        raise ImagingError(CORRUPT, "JPEG 2000 SIZ segment too short")
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", data, 8)
    components = _u16(data, 40)
    if not 1 <= components <= 4 or end - 4 < 38 + 3 * components:
        raise ImagingError(CORRUPT, f"JPEG 2000 SIZ with {components} components")
    precision = (data[42] & 0x7F) + 1
    width, height = xsiz - xo, ysiz - yo
    if width <= 0 or height <= 0:
        raise ImagingError(CORRUPT, "JPEG 2000 SIZ with an empty image area")
    process = None
    pos = end
    for _ in range(_MAX_SEGMENTS):  # main header up to the first tile (SOT FF90)
        if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] == 0x90:
            break
        seg_end = _segment_end(data, pos + 2, "JPEG 2000")
        if data[pos + 1] == 0x52 and seg_end - pos >= 14:  # COD: SPcod transformation byte
            process = "reversible" if data[pos + 13] == 1 else "irreversible"
        pos = seg_end
    return StreamHeader(J2K, width, height, components, precision, process)


# -- TIFF ---------------------------------------------------------------------------------------
def _read_tiff(data: bytes) -> StreamHeader:
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    count = struct.unpack_from(order + "H", data, ifd)[0]
    tags: dict[int, int] = {}
    for i in range(min(count, 1000)):
        tag, typ, n, raw = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * i)
        if typ == 3:  # SHORT: first value in the first two bytes
            tags[tag] = struct.unpack_from(order + "H", raw)[0]
        elif typ == 4:  # LONG
            tags[tag] = struct.unpack_from(order + "I", raw)[0]
    width, height = tags.get(256, 0), tags.get(257, 0)
    if not width or not height:
        raise ImagingError(NO_HEADER, "TIFF first image has no width or length")
    samples = tags.get(277, 1)
    bits = tags.get(258, 1)  # with several samples this is an offset; only 1-sample is trusted
    precision = bits if samples == 1 else 8
    return StreamHeader(TIFF, width, height, samples, precision, f"tiff-{tags.get(259, 1)}")


_READERS = {
    WSQ: _read_wsq,
    JPEG: _read_jpeg,
    PNG: _read_png,
    JP2: _read_jp2,
    J2K: _read_j2k,
    TIFF: _read_tiff,
}
