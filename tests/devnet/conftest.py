"""Fixtures for the devnet tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def isolated_state(tmp_path, monkeypatch):
    """Per-test XDG state dir so CLI defaults never touch the user's real devnet."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"
