"""The crash tests' runner fixture: an engine process on the embedded log, or on a Kafka
broker started for the test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crash_harness import KAFKA_SESSION_MS, Runner

from tests.kafka_broker import serving

KAFKA = pytest.param("kafka", marks=pytest.mark.kafka)
BACKENDS = ["embedded", KAFKA]


@pytest.fixture
def make_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Runner]]:
    """A runner on the embedded log, or on a Kafka broker started for the test (the test
    process's client then uses the broker too)."""
    with contextlib.ExitStack() as brokers:

        def make(backend: str) -> Runner:
            if backend == "embedded":
                return Runner(tmp_path)
            broker = brokers.enter_context(serving(tmp_path, monkeypatch, KAFKA_SESSION_MS))
            return Runner(tmp_path, broker.bootstrap)

        yield make
