"""Errors and warnings of the codec, as values with a location and a response hint.

Every problem the codec finds in a file is described by a :class:`Location` (record number,
record type, field tag, byte offset) and a *hint*: the text an ERRT 2.060 MSG line would carry
for it.  Fatal problems raise :class:`FormatError`; tolerated quirks of real files are kept as
:class:`CodecWarning` values on ``Transaction.warnings``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is in a transaction.

    ``record`` is the 1-based position of the logical record in the file (Type-1 is record 1),
    ``record_type`` its type, ``tag`` a field tag such as ``"14.011"`` and ``offset`` a byte
    offset from the start of the file.  Any of them may be unknown (``None``).
    """

    record: int | None = None
    record_type: int | None = None
    tag: str | None = None
    offset: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.record is not None:
            kind = f" (Type-{self.record_type})" if self.record_type is not None else ""
            parts.append(f"record {self.record}{kind}")
        elif self.record_type is not None:
            parts.append(f"Type-{self.record_type}")
        if self.tag is not None:
            parts.append(f"field {self.tag}")
        if self.offset is not None:
            parts.append(f"byte {self.offset}")
        return " ".join(parts) or "transaction"

    def to_dict(self) -> dict[str, int | str | None]:
        return {
            "record": self.record,
            "record_type": self.record_type,
            "tag": self.tag,
            "offset": self.offset,
        }


class FormatError(ValueError):
    """The data cannot be read as an ANSI/NIST-ITL transaction.

    ``code`` is a stable identifier (e.g. ``"LEN_PAST_END"``), ``location`` says where, and
    ``hint`` is the text of the ERRT message the submitter would receive.
    """

    def __init__(
        self, code: str, message: str, location: Location | None = None, hint: str | None = None
    ):
        self.code = code
        self.message = message
        self.location = location or Location()
        self.hint = hint or f"{self.location}: {message}"
        super().__init__(f"{self.location}: {message} [{code}]")


@dataclass(frozen=True, slots=True)
class CodecWarning:
    """A quirk the reader accepted (2-digit tags, unpadded IDC, legacy CGA ``WSQ`` ...)."""

    code: str
    message: str
    location: Location

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.code}]"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "location": str(self.location)}
