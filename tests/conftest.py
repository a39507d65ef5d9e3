"""Shared fixtures: every test gets its own data directory; nothing is mocked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DOCKET_") and name != "DOCKET_ALWAYS_REPLAY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
