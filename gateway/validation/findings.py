"""Findings and reports: the values every validation level produces.

A :class:`Finding` names its severity (``"error"`` or ``"warning"``), a stable code (e.g.
``"L2_DATE_INVALID"``), where it is (a codec :class:`~gateway.ansinist.Location` or an
:class:`XmlLocation`), a human message, and the ERRT 2.060 MSG text it becomes (``hint``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.ansinist.errors import Location

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class XmlLocation:
    """A place in an XML document: line number and element path (prefixed names)."""

    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.path:
            parts.append(self.path)
        return " ".join(parts) or "document"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    code: str
    location: Location | XmlLocation
    message: str
    hint: str | None = None  # ERRT MSG text; defaults to "<location>: <message>"

    @property
    def errt_text(self) -> str:
        return self.hint or f"{self.location}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "code": self.code,
            "location": str(self.location),
            "message": self.message,
        }


@dataclass(slots=True)
class Report:
    """All findings of one transaction (validation never stops at the first)."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        return {
            "file": file,
            "valid": self.valid,
            "findings": [f.to_dict() for f in self.findings],
        }
