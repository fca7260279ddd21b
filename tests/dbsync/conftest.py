"""Fixtures of the engine tests: an environment the outer shell cannot leak into."""

from __future__ import annotations

import pytest

from tests.support.env import SYNC_SETTINGS


@pytest.fixture
def no_allowlist(monkeypatch):
    """The tests' targets are local (socket or loopback): allowed when SYNC_TARGET_ALLOWLIST is
    unset; and LOCK_TIMEOUT at its default."""
    monkeypatch.delenv("SYNC_TARGET_ALLOWLIST", raising=False)
    monkeypatch.delenv("LOCK_TIMEOUT", raising=False)


@pytest.fixture
def no_sync_env(monkeypatch):
    """None of the sync's variables (its databases, allow-list, lock timeout) from the outer environment."""
    for var in SYNC_SETTINGS:
        monkeypatch.delenv(var, raising=False)
