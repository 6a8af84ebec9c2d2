"""Sans-IO codec of ANSI/NIST-ITL transactions (traditional and XML encodings).

Public API::

    txn = read(data)            # bytes -> Transaction; raises only FormatError
    data = write(txn)           # Transaction -> bytes, in txn.encoding
    txn.records[2]["14.011"].value

No I/O and no Twisted here: callers bring bytes and take bytes.
"""

from __future__ import annotations

from .errors import CodecWarning, FormatError, Location
from .model import Field, Record, Transaction, normalize_tag
from .traditional import DEFAULT_MAX_RECORDS, DEFAULT_MAX_SIZE, read_traditional, write_traditional

__all__ = [
    "CodecWarning",
    "Field",
    "FormatError",
    "Location",
    "Record",
    "Transaction",
    "detect_encoding",
    "normalize_tag",
    "peek",
    "read",
    "write",
]


def detect_encoding(data: bytes) -> str:
    """``"xml"`` when the data looks like an XML document, else ``"traditional"``."""
    head = bytes(data[:64]).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "xml" if head.startswith(b"<") else "traditional"


def read(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_records: int = DEFAULT_MAX_RECORDS
) -> Transaction:
    """Decode a transaction in either encoding.  Any problem raises :class:`FormatError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("read() needs bytes")
    if detect_encoding(data) == "xml":
        try:
            from .xml import read_xml
        except ImportError:  # pragma: no cover - XML support is a separate module
            raise FormatError("XML_UNSUPPORTED", "the XML encoding is not supported") from None
        return read_xml(bytes(data), max_size=max_size, max_records=max_records)
    return read_traditional(data, max_size=max_size, max_records=max_records)


def peek(data: bytes) -> dict[str, str]:
    """Type-1 values (tag -> first item) of a transaction in either encoding, best effort.

    For identifying and addressing data before (or without) a full read; never raises: data
    that yields no Type-1 gives ``{}``.
    """
    from .traditional import peek_type1
    from .xml import peek_xml

    if detect_encoding(data) != "xml":
        return peek_type1(data)
    try:
        return peek_xml(data)
    except FormatError:
        return {}


def write(txn: Transaction, encoding: str | None = None, *, canonical: bool = False) -> bytes:
    """Encode ``txn`` in ``encoding`` (default: the encoding it was read in or built for):
    ``"traditional"``, ``"xml"`` (EBTS 10.0 / ANSI/NIST-ITL 1-2011) or ``"xml-2008"``
    (ANSI/NIST-ITL 2-2008, as NIST NBIS an2kconvert writes it).

    Traditional output is byte-exact for an unmodified transaction unless ``canonical``.
    """
    encoding = encoding or txn.encoding
    if encoding == "xml":
        from .traditional import refresh_cnt
        from .xml import write_xml

        if txn.records and txn.records[0].type == 1:
            refresh_cnt(txn)  # CNT is a field of the XML encoding too
        return write_xml(txn)
    if encoding == "xml-2008":
        from .traditional import refresh_cnt
        from .xml import write_xml_2008

        if txn.records and txn.records[0].type == 1:
            refresh_cnt(txn)
        return write_xml_2008(txn)
    if encoding != "traditional":
        raise ValueError(f"unknown encoding {encoding!r}")
    return write_traditional(txn, canonical=canonical)
