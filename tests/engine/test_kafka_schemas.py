"""Docket's topics and schemas on a real Kafka-protocol broker (Tansu, per test).

- The topics a running engine creates carry the settings Docket chose for them (read back
  with the AdminClient's DescribeConfigs, which Tansu answers with what the topic was
  created with).
- A consumer written without Docket decodes a history record with the schema Docket
  published on the schemas topic: confluent_kafka and fastavro only.
- With a schema registry configured, records travel in Confluent's framing; Docket reads
  them back (a workflow completes, and a new machine restores it), and Confluent's
  AvroDeserializer decodes them. The registry is confluent-kafka's in-process one
  (``mock://``): no registry server installs here (see docs/concepts.md).
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from fastavro import parse_schema, schemaless_reader

import docket
from docket.log.kafka import KafkaLog
from tests.kafka_broker import Broker

app = docket.App("kafka-schemas")


@app.step
async def double(n: int) -> int:
    return n * 2


@app.workflow
async def doubler(ctx: docket.WorkflowContext, n: int) -> int:
    await ctx.sleep(0.2)  # through the timers topic
    return await ctx.step(double, n)  # through tasks.default and commands


def describe(bootstrap: str, prefix: str) -> dict[str, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in names])
    return {r.name: {k: e.value for k, e in f.result(10).items()} for r, f in futures.items()}


async def test_each_topic_is_created_with_its_retention_and_replication(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKET_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("DOCKET_MIN_INSYNC_REPLICAS", "1")
    monkeypatch.setenv("DOCKET_COMMAND_RETENTION_MS", str(14 * 86_400_000))
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        handle = await engine.client.start(doubler, 21, workflow_id="provisioned")
        assert await handle.result(timeout=30) == 42
    configs = describe(kafka.bootstrap, "docket.default.")
    isr = {"min.insync.replicas": "1"}
    forever = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1", **isr}
    two_weeks = {**forever, "retention.ms": "1209600000"}
    assert configs["docket.default.history"] == forever
    assert configs["docket.default.timers"] == forever
    assert configs["docket.default.layout"] == forever
    assert configs["docket.default.commands"] == two_weeks
    assert configs["docket.default.tasks.default"] == two_weeks
    assert configs["docket.default.replies"] == {**forever, "retention.ms": "86400000"}
    assert configs["docket.default.schemas"] == {"cleanup.policy": "compact", **isr}
    members = [t for t in configs if t.endswith(".members")]
    assert members and all(
        configs[t] == {"cleanup.policy": "delete", "retention.ms": "3600000", **isr} for t in members
    )
    metadata = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
    assert len(metadata["docket.default.schemas"].partitions) == 1
    assert len(metadata["docket.default.history"].partitions) == 4
    assert all(len(p.replicas) == 1 for p in metadata["docket.default.history"].partitions.values())


def test_an_existing_topic_is_left_alone_and_its_differences_named(
    kafka: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    week = {"retention.ms": "604800000"}
    admin.create_topics([NewTopic("docket.old.history", 2, 1, config=week)])["docket.old.history"].result(10)
    log = KafkaLog(kafka.bootstrap, namespace="old", partitions=2)
    try:
        with caplog.at_level(logging.WARNING, logger="docket"):
            log.ensure_topic("docket.old.history")
    finally:
        log.close()
    assert "Kafka topic 'docket.old.history' has {" in caplog.text
    assert "'retention.ms': '604800000'" in caplog.text and "'retention.ms': '-1'" in caplog.text
    assert describe(kafka.bootstrap, "docket.old.history")["docket.old.history"] == week


def consume(bootstrap: str, topic: str, done: Callable[[list[Any]], bool]) -> list[Any]:
    """Every message of ``topic`` from the start, until ``done`` says enough: the way a
    consumer outside Docket reads (no group, no Docket code)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"outside-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + 20
        while not done(messages):
            assert time.monotonic() < deadline, f"{topic}: {len(messages)} messages, not done"
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
        return messages
    finally:
        consumer.close()


