"""Shared fixtures: every test gets its own data directory; nothing is mocked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import Broker, serving


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DOCKET_") and name != "DOCKET_ALWAYS_REPLAY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    """A Kafka-protocol broker for the test; this process's Docket uses it."""
    with serving(tmp_path, monkeypatch) as broker:
        yield broker
