"""Signal sources: a user topic's records become signals (with start), each delivered once;
on the embedded log and on Kafka (a Tansu broker per test)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from user_topics_app import Order, app, backend, collector, eventually, topic_records  # noqa: F401

import docket
from docket.codec.records import COMMANDS
from docket.errors import ConfigurationError, DefinitionError
from docket.log.base import OutRecord
from docket.log.partitioner import partition
from docket.log.topics import Topics
from docket.streams.source_dedupe import source_command_id


def signals_of(events: list[docket.HistoryEvent]) -> list[Any]:
    return [e for e in events if e.type == "SignalReceived"]


@pytest.mark.usefixtures("backend")
async def test_records_start_and_signal_workflows_once_across_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="docket")
    async with docket.Engine(app) as engine:
        client = engine.client
        await client.emit("payments", {"amount": 4}, key="1")  # starts order-1 (total 10)
        await client.emit("payments", {"amount": 5}, key="2")  # starts order-2
        await client.emit("payments", b"{not json", key="1")  # logged and skipped
        await client.emit("payments", {"amount": 3}, key="1")
        await eventually(lambda: _signals(client, "order-1", 2))
        await eventually(lambda: _signals(client, "order-2", 1))
    assert "skipping the record at payments[" in caplog.text and "is not JSON" in caplog.text

    async with docket.Engine(app) as engine:  # a restart: committed records are not redelivered
        client = engine.client
        await client.emit("payments", {"amount": 3}, key="1")  # order-1 reaches 10
        await client.emit("payments", {"amount": 5}, key="2")
        first = client.get_handle("order-1")
        assert await first.result(timeout=30) == [{"amount": 4}, {"amount": 3}, {"amount": 3}]
        assert await client.get_handle("order-2").result(timeout=30) == [{"amount": 5}] * 2
        history = await first.history()
        assert engine.log is not None
        shipments = topic_records(engine.log, "shipments")
        assert engine.sources is not None
    assert [e.type for e in history][:2] == ["WorkflowStarted", "SignalReceived"]
    commands = [e for e in history if e.type == "SignalReceived"]
    assert len(commands) == 3
    # the shipment each order emitted when paid in full
    assert sorted(r.key for r in shipments) == ["order-1", "order-2"]


async def _signals(client: docket.Client, workflow_id: str, count: int) -> bool:
    try:
        events = await client.get_handle(workflow_id).history()
    except docket.errors.WorkflowNotFoundError:
        return False
    return len(signals_of(events)) >= count


@pytest.mark.usefixtures("backend")
async def test_a_repeated_signal_command_is_dropped() -> None:
    """What Kafka can deliver twice (an append retried after a failed transaction, a stale
    member's commit): the same source command ID again. The processor records it once."""
    async with docket.Engine(app) as engine:
        client, log = engine.client, engine.log
        assert log is not None
        await client.emit("payments", {"amount": 1}, key="7")
        await eventually(lambda: _signals(client, "order-7", 1))
        delivered = _command_of(client, "order-7")
        # the delivered command again; a command of another binding's partition (made up
        # here), twice; and one of that partition's earlier offsets: only the first of the
        # made-up ones is new
        other = source_command_id("elsewhere", 0, 5)
        again = [_signal("order-7", delivered, 1), _signal("order-7", other, 2),
                 _signal("order-7", other, 2), _signal("order-7", source_command_id("elsewhere", 0, 4), 2)]
        topics = Topics(log.namespace)
        log.append([OutRecord(topics.commands, partition("order-7", log.partitions), "order-7", c)
                    for c in again])
        await eventually(lambda: _signals(client, "order-7", 2))
        await client.emit("payments", {"amount": 9}, key="7")  # order-7 reaches 10 and ends
        payments = await client.get_handle("order-7").result(timeout=30)
    assert payments == [{"amount": 1}, {"amount": 2}, {"amount": 9}]


def _command_of(client: docket.Client, workflow_id: str) -> str:
    """The command ID of a workflow's first signal."""
    events = client._reader.history(workflow_id)
    return str(next(e["command_id"] for e in events if e["body"][0] == "SignalReceived"))


def _signal(workflow_id: str, command_id: str, amount: int) -> bytes:
    from docket.codec.payload import to_payload

    return COMMANDS.encode({
        "command_id": command_id, "workflow_id": workflow_id, "ts_us": 1,
        "body": ("SignalWorkflow", {"run_id": None, "signal_name": "paid",
                                     "args": [to_payload({"amount": amount})], "kwargs": {},
                                     "reply_to": None}),
    })


@pytest.mark.usefixtures("backend")
async def test_without_start_only_running_workflows_are_signalled() -> None:
    async with docket.Engine(app) as engine:
        client = engine.client
        await client.emit("notes", "too early", key="notes-1")  # no such workflow: dropped
        assert engine.sources is not None
        notes = next(c for c in engine.sources.consumers if c.source.name == "notes")
        await eventually(lambda: notes.delivered == 1)
        handle = await client.start(collector, 2, workflow_id="notes-1")
        await client.emit("notes", "hello", key="notes-1")
        await client.emit("notes", "wörld".encode(), key="notes-1")  # decode="text": UTF-8
        assert await handle.result(timeout=30) == ["hello", "wörld"]


async def test_two_engines_share_a_source_and_deliver_each_record_once(tmp_path: Path) -> None:
    """Two engines on one data directory: the source's partitions are split between them
    through the group, and every record reaches its workflow once."""
    data = tmp_path / "data"
    async with docket.Engine(app, data_dir=data) as first, docket.Engine(app, data_dir=data) as second:
        assert first.sources is not None and second.sources is not None
        consumers = [next(c for c in e.sources.consumers if c.source.name == "payments")
                     for e in (first, second) if e.sources is not None]
        await eventually(lambda: all(c.offsets for c in consumers) and
                         not set(consumers[0].offsets) & set(consumers[1].offsets))
        keys = [str(k) for k in range(20, 40)]
        for key in keys:
            await first.client.emit("payments", {"amount": 10}, key=key)
        for key in keys:
            assert await first.client.get_handle(f"order-{key}").result(timeout=30) == [{"amount": 10}]
        assert consumers[0].delivered and consumers[1].delivered
        assert consumers[0].delivered + consumers[1].delivered == len(keys)


def test_bindings_are_checked_when_registered() -> None:
    bad = docket.App("bad")
    with pytest.raises(DefinitionError, match="topic 'docket.x.commands' is reserved"):
        bad.signal_source("docket.x.commands", workflow=Order, signal=Order.paid)
    with pytest.raises(DefinitionError, match="workflow 'Order' has no signal 'refund'"):
        bad.signal_source("payments", workflow=Order, signal="refund")
    with pytest.raises(DefinitionError, match="decode='xml'; use one of json, text, bytes"):
        bad.signal_source("payments", workflow=Order, signal=Order.paid, decode="xml")
    with pytest.raises(DefinitionError, match="cannot encode argument 0 of start_args"):
        bad.signal_source("payments", workflow=Order, signal=Order.paid, start_args=(object(),))
    bad.signal_source("payments", workflow=Order, signal=Order.paid)
    with pytest.raises(DefinitionError, match="bound twice .* pass name="):
        bad.signal_source("payments", workflow="other", signal="paid")
    bad.signal_source("payments", workflow="other", signal="paid", name="payments-audit")
    assert sorted(bad.signal_sources) == ["payments", "payments-audit"]


async def test_a_source_for_an_unregistered_workflow_fails_at_start(tmp_path: Path) -> None:
    lonely = docket.App("lonely")
    lonely.signal_source("payments", workflow="nobody", signal="paid")
    with pytest.raises(ConfigurationError, match="workflow 'nobody', which app 'lonely' does not"):
        async with docket.Engine(lonely, data_dir=tmp_path / "data"):
            pass


async def test_the_time_skipping_kit_runs_signal_sources(tmp_path: Path) -> None:
    from docket.testing import WorkflowEnvironment

    kit = docket.App("kit")

    @kit.workflow
    async def later(ctx: docket.WorkflowContext) -> str:
        value: str = await ctx.wait_for_signal("go")
        await ctx.sleep(30 * 24 * 3600)  # skipped: nothing else is in flight
        return value

    kit.signal_source("go", workflow=later, signal="go", decode="text")
    async with WorkflowEnvironment(kit, data_dir=tmp_path / "data") as env:
        await env.client.emit("go", "thirty days later", key="w-1")
        assert await eventually(lambda: _signals(env.client, "w-1", 1))
        assert await env.client.get_handle("w-1").result(timeout=30) == "thirty days later"
        assert env.idle()
