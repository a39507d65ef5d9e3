"""A worker beside the processor hands its reports over (streams/handoff.py); a worker in
another engine appends them to ``commands``. Both settle the task offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

import docket
from docket.codec.records import COMMANDS
from docket.log.base import Log
from docket.log.topics import Topics
from tests.kafka_broker import Broker

app = docket.App("handoff")


@app.step
async def double(x: int) -> int:
    return 2 * x


@app.workflow
async def three_steps(ctx: docket.WorkflowContext, x: int) -> int:
    for _ in range(3):
        x = await ctx.step(double, x)
    return x


def command_kinds(log: Log, topics: Topics) -> list[str]:
    return [
        COMMANDS.decode(r.value)["body"][0]
        for p in range(log.partitions)
        for r in log.read(topics.commands, p, 0, 1000)
    ]


def assert_task_offsets_settled(log: Log, topics: Topics) -> None:
    tasks, group = topics.tasks("default"), topics.group("worker.default")
    for p in range(log.partitions):
        assert log.committed(group, tasks, p) == log.end_offset(tasks, p), f"partition {p}"


async def test_a_colocated_worker_hands_reports_to_the_processor(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handles = [await engine.client.start(three_steps, i) for i in range(8)]
        assert [await h.result(timeout=20) for h in handles] == [8 * i for i in range(8)]
        history = await handles[0].history()
        assert [e.type for e in history].count("StepCompleted") == 3
        assert engine.log is not None and engine.processor is not None
        topics = engine.processor.topics
        # the reports never went through the log: history holds them, with the offsets
        assert command_kinds(engine.log, topics) == ["StartWorkflow"] * 8
        assert_task_offsets_settled(engine.log, topics)
        assert not engine.processor.inbox


async def test_a_worker_in_another_engine_appends_its_reports(tmp_path: Path) -> None:
    async with (
        docket.Engine(app, data_dir=tmp_path, worker=False) as processor,
        docket.Engine(app, data_dir=tmp_path, processor=False) as worker,
    ):
        handle = await processor.client.start(three_steps, 5)
        assert await handle.result(timeout=20) == 40
        assert processor.log is not None and processor.processor is not None
        topics = processor.processor.topics
        kinds = command_kinds(processor.log, topics)
        assert kinds == ["StartWorkflow"] + ["CompleteStep"] * 3
        assert worker.worker is not None and worker.worker.reports_to is None
        assert_task_offsets_settled(processor.log, topics)


@pytest.mark.kafka
async def test_on_kafka_reports_go_through_the_log(kafka: Broker, tmp_path: Path) -> None:
    """Kafka readers can see part of a transaction a kill cut short; a report handed over
    in memory could then never be processed again, so there it takes the log."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.worker is not None and engine.worker.reports_to is None
        handle = await engine.client.start(three_steps, 5)
        assert await handle.result(timeout=30) == 40
        assert engine.log is not None and engine.processor is not None
        kinds = command_kinds(engine.log, engine.processor.topics)
        assert sorted(kinds) == ["CompleteStep"] * 3 + ["StartWorkflow"]
