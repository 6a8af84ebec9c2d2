"""Declarative byte layouts of the binary records (Types 3-8).

Each layout lists (tag number, mnemonic, offset, size, codec) as the standard draws them; the
reader and the writer both work from these tables and nothing else.

Sources: NBIS ``an2k.h`` (``BINARY_*_BYTES``) and the EBTS 9.1 verification file
(``4.01...0 T4_LEN B4`` notation).  Types 3, 5 and 6 share the Type-4 header; EBTS 9.1 gives
Type-7 the same 18-byte header (ANSI/NIST fixes only its LEN and IDC); Type-8 has a 12-byte header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BINARY_TYPES = frozenset({3, 4, 5, 6, 7, 8})

# Codecs of a header slot: "uint" (big-endian unsigned) or "fgp" (6 finger positions, 255 = unused).
UINT, FGP = "uint", "fgp"


@dataclass(frozen=True, slots=True)
class Slot:
    num: int  # field number: tag "T.<num:03d>"
    name: str  # mnemonic
    offset: int
    size: int
    codec: str = UINT


@dataclass(frozen=True, slots=True)
class BinaryLayout:
    record_type: int
    slots: tuple[Slot, ...]
    header_size: int
    data_num: int  # field number of the image data

    @property
    def data_tag(self) -> str:
        return f"{self.record_type}.{self.data_num:03d}"

    @property
    def tags(self) -> tuple[str, ...]:
        return _TAGS[self.record_type]

    def tag(self, slot: Slot) -> str:
        return f"{self.record_type}.{slot.num:03d}"

    @property
    def struct(self) -> struct.Struct:
        return _STRUCTS[self.record_type]


_FINGER_HEADER = (
    Slot(1, "LEN", 0, 4),
    Slot(2, "IDC", 4, 1),
    Slot(3, "IMP", 5, 1),
    Slot(4, "FGP", 6, 6, FGP),
    Slot(5, "ISR", 12, 1),
    Slot(6, "HLL", 13, 2),
    Slot(7, "VLL", 15, 2),
    Slot(8, "GCA", 17, 1),  # "CGA" in Types 3/5/6 wording; same byte
)

_SIGNATURE_HEADER = (
    Slot(1, "LEN", 0, 4),
    Slot(2, "IDC", 4, 1),
    Slot(3, "SIG", 5, 1),
    Slot(4, "SRT", 6, 1),
    Slot(5, "ISR", 7, 1),
    Slot(6, "HLL", 8, 2),
    Slot(7, "VLL", 10, 2),
)

BINARY_LAYOUTS: dict[int, BinaryLayout] = {
    t: BinaryLayout(t, _FINGER_HEADER, 18, 9) for t in (3, 4, 5, 6, 7)
}
BINARY_LAYOUTS[8] = BinaryLayout(8, _SIGNATURE_HEADER, 12, 8)

_FMT = {1: "B", 2: "H", 4: "I", 6: "6s"}
_STRUCTS = {
    t: struct.Struct(">" + "".join(_FMT[s.size] for s in layout.slots))
    for t, layout in BINARY_LAYOUTS.items()
}
_TAGS = {t: tuple(f"{t}.{s.num:03d}" for s in layout.slots) for t, layout in BINARY_LAYOUTS.items()}
