"""Images of ANSI/NIST-ITL records: decode them and check them against their declared fields.

Binary records (Types 3-8, BRIEF 1.4) declare HLL/VLL in their header and GCA as a number;
their resolution is the transaction's 1.012 NTR (pixels per mm), passed in by the caller.
Tagged image records (Types 10, 13, 14, 15, 16, 17) declare HLL/VLL (x.006/x.007), SLC with
THPS/TVPS (x.008-x.010), CGA (x.011) and BPX (x.012; Type-10 has its colour space there).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.ansinist.errors import Location
from gateway.validation.findings import ERROR, WARNING, Finding

from . import codecs
from .codecs import NONE, TIFF, canonical_compression, raw_length
from .errors import (
    BAD_GEOMETRY,
    CODEC_UNAVAILABLE,
    NO_DATA,
    NOT_AN_IMAGE,
    UNSUPPORTED,
    ImagingError,
)
from .headers import read_header, sniff
from .image import DEFAULT_MAX_SIDE, Image, decode

BINARY_IMAGE_TYPES = frozenset({3, 4, 5, 6, 7, 8})
TAGGED_IMAGE_TYPES = frozenset({10, 13, 14, 15, 16, 17})
IMAGE_TYPES = BINARY_IMAGE_TYPES | TAGGED_IMAGE_TYPES
# Friction-ridge and signature records decode to gray; faces, iris and user images keep colour.
_GRAY_TYPES = frozenset({3, 4, 5, 6, 7, 8, 13, 14, 15})
# Binary records are transmitted at 1.012 NTR.  Without an NTR, ISR 0 (x.005: "minimum
# scanning resolution") means 19.69 ppmm for the high-resolution Types 4/6/7 and signatures and
# 9.84 ppmm for the low-resolution Types 3/5 (type-3.an2: NTR 09.84, ISR 0).
_MIN_PPMM = {3: 9.84, 4: 19.69, 5: 9.84, 6: 19.69, 7: 19.69, 8: 19.69}
_PPMM_TO_PPI = 25.4
_SLC_PPI, _SLC_PPCM = "1", "2"


def finger_position(record) -> int | None:
    """The finger position 1-10 of a Type-4/14 record: the first FGP (4.004 / 14.013) that is
    one, skipping 255 (4.004's unused bytes, BRIEF 1.4 [S3]); None for slaps, palms, unknown (0)
    or a field that is not a number."""
    tag = "4.004" if record.type == 4 else "14.013"
    field = record.get(tag)
    if field is None:
        return None
    for sub in field.subfields:
        for item in sub:
            try:
                value = int(item)
            except ValueError:
                continue
            if 1 <= value <= 10:
                return value
            if value != 255:
                return None
    return None


def _tag(record, num: int) -> str:
    return f"{record.type}.{num:03d}"


def _location(record, num: int | None, recno: int | None) -> Location:
    return Location(recno, record.type, None if num is None else _tag(record, num))


def _int(record, num: int, recno) -> int | None:
    text = record.value(_tag(record, num))
    if text is None or text.strip() == "":
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ImagingError(
            BAD_GEOMETRY,
            f"{_tag(record, num)} is not a number: {text!r}",
            _location(record, num, recno),
        ) from None


def _float(text) -> float | None:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def ntr_of(txn) -> float | None:
    """The nominal transmitting resolution 1.012 NTR of a transaction, in pixels per mm."""
    return _float(txn.records[0].value("1.012")) if txn.records else None


def _data(record):
    """The record's image bytes and how many leading bytes were skipped.

    NBIS an2kconvert test files (valid1.5-1.7, 1.11, 1.16) write ``x.999`` several times: the
    first occurrence runs to the end of the record and holds ``"0110 GS 14.999:4732 GS ...
    14.999:<image>"``.  The image after the last repeated ``x.999:`` tag is used (reported by
    :func:`check_record` as ``IMG_DATA_PREFIX``).
    """
    data = record.data
    if data is None or record.is_binary:
        return data, 0
    head = bytes(data[:256])
    if sniff(head) is None:
        marks = list(re.finditer(rb"\x1d%d\.0*999:" % record.type, head))
        if marks and sniff(head[marks[-1].end() :]) is not None:
            skip = marks[-1].end()
            return data[skip:], skip
    return data, 0


def declared(record, *, recno: int | None = None) -> dict:
    """What a record declares about its image: width, height, compression, bits, SLC, scale."""
    rtype = record.type
    if rtype not in IMAGE_TYPES:
        raise ImagingError(
            NOT_AN_IMAGE, f"Type-{rtype} records carry no image", _location(record, None, recno)
        )
    info: dict[str, Any] = {
        "width": _int(record, 6, recno),
        "height": _int(record, 7, recno),
        "bits": None,
    }
    if record.is_binary:
        info["gca"] = None if rtype == 8 else _int(record, 8, recno)
        info["isr"] = _int(record, 5, recno)
        info["srt"] = _int(record, 4, recno) if rtype == 8 else None
        info["bits"] = 1 if rtype in (5, 6) else (None if rtype == 8 else 8)
        if rtype == 8:
            # SRT (8.004): 0 scanned uncompressed, 1 scanned compressed, 2 vector.
            info["compression"] = "BINARY" if info["srt"] == 1 else NONE
        elif rtype in (5, 6):
            # The CGA of binary records names binary (fax) algorithms, not the GCA table.
            info["compression"] = NONE if info["gca"] == 0 else "BINARY"
        else:
            try:
                info["compression"] = canonical_compression(info["gca"])
            except ImagingError as err:
                raise err.at(_location(record, 8, recno)) from None
        return info
    cga = record.value(_tag(record, 11))
    try:
        info["compression"] = canonical_compression(cga if cga is not None else "")
    except ImagingError as err:
        raise err.at(_location(record, 11, recno)) from None
    if rtype == 10:
        csp = (record.value("10.012") or "").strip().upper()
        info["bits"] = 8 if csp == "GRAY" else 24 if info["compression"] == NONE else None
    else:
        info["bits"] = _int(record, 12, recno)
    info["slc"] = (record.value(_tag(record, 8)) or "").strip()
    info["thps"] = _float(record.value(_tag(record, 9)))
    info["tvps"] = _float(record.value(_tag(record, 10)))
    return info


def declared_pixels(record) -> int:
    """Pixels the record's image will cost, from its fields and its stream header, cheaply.

    The larger of HLL x VLL and the size the stream's own header claims (nothing is
    decompressed): what a decoder would allocate.  0 for a record with no image or whose
    geometry cannot be read (validation reports those).
    """
    if record.type not in IMAGE_TYPES:
        return 0
    try:
        info = declared(record)
    except ImagingError:
        info = {"width": None, "height": None}
    count = (info.get("width") or 0) * (info.get("height") or 0)
    data, _skipped = _data(record)
    if data is not None and len(data) and sniff(data) is not None:
        try:
            header = read_header(data)
        except ImagingError:
            return count
        count = max(count, header.width * header.height)
    return count


def record_ppi(record, *, ntr=None, recno: int | None = None) -> tuple[float | None, float | None]:
    """(horizontal, vertical) pixels per inch of a record's image, ``None`` when unknown.

    Tagged records: SLC 1 = THPS/TVPS in pixels per inch, 2 = pixels per cm, 0 = no scale.
    Binary records: the transaction's 1.012 NTR in pixels per mm, or with ISR 0 the minimum
    scanning resolution of the type.
    """
    info = declared(record, recno=recno)
    if record.is_binary:
        ppmm = _float(ntr)
        if ppmm is None and info.get("isr") == 0:
            ppmm = _MIN_PPMM[record.type]
        ppi = None if ppmm is None else ppmm * _PPMM_TO_PPI
        return ppi, ppi
    factor = {_SLC_PPI: 1.0, _SLC_PPCM: 2.54}.get(info["slc"].lstrip("0") or "0")
    if factor is None:
        return None, None
    x = info["thps"] * factor if info["thps"] else None
    y = info["tvps"] * factor if info["tvps"] else x
    return x, y


def decode_record(
    record,
    *,
    ntr=None,
    max_side: int = DEFAULT_MAX_SIDE,
    recno: int | None = None,
    gray: bool | None = None,
) -> Image:
    """Decode the image of ``record`` (Types 3-8, 10, 13-17).

    ``ntr`` is 1.012 NTR of the transaction (pixels per mm, e.g. ``"19.69"``) for binary records;
    ``recno`` the record's position in its file, for error locations; ``gray`` folds colour to
    gray (default: yes for finger, palm and signature records, no for Types 10, 16, 17).
    Raises only :class:`ImagingError`, located at the record (and field where known).
    """
    where = _location(record, None, recno)
    try:
        return _decode_record(record, ntr, max_side, recno, gray)
    except ImagingError as err:
        raise err.at(where) from err.__cause__
    except MemoryError:
        raise  # past the worker's memory: the job's answer says so (gateway.routing.processing)
    except Exception as exc:  # pragma: no cover - a bug here must still surface as a value
        raise ImagingError("IMG_INTERNAL", f"{type(exc).__name__}: {exc}", where) from exc


def _decode_record(record, ntr, max_side, recno, gray) -> Image:
    info = declared(record, recno=recno)
    rtype = record.type
    data, _skipped = _data(record)
    data_num = 999 if not record.is_binary else (8 if rtype == 8 else 9)
    data_loc = _location(record, data_num, recno)
    if data is None or len(data) == 0:
        raise ImagingError(NO_DATA, "the record has no image data", data_loc)
    width, height = info["width"], info["height"]
    if rtype == 8 and info["srt"] == 2:
        raise ImagingError(
            NOT_AN_IMAGE, "the signature is vector data (SRT 2), not an image", data_loc
        )
    bits = info["bits"] or 8
    compression = info["compression"]
    if compression == "BINARY":
        if sniff(data) is None:
            what = (
                "signature compression" if rtype == 8 else f"binary image compression {info['gca']}"
            )
            raise ImagingError(UNSUPPORTED, f"{what} is not supported", data_loc)
        compression = TIFF
    if rtype == 8 and width and height and sniff(data) is None:
        # Type-8 raw signatures come as 8-bit gray, 1-bit or 24-bit: the length tells.
        for candidate in (8, 1, 24):
            if len(data) == raw_length(width, height, candidate):
                bits = candidate
                break
    ppi, ppi_y = record_ppi(record, ntr=ntr, recno=recno)
    if gray is None:
        gray = rtype in _GRAY_TYPES
    try:
        image = decode(
            data,
            compression,
            width=width if width else None,
            height=height if height else None,
            bits=bits,
            max_side=max_side,
            ppi=ppi,
            gray=gray,
        )
    except ImagingError as err:
        raise err.at(data_loc) from err.__cause__
    if ppi_y is not None and ppi_y != ppi:
        image = Image(image.pixels, image.ppi, image.compression, image.bits, ppi_y)
    return image


def check_record(
    record,
    *,
    ntr=None,
    max_side: int = DEFAULT_MAX_SIDE,
    recno: int | None = None,
) -> list[Finding]:
    """Findings about a record's image: it decodes, and its size, compression and BPX agree
    with the declared HLL/VLL, CGA/GCA and BPX.  Records without images give no findings."""
    if record.type not in IMAGE_TYPES:
        return []
    findings: list[Finding] = []

    def add(severity, code, num, message):
        findings.append(Finding(severity, code, _location(record, num, recno), message))

    try:
        info = declared(record, recno=recno)
    except ImagingError as err:
        return [Finding(ERROR, err.code, err.location, err.message)]
    if record.type == 8 and info["srt"] == 2:
        return []  # vector signature: nothing to decode
    _data_bytes, skipped = _data(record)
    if skipped:
        add(
            WARNING,
            "IMG_DATA_PREFIX",
            999,
            f"{skipped} bytes precede the image inside {_tag(record, 999)} (repeated x.999 tags)",
        )
    try:
        image = decode_record(record, ntr=ntr, max_side=max_side, recno=recno, gray=False)
    except ImagingError as err:
        severity = WARNING if err.code == CODEC_UNAVAILABLE else ERROR
        findings.append(Finding(severity, err.code, err.location, err.message))
        return findings
    width, height = info["width"], info["height"]
    if width is not None and width != image.width:
        add(
            ERROR,
            "IMG_SIZE_MISMATCH",
            6,
            f"HLL says {width} pixels, the image is {image.width} wide",
        )
    if height is not None and height != image.height:
        add(
            ERROR,
            "IMG_SIZE_MISMATCH",
            7,
            f"VLL says {height} pixels, the image is {image.height} high",
        )
    declared_code = info["compression"]
    if declared_code == NONE and image.compression != NONE:
        add(
            WARNING,
            "IMG_COMPRESSION_MISMATCH",
            None if record.type == 8 else (8 if record.is_binary else 11),
            f"declared uncompressed, the data is a {image.compression} stream",
        )
    elif declared_code not in (NONE, "BINARY") and image.compression != declared_code:
        num = 8 if record.is_binary else 11
        add(
            ERROR,
            "IMG_COMPRESSION_MISMATCH",
            num,
            f"declared {declared_code}, the data is a {image.compression} stream",
        )
    if declared_code == codecs.JP2L and image.compression == codecs.JP2L:
        # JP2L means lossless: the codestream must use the reversible 5-3 wavelet
        # (ISO/IEC 15444-1 Annex F, COD SPcod transformation 1).
        try:
            process = read_header(_data_bytes).process
        except ImagingError:
            process = None
        if process == "irreversible":
            add(
                ERROR,
                "IMG_COMPRESSION_MISMATCH",
                11,
                "declared JP2L (lossless), the codestream uses the irreversible 9-7 wavelet",
            )
    bits = info["bits"]
    if bits is not None and not record.is_binary and record.type != 10 and bits != image.bits:
        add(
            ERROR,
            "IMG_BPX_MISMATCH",
            12,
            f"BPX says {bits} bits per pixel, the image has {image.bits}",
        )
    return findings