async def test_an_outside_consumer_decodes_history_with_the_published_schemas(
    kafka: Broker, tmp_path: Path
) -> None:
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        handle = await engine.client.start(doubler, 21, workflow_id="audited")
        assert await handle.result(timeout=30) == 42

    # from here on: confluent_kafka and fastavro, as in any consumer written without Docket
    families = ("command", "event", "task", "timer", "reply")
    published = consume(kafka.bootstrap, "docket.default.schemas",
                        lambda ms: {json.loads(m.value())["family"] for m in ms} >= set(families))
    by_fingerprint = {m.key().decode(): parse_schema(json.loads(m.value())["schema"]) for m in published}

    def decode(value: bytes) -> dict[str, Any]:
        assert value[:2] == b"\xc3\x01"  # Avro single-object encoding
        record: dict[str, Any] = schemaless_reader(
            io.BytesIO(value[10:]), by_fingerprint[value[2:10].hex()], None, return_record_name=True)
        return record

    def completed(ms: list[Any]) -> bool:
        return any(decode(m.value())["body"][0] == "docket.v1.WorkflowCompleted" for m in ms)

    history = [decode(m.value()) for m in consume(kafka.bootstrap, "docket.default.history", completed)]
    mine = [e for e in history if e["workflow_id"] == "audited"]
    kinds = [e["body"][0].removeprefix("docket.v1.") for e in mine]
    assert kinds[0] == "WorkflowStarted" and "TimerFired" in kinds and "StepCompleted" in kinds
    (done,) = [e["body"][1] for e in mine if e["body"][0] == "docket.v1.WorkflowCompleted"]
    assert done["result"] == {"encoding": "json/plain", "data": b"42"}


async def test_records_in_confluent_framing_are_read_by_docket_and_by_confluent_consumers(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from docket.log.registry import ConfluentSchemaRegistry

    url = f"mock://{uuid.uuid4().hex}"
    monkeypatch.setenv("DOCKET_SCHEMA_REGISTRY_URL", url)
    async with docket.Engine(app, data_dir=tmp_path / "first"):
        # a client of its own: the engine's client takes its replies in memory, not from the log
        remote = docket.Client.connect(data_dir=tmp_path / "first")
        try:
            handle = await remote.start(doubler, 21, workflow_id="framed")
            assert await handle.result(timeout=30) == 42  # commands, tasks, timers, replies: framed
        finally:
            await remote.close()

    registry = ConfluentSchemaRegistry(url).client  # the registry the engine used
    subjects = set(registry.get_subjects())
    assert {f"docket.default.{t}-value" for t in ("commands", "history", "timers", "replies",
                                                  "tasks.default")} <= subjects
    deserialize = AvroDeserializer(registry)
    context = SerializationContext("docket.default.history", MessageField.VALUE)

    def completed(ms: list[Any]) -> bool:
        return any(deserialize(m.value(), context)["workflow_id"] == "framed"
                   and "result" in deserialize(m.value(), context)["body"] for m in ms)

    history = consume(kafka.bootstrap, "docket.default.history", completed)
    assert all(m.value()[:1] == b"\x00" for m in history)  # Confluent framing: 00 + schema id
    events = [deserialize(m.value(), context) for m in history]
    assert any(e["body"].get("result") == {"encoding": "json/plain", "data": b"42"} for e in events)
    # plain fastavro with the schema fetched by id, as GET /schemas/ids/{id} would give it
    value = history[0].value()
    writer = parse_schema(json.loads(registry.get_schema(int.from_bytes(value[1:5], "big")).schema_str))
    assert schemaless_reader(io.BytesIO(value[5:]), writer, None)["workflow_id"] == "framed"

    # another machine (empty data directory) restores the run from the framed history
    async with docket.Engine(app, data_dir=tmp_path / "second") as engine:
        assert await engine.client.get_handle("framed").result(timeout=30) == 42
        again = await engine.client.start(doubler, 5, workflow_id="framed-again")
        assert await again.result(timeout=30) == 10
