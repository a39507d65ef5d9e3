"""The engine's own client takes its replies in memory (streams/local_replies.py), once
what they acknowledge is on the log; any other client reads them from ``replies``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import docket
from docket.codec.records import EVENTS, REPLIES
from docket.config import Settings
from docket.log.base import Log
from docket.log.factory import open_log
from docket.log.topics import Topics
from tests.kafka_broker import Broker

app = docket.App("local-replies")


@app.step
async def double(x: int) -> int:
    return 2 * x


@app.workflow
class Counter:
    def __init__(self) -> None:
        self.added: list[int] = []
        self.done = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, start: int) -> int:
        await ctx.wait_until(lambda: self.done)
        return await ctx.step(double, start + sum(self.added))

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, n: int) -> None:
        self.added.append(n)

    @docket.signal
    def finish(self, ctx: docket.WorkflowContext) -> None:
        self.done = True

    @docket.query
    def total(self, ctx: docket.QueryContext) -> int:
        return sum(self.added)


def replies_on_log(log: Log, topics: Topics) -> int:
    return sum(log.end_offset(topics.replies, p) for p in range(log.partitions))


def history_kinds(data_dir: Path, workflow_id: str) -> list[str]:
    """The history another connection to the log sees: only what was committed."""
    other = open_log(Settings(data_dir=data_dir), create=False)
    try:
        topics = Topics(other.namespace)
        return [
            event["body"][0]
            for p in range(other.partitions)
            for event in map(EVENTS.decode, (r.value for r in other.read(topics.history, p, 0, 10_000)))
            if event["workflow_id"] == workflow_id
        ]
    finally:
        other.close()


async def drive(client: docket.Client, workflow_id: str) -> tuple[int, int]:
    handle = await client.start(Counter, 1, workflow_id=workflow_id)
    await handle.signal(Counter.add, 2)
    await handle.signal(Counter.add, 3)
    total = await handle.query(Counter.total)
    await handle.signal(Counter.finish)
    return total, await handle.result(timeout=20)


async def test_the_engines_client_takes_replies_in_memory_after_they_are_durable(
    tmp_path: Path,
) -> None:
    taken: list[tuple[dict[str, Any], list[str]]] = []
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.log is not None and engine.processor is not None
        take = engine.client.take_reply

        def spy(reply: dict[str, Any]) -> None:
            taken.append((reply, history_kinds(tmp_path, reply["workflow_id"])))
            take(reply)

        engine.processor.local_replies.register(engine.client.client_id, spy)
        assert await drive(engine.client, "local") == (5, 12)
        assert replies_on_log(engine.log, engine.processor.topics) == 0
    kinds = [reply["kind"] for reply, _ in taken]
    assert kinds == ["started", "signaled", "signaled", "answer", "signaled", "completed"]
    started_seen, completed_seen = taken[0][1], taken[-1][1]
    assert "WorkflowStarted" in started_seen, "replied before the start was on the log"
    assert "WorkflowCompleted" in completed_seen, "replied before the result was on the log"
    for reply, _ in taken:  # the same dict a client reading the log would get
        assert REPLIES.decode(REPLIES.encode(reply)) == reply


async def test_a_client_of_another_process_reads_its_replies_from_the_log(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.log is not None and engine.processor is not None
        remote = docket.Client.connect(data_dir=tmp_path)
        try:
            assert remote.client_id not in engine.processor.local_replies
            assert await drive(remote, "remote") == (5, 12)
        finally:
            await remote.close()
        assert replies_on_log(engine.log, engine.processor.topics) == 6
        assert await drive(engine.client, "local") == (5, 12)
        assert replies_on_log(engine.log, engine.processor.topics) == 6


async def test_a_closed_engines_client_takes_no_more_replies(tmp_path: Path) -> None:
    engine = docket.Engine(app, data_dir=tmp_path)
    await engine.start()
    assert engine.processor is not None
    processor, client_id = engine.processor, engine.client.client_id
    assert client_id in processor.local_replies
    await engine.stop()
    assert client_id not in processor.local_replies


@pytest.mark.kafka
async def test_on_kafka_the_engines_client_takes_replies_in_memory(
    kafka: Broker, tmp_path: Path
) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.log is not None and engine.processor is not None
        assert await drive(engine.client, "local") == (5, 12)
        assert replies_on_log(engine.log, engine.processor.topics) == 0


async def test_a_client_failing_to_take_its_reply_does_not_stop_the_processor(
    tmp_path: Path,
) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert engine.processor is not None
        take = engine.client.take_reply
        failed: list[str] = []

        def fails_once(reply: dict[str, Any]) -> None:
            if not failed:
                failed.append(reply["kind"])
                raise RuntimeError("a client bug")
            take(reply)

        engine.processor.local_replies.register(engine.client.client_id, fails_once)
        engine.client.reply_timeout = 1.0
        with pytest.raises(docket.errors.ReplyTimeoutError):
            await engine.client.start(Counter, 1, workflow_id="lost-reply")  # its reply was lost
        engine.client.reply_timeout = 30.0
        assert failed == ["started"]
        assert await drive(engine.client, "after") == (5, 12)  # the processor runs on
