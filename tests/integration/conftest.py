"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from tests.integration.helpers import Sink


@pytest.fixture
def sink():
    """A local SMTP server standing in for the state system's mailbox (the outbound relay)."""
    s = Sink()
    s.start()
    yield s
    s.stop()
