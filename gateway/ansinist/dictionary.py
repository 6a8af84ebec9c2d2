"""The ANSI/NIST-ITL field dictionary, as one table (``dictionary.tsv``).

One row per field of every record type of ANSI/NIST-ITL 1-2011 Update 2015 (Types 1-22, 98, 99;
Types 3, 5 and 6 as 1-2007 left them): record type, tag, mnemonic, name, and ``since``, the 1.002
VER from which the field exists (``0200`` ANSI/NIST-CSL 1-1993, ``0201`` 1a-1997, ``0300``
1-2000, ``0400`` 1-2007, ``0500`` 1-2011, ``0501`` Update 2013, ``0502`` Update 2015).

Sources: the field tables of ANSI/NIST-ITL 1-2011 Update 2015 (NIST Special Publication 500-290
Edition 3, a US-government work) for tags, mnemonics and names; ``since`` from NIST NBIS 5.0.0
``chkan2k`` ``default.conf`` (public domain), which states the standard each field of 1-2007 and
earlier came with.  A field it does not list is given the version of the 1-2011 edition
(``0500``), or ``0501`` for the record types Update 2013 introduced (11 voice, 12 dental,
22 non-photographic imagery); the fields later updates added to older record types are not told
apart from 1-2011's (a known deviation: such a field in a 0500 transaction is not reported).

Type-2 content and the user-defined field ranges are the application profile's (EBTS): only
2.001 LEN and 2.002 IDC are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_TABLE = Path(__file__).with_name("dictionary.tsv")

# Record types and the version that introduced them (1-2011 Table 3 and its updates).
RECORD_SINCE: dict[int, str] = {
    **dict.fromkeys(range(1, 10), "0200"),
    10: "0201",
    **dict.fromkeys(range(13, 17), "0300"),
    17: "0400",
    99: "0400",
    **dict.fromkeys((18, 19, 20, 21, 98), "0500"),
    **dict.fromkeys((11, 12, 22), "0501"),
}


@dataclass(frozen=True, slots=True)
class FieldInfo:
    record_type: int
    tag: str
    mnemonic: str
    name: str
    since: str


@lru_cache(maxsize=1)
def fields() -> dict[str, FieldInfo]:
    """Every field of the dictionary by canonical tag (``"10.040"``)."""
    out: dict[str, FieldInfo] = {}
    for line in _TABLE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line.startswith("type\t"):
            continue
        rtype, tag, mnemonic, name, since = line.split("\t")
        out[tag] = FieldInfo(int(rtype), tag, mnemonic, name, since)
    return out


def lookup(tag: str) -> FieldInfo | None:
    """The dictionary entry of ``tag`` (canonical ``"T.NNN"``), or ``None``."""
    return fields().get(tag)


__all__ = ["RECORD_SINCE", "FieldInfo", "fields", "lookup"]
