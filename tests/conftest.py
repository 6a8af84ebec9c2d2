"""Shared test helpers: where the read-only data of ../shared lives."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the project with shared/ beside it; developers have it at ../shared too.
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
TRADITIONAL = CONFORMANCE / "traditional"
EVAL = SHARED / "eval"
FIXTURES = REPO / "fixtures" / "validation"


def fixture_data_file(expect: Path) -> Path:
    """The transaction file beside a fixture's ``NAME.expect.json``."""
    stem = expect.name[: -len(".expect.json")]
    (path,) = [p for p in FIXTURES.glob(stem + ".*") if not p.name.endswith(".expect.json")]
    return path


def fixture_today(expect: dict) -> date:
    """The validation date of a fixture's expectation (``"today": "YYYYMMDD"``)."""
    t = expect["today"]
    return date(int(t[:4]), int(t[4:6]), int(t[6:]))


def corpus_files() -> list[Path]:
    """The traditional-encoding conformance files (49)."""
    return sorted(p for p in TRADITIONAL.glob("*/*") if p.is_file())


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED
