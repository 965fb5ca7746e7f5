"""Telephony fixtures: a real sipd process per test, on loopback."""

from __future__ import annotations

import pytest
from sipd_harness import Sipd


@pytest.fixture
def sipd(sandbox):
    """sipd with the defaults (auto answer, 60 calls); tests needing other settings start their own."""
    s = Sipd(sandbox).start()
    yield s
    s.stop()
