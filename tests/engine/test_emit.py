"""ctx.emit: records to user topics, appended with the history event that records them; on
the embedded log and on Kafka (a Tansu broker per test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from user_topics_app import app, backend, emitter, record_id, topic_records  # noqa: F401

import docket
from docket.errors import NondeterminismError, WorkflowFailedError
from docket.log.embedded import EmbeddedLog
from docket.log.partitioner import partition
from docket.replay import replay_history


@pytest.mark.usefixtures("backend")
async def test_each_record_goes_out_once_with_its_event_across_replays_and_restarts() -> None:
    # every activation is replayed from history (no cache): replays must not emit again
    async with docket.Engine(app, workflow_cache_size=0) as engine:
        handle = await engine.client.start(emitter, 3, workflow_id="emitter")
        await handle.signal("next")
    async with docket.Engine(app) as engine:  # a restart in the middle of the workflow
        handle = engine.client.get_handle("emitter")
        await handle.signal("next")
        await handle.signal("next")
        ids = await handle.result(timeout=30)
        events = [e for e in await handle.history() if e.type == "RecordEmitted"]
        assert engine.log is not None
        records = topic_records(engine.log, "events")
        partitions = engine.log.partitions_of("events")
    run_id = handle.run_id or (await _run_id(handle))
    assert len(ids) == len(events) == len(records) == 12
    by_id = {record_id(r): r for r in records}
    assert sorted(by_id) == sorted(ids)  # each record once, with the identity ctx.emit returned
    for event in events:
        body = event.attributes
        record = by_id[f"emitter/{run_id}/{body['seq']}"]
        assert (record.key, record.value) == (body["key"], body["value"])
        assert record.partition == partition(record.key, partitions)  # Docket's partitioner
        assert record.headers[1:] == tuple(sorted(body["headers"].items()))
    values = [by_id[i].value for i in ids[:4]]
    assert json.loads(values[0])["i"] == 0  # a dict: JSON
    assert values[1] == b"receipt-o-0-0"  # a str: UTF-8
    assert json.loads(values[2]) == {"order_id": "o-0", "items": 0}  # a dataclass: JSON
    assert values[3] == b"\xff\x00bytes"  # bytes: as they are
    assert [by_id[i].key for i in ids[:4]] == ["k-0", "emitter", "emitter", "k-0"]  # default key
    assert by_id[ids[1]].headers[1:] == (("kind", b"text"), ("raw", b"\x00\x01"))


async def _run_id(handle: docket.WorkflowHandle[object]) -> str:
    return (await handle.describe()).run_id


@pytest.mark.usefixtures("backend")
async def test_a_user_topic_keeps_its_own_partition_count(tmp_path: Path) -> None:
    """User topics are the user's: an existing one is used with whatever count it has (here
    7 on Kafka; on the embedded log, 2, the count of the namespace that first used it); the
    engine's namespace has 4 partitions."""
    if "DOCKET_BOOTSTRAP_SERVERS" in os.environ:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": os.environ["DOCKET_BOOTSTRAP_SERVERS"]})
        admin.create_topics([NewTopic("events", 7, 1)])["events"].result(10)
        expected = 7
    else:
        other = EmbeddedLog(tmp_path / "data", namespace="other", partitions=2)
        assert other.partitions_of("events") == 2
        other.close()
        expected = 2
    async with docket.Engine(app) as engine:
        assert engine.log is not None and engine.log.partitions == 4
        handle = await engine.client.start(emitter, 1, workflow_id="counted")
        await handle.signal("next")
        await handle.result(timeout=30)
        assert engine.log.partitions_of("events") == expected
        records = topic_records(engine.log, "events")
    assert len(records) == 4
    assert all(r.partition == partition(r.key, expected) for r in records)
    assert {r.partition for r in records} == {partition("k-0", expected), partition("counted", expected)}


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("docket.default.history", "is reserved: names starting with 'docket.' are Docket's own"),
        ("no spaces", "use only letters, digits, '.', '_' and '-'"),
        ("", "use 1-249 characters"),
    ],
)
async def test_a_bad_topic_fails_the_workflow_with_a_clear_error(
    topic: str, message: str, tmp_path: Path
) -> None:
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        handle = await engine.client.start("bad_emitter", topic, workflow_id="bad")
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result(timeout=30)
        assert message in str(failed.value.__cause__)
        assert "ctx.emit in workflow 'bad_emitter'" in str(failed.value.__cause__)
        assert "RecordEmitted" not in [e.type for e in await handle.history()]


async def test_replay_checks_what_was_emitted(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        handle = await engine.client.start(emitter, 1, workflow_id="checked")
        await handle.signal("next")
        await handle.result(timeout=30)
        events = engine.client._reader.history("checked")
    assert replay_history(app, events).ok

    changed = docket.App("user-topics")

    @changed.step(name="charge")
    async def charge(order_id: str, amount: int) -> str:
        return ""

    @changed.workflow(name="emitter")
    async def emits_another_value(ctx: docket.WorkflowContext, count: int) -> None:
        ctx.emit("events", {"i": "changed"}, key="k-0")
        await ctx.wait_for_signal("next")

    result = replay_history(changed, events)
    assert isinstance(result.error, NondeterminismError)
    text = str(result.error)
    assert "asked for a record to topic 'events' with key 'k-0' at seq 1 with value" in text
    assert '\'{"i":"changed"}\'' in text and "history event 2 recorded" in text
    assert "test_emit.py" in text  # the line of code that emitted


@pytest.mark.kafka
async def test_a_plain_kafka_consumer_sees_records_and_their_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can read a user topic: here a confluent-kafka consumer of its own."""
    from confluent_kafka import Consumer, TopicPartition

    from tests.kafka_broker import Broker

    broker = Broker(tmp_path).start()
    monkeypatch.setenv("DOCKET_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("DOCKET_KAFKA_SESSION_TIMEOUT_MS", "1000")
    try:
        async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
            handle = await engine.client.start(emitter, 1, workflow_id="seen")
            await handle.signal("next")
            ids = await handle.result(timeout=30)
            assert engine.log is not None
            count = engine.log.partitions_of("events")
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "outsider",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("events", p, 0) for p in range(count)])
        seen: dict[str, bytes] = {}
        for _ in range(200):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                headers = dict(message.headers() or [])
                seen[headers["docket-record-id"].decode()] = message.value()
            if len(seen) == len(ids):
                break
        consumer.close()
        assert sorted(seen) == sorted(ids)
    finally:
        broker.stop()
