"""A worker beside the processor hands its reports over (streams/handoff.py); a worker in
another engine appends them to ``commands``. Both settle the task offsets. The engine's
own client hands its requests over the same way; any other client appends them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import docket
from docket.codec.records import COMMANDS
from docket.command_sink import unfenced
from docket.log.base import Log
from docket.log.factory import open_log
from docket.log.topics import Topics
from tests.kafka_broker import Broker

app = docket.App("handoff")


@app.step
async def double(x: int) -> int:
    return 2 * x


@app.workflow
class Tally:
    def __init__(self) -> None:
        self.total = 0
        self.closed = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.closed)
        return await ctx.step(double, self.total)

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, n: int) -> None:
        self.total += n

    @docket.update
    def close(self, ctx: docket.WorkflowContext) -> int:
        self.closed = True
        return self.total

    @docket.query
    def sum(self, ctx: docket.QueryContext) -> int:
        return self.total


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
        # the reports (and the client's starts) never went through the log: history holds
        # them, with the offsets
        assert command_kinds(engine.log, topics) == []
        assert_task_offsets_settled(engine.log, topics)
        assert not engine.processor.inbox


async def test_a_worker_in_another_engine_appends_its_reports(tmp_path: Path) -> None:
    async with (
        docket.Engine(app, data_dir=tmp_path, worker=False) as processor,
        docket.Engine(app, data_dir=tmp_path, processor=False) as worker,
    ):
        handle = await worker.client.start(three_steps, 5)  # a client with no processor
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


async def test_the_engines_client_hands_its_requests_to_the_processor(tmp_path: Path) -> None:
    """Start, signal-with-start, signal, query, update, cancel and terminate: none reaches
    ``commands``, and each is the command a processor would have decoded from the log."""
    handed: list[dict[str, Any]] = []
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.log is not None and engine.processor is not None
        inbox = engine.processor.inbox
        take = inbox.take

        def spy(commands: Any, *rest: Any) -> None:
            handed.extend(commands)
            take(commands, *rest)

        inbox.take = spy  # type: ignore[method-assign]
        tally = await engine.client.start(Tally, workflow_id="tally", start_signal="add",
                                          start_signal_args=(1,))
        await tally.signal(Tally.add, 2)
        assert await tally.query(Tally.sum) == 3
        update = await tally.start_update(Tally.close)
        assert await update.result() == 3
        assert await tally.result(timeout=20) == 6
        doomed = [await engine.client.start(three_steps, 1, start_delay=60) for _ in range(2)]
        await doomed[0].cancel()
        await doomed[1].terminate("enough")
        assert command_kinds(engine.log, engine.processor.topics) == []
    requests = [c for c in handed if c["body"][0] != "CompleteStep"]  # the worker's reports
    kinds = [c["body"][0] for c in requests]
    assert kinds == [
        "StartWorkflow", "SignalWorkflow", "SignalWorkflow", "QueryWorkflow", "UpdateWorkflow",
        "StartWorkflow", "StartWorkflow", "CancelWorkflow", "TerminateWorkflow",
    ]
    for command in requests:
        assert COMMANDS.decode(COMMANDS.encode(command)) == command


async def test_requests_for_a_partition_the_processor_lost_are_appended(tmp_path: Path) -> None:
    """Handed over while the processor held the partition, taken after it went elsewhere:
    the request goes to ``commands`` for the new owner, not into this processor's batch."""
    async with docket.Engine(app, data_dir=tmp_path / "a") as engine:
        client = engine.client
    log = open_log(docket.Settings.from_env(data_dir=tmp_path / "b"))
    try:
        from docket.streams.handoff import CommandInbox

        topics = Topics(log.namespace)
        held = {0, 1, 2, 3}
        inbox = CommandInbox(log, topics, lambda p: p in held)
        command = client._command("w", "request-1", ("QueryWorkflow", {
            "run_id": None, "query_name": "q", "args": [], "kwargs": {}, "reply_to": "c"}))
        assert inbox.owns("w")
        inbox.take([command], {}, {}, unfenced)
        held.clear()
        assert inbox.take_all() == ([], {})
        assert [COMMANDS.decode(r.value) for p in range(log.partitions)
                for r in log.read(topics.commands, p, 0, 10)] == [command]
    finally:
        log.close()
