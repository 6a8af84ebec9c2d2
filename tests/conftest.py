"""Shared test helpers: where the read-only data of ../shared lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the project with shared/ beside it; developers have it at ../shared too.
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
TRADITIONAL = CONFORMANCE / "traditional"
EVAL = SHARED / "eval"


def corpus_files() -> list[Path]:
    """The traditional-encoding conformance files (49)."""
    return sorted(p for p in TRADITIONAL.glob("*/*") if p.is_file())


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED
