"""What to do with each quirk the codec tolerates: ignore it, warn, or reject the transaction.

The reader of :mod:`gateway.ansinist` accepts real-world deviations and records them as
:class:`~gateway.ansinist.CodecWarning` codes.  Validation turns each into a finding whose severity
comes from a :class:`Strictness`:

=====================  ==========  =======  ========
quirk                  default     strict   lenient
=====================  ==========  =======  ========
SHORT_TAG              warn        reject   warn
UNPADDED_IDC           warn        reject   warn
NSR_19_68              warn        reject   warn
LEGACY_CGA             warn        reject   warn
TRAILING_BYTES         warn        reject   warn
FIELD_NEWER            warn        reject   warn
UNKNOWN_VERSION        reject      reject   warn
CNT_COUNT              reject      reject   warn
IDC_MISMATCH           reject      reject   warn
IDC_MISSING            reject      reject   warn
DUPLICATE_FIELD        reject      reject   warn
TAG_TYPE_MISMATCH      reject      reject   warn
=====================  ==========  =======  ========

The first six occur in files that real systems accept (2-digit tags, ``4^1`` IDCs, NSR ``19.68``,
CGA ``WSQ``, padding after the last record, a field or record type newer than the 1.002 VER the
transaction declares: NBIS chkan2k "requires ANSI/NIST version ..."); the others make the file say
two different things and are errors unless the caller asks for leniency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

IGNORE, WARN, REJECT = "ignore", "warn", "reject"
ACTIONS = (IGNORE, WARN, REJECT)

REAL_FILE_QUIRKS = (
    "SHORT_TAG",
    "UNPADDED_IDC",
    "NSR_19_68",
    "LEGACY_CGA",
    "TRAILING_BYTES",
    "FIELD_NEWER",
)
INCONSISTENCIES = (
    "UNKNOWN_VERSION",
    "CNT_COUNT",
    "IDC_MISMATCH",
    "IDC_MISSING",
    "DUPLICATE_FIELD",
    "TAG_TYPE_MISMATCH",
)
QUIRKS = REAL_FILE_QUIRKS + INCONSISTENCIES


@dataclass(frozen=True, slots=True)
class Strictness:
    """The action (``"ignore"``, ``"warn"`` or ``"reject"``) for each codec quirk."""

    actions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        merged = dict(_DEFAULT)
        for quirk, action in dict(self.actions).items():
            if quirk not in QUIRKS:
                raise ValueError(f"unknown quirk {quirk!r}; known: {', '.join(QUIRKS)}")
            if action not in ACTIONS:
                raise ValueError(f"action for {quirk} must be one of {ACTIONS}, not {action!r}")
            merged[quirk] = action
        object.__setattr__(self, "actions", MappingProxyType(merged))

    def action(self, quirk: str) -> str:
        return self.actions.get(quirk, REJECT)

    def with_actions(self, **actions: str) -> Strictness:
        """A copy with some quirks changed, e.g. ``with_actions(SHORT_TAG="ignore")``."""
        return Strictness({**self.actions, **actions})

    @classmethod
    def default(cls) -> Strictness:
        return cls()

    @classmethod
    def strict(cls) -> Strictness:
        return cls(dict.fromkeys(QUIRKS, REJECT))

    @classmethod
    def lenient(cls) -> Strictness:
        return cls(dict.fromkeys(QUIRKS, WARN))

    @classmethod
    def named(cls, name: str) -> Strictness:
        """``"default"``, ``"strict"`` or ``"lenient"``."""
        try:
            return {"default": cls.default, "strict": cls.strict, "lenient": cls.lenient}[name]()
        except KeyError:
            raise ValueError(f"unknown strictness {name!r}") from None


_DEFAULT = {**dict.fromkeys(REAL_FILE_QUIRKS, WARN), **dict.fromkeys(INCONSISTENCIES, REJECT)}
