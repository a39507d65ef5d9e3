"""User topics across crashes of a real engine process (`user_topics_under_test.py`), killed
at named fault points and restarted:

- a record a workflow emits is in its topic exactly when the RecordEmitted event that
  records it is in the history topic, once (they are appended in one transaction);
- every record of a signal source reaches its workflow once, in order (the signal commands
  and the source offsets they consume are appended in one transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crash_harness
import pytest
from crash_harness import KILLED, Runner
from user_topics_under_test import PER_KEY, app, emit_per_step

import docket
from docket.config import Settings
from docket.errors import WorkflowNotFoundError
from docket.log.base import LogRecord
from docket.log.factory import open_log

SCRIPT = Path(__file__).with_name("user_topics_under_test.py")
KAFKA = pytest.mark.kafka
STEPS = 10


@pytest.fixture
def make_runner(
    make_runner: Callable[[str], Runner], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Runner]:
    """The crash tests' runners (conftest.py), running this file's app."""
    monkeypatch.setattr(crash_harness, "RUNNER", SCRIPT)
    return make_runner


def user_records(runner: Runner, topic: str) -> list[LogRecord]:
    """Every record of a user topic, straight from the log (take it with no runner alive)."""
    log = open_log(
        Settings(data_dir=runner.data_dir, bootstrap_servers=runner.bootstrap), create=False
    )
    try:
        return [r for p in range(log.partitions_of(topic)) for r in log.read(topic, p, 0, 100_000)]
    finally:
        log.close()


@pytest.mark.parametrize(
    ("backend", "point"),
    [
        ("embedded", "before_append"),
        ("embedded", "after_append_before_writebatch"),
        ("embedded", "after_writebatch"),
        pytest.param("kafka", "after_append_before_writebatch", marks=KAFKA),
    ],
)
async def test_emitted_records_match_history_after_a_crash(
    make_runner: Callable[[str], Runner], backend: str, point: str
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault=point, after=5)  # the batch of step 5's completion
            starting = asyncio.ensure_future(
                client_engine.client.start(emit_per_step, STEPS, workflow_id="emits")
            )
            assert await runner.wait_exit() == KILLED, runner.output()
            crashed = runner.snapshot("emits")
            assert 0 < crashed.kinds().count("RecordEmitted") < STEPS
            await runner.spawn()
            handle = await asyncio.wait_for(starting, 30)
            assert await handle.result(timeout=30) == sum(i * i for i in range(1, STEPS + 1))
            assert await runner.terminate() == 0, runner.output()
        events = runner.snapshot("emits").events
        assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
        emitted = [
            f"emits/{e['run_id']}/{e['body'][1]['seq']}"
            for e in events
            if e["body"][0] == "RecordEmitted"
        ]
        records = user_records(runner, "crash-events")
        ids = [dict(r.headers)["docket-record-id"].decode() for r in records]
        assert len(emitted) == STEPS and sorted(ids) == sorted(emitted)  # each once
        by_id = dict(zip(ids, records, strict=True))
        squares = sorted(by_id[i].value for i in emitted)
        assert squares == sorted(
            f'{{"index":{i},"square":{i * i}}}'.encode() for i in range(1, STEPS + 1)
        )
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "point", "after"),
    [
        ("embedded", "source_after_append", 2),
        ("embedded", "after_append_before_writebatch", 3),
        pytest.param("kafka", "source_after_append", 2, marks=KAFKA),
    ],
)
async def test_each_source_record_is_delivered_once_across_a_crash(
    make_runner: Callable[[str], Runner], backend: str, point: str, after: int
) -> None:
    runner = make_runner(backend)
    keys = ["a", "b", "c"]
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            client = client_engine.client
            await runner.spawn(fault=point, after=after)
            for value in range(PER_KEY):
                for key in keys:
                    await client.emit("crash-payments", value, key=key)
                await asyncio.sleep(0.05)  # spread the records over several rounds
            assert await runner.wait_exit() == KILLED, runner.output()
            await runner.spawn()
            for key in keys:
                assert await _result(client, key) == list(range(PER_KEY))  # once each, in order
            assert await runner.terminate() == 0, runner.output()
        for key in keys:
            signals = [e for e in runner.snapshot(key).events if e["body"][0] == "SignalReceived"]
            assert len({e["command_id"] for e in signals}) == len(signals) == PER_KEY
    finally:
        runner.cleanup()


async def _result(client: docket.Client, workflow_id: str) -> Any:
    """The result of a workflow the source starts (it may not exist yet)."""
    for _ in range(300):
        try:
            return await client.get_handle(workflow_id).result(timeout=30)
        except WorkflowNotFoundError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never started")
