"""Pure parts of Docket on Kafka: which settings each topic is created with, the schemas
published for outside readers, and Confluent Schema Registry framing.

The registry here is confluent-kafka's own in-process one (a ``mock://`` URL) or a small
dict-backed one; tests/engine/test_kafka_schemas.py runs the same on a broker.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form

from docket.codec import schemas
from docket.codec.payload import to_payload
from docket.codec.records import REPLIES, TASKS
from docket.config import Settings
from docket.errors import ConfigurationError, LogError, SerializationError
from docket.log.base import OutRecord
from docket.log.provisioning import DAY_MS, TopicPolicy, topic_kind
from docket.log.registry import ConfluentSchemaRegistry, RegistryFraming, schema_records

TASK = {"workflow_id": "w", "run_id": "r", "workflow_type": "t", "seq": 1, "attempt": 2,
        "step_name": "s", "args": [to_payload(1)], "kwargs": {"a": to_payload("b")},
        "idempotency_key": "w/r/1/2", "start_to_close_ms": 10, "heartbeat_ms": None,
        "schedule_to_start_ms": None, "heartbeat_details": None, "cancel": False}
REPLY = {"reply_to": "c", "request_id": "req", "workflow_id": "w", "run_id": "r",
         "kind": "failed", "result": to_payload([1, 2]),
         "failure": {"type": "ValueError", "message": "boom", "stack": "", "non_retryable": False,
                     "details": to_payload({"k": 1}), "kind": "application",
                     "cause": {"type": "KeyError", "message": "why", "stack": "",
                               "non_retryable": False, "details": None, "kind": "application",
                               "cause": None}}}


# -- topics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "kind"), [
    ("docket.ns.commands", "commands"), ("docket.ns.history", "history"),
    ("docket.ns.timers", "timers"), ("docket.ns.replies", "replies"),
    ("docket.ns.tasks.default", "tasks"), ("docket.ns.tasks.a.b", "tasks"),
    ("docket.ns.schemas", "schemas"), ("docket.ns.layout", "layout"),
    ("docket.ns.processor.members", "members"), ("docket.ns.worker.default.members", "members"),
    ("docket.other.history", "other"), ("orders", "other"),
])
def test_topics_are_told_apart_by_name(topic: str, kind: str) -> None:
    assert topic_kind("ns", topic) == kind


def test_each_kind_of_topic_gets_its_retention() -> None:
    policy = TopicPolicy()
    forever = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
    week = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS), "retention.bytes": "-1"}
    day = {"cleanup.policy": "delete", "retention.ms": str(DAY_MS), "retention.bytes": "-1"}
    expected = {
        "docket.ns.history": (forever, 6), "docket.ns.timers": (forever, 6),
        "docket.ns.layout": (forever, 1), "docket.ns.commands": (week, 6),
        "docket.ns.tasks.q": (week, 6), "docket.ns.replies": (day, 6),
        "docket.ns.schemas": ({"cleanup.policy": "compact"}, 1),
        "docket.ns.processor.members": ({"cleanup.policy": "delete", "retention.ms": "3600000"}, 6),
        "orders": ({}, 6),
    }
    for topic, (config, partitions) in expected.items():
        spec = policy.spec("ns", topic, 6)
        assert (dict(spec.config), spec.partitions, spec.replication_factor) == (config, partitions, -1)


def test_replication_sets_min_insync_replicas_from_three_replicas_on() -> None:
    assert "min.insync.replicas" not in TopicPolicy(replication_factor=2).spec("ns", "docket.ns.history", 1).config
    spec = TopicPolicy(replication_factor=3).spec("ns", "docket.ns.history", 1)
    assert (spec.replication_factor, spec.config["min.insync.replicas"]) == (3, "2")
    mine = TopicPolicy(min_insync_replicas=1, command_retention_ms=-1).spec("ns", "docket.ns.commands", 1)
    assert mine.config["min.insync.replicas"] == "1" and mine.config["retention.ms"] == "-1"
    # user topics get the replication settings, and the broker's retention
    assert dict(TopicPolicy(replication_factor=3).spec("ns", "orders", 1).config) == {"min.insync.replicas": "2"}


def test_differences_name_what_an_existing_topic_lacks() -> None:
    spec = TopicPolicy().spec("ns", "docket.ns.history", 1)
    assert spec.differences({"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}) == {}
    assert spec.differences({"cleanup.policy": "delete", "retention.ms": "604800000"}) == {
        "retention.ms": "604800000", "retention.bytes": None}


def test_settings_read_topic_and_registry_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("DOCKET_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("DOCKET_COMMAND_RETENTION_MS", "-1")
    monkeypatch.setenv("DOCKET_REPLY_RETENTION_MS", "3600000")
    monkeypatch.setenv("DOCKET_SCHEMA_REGISTRY_URL", "https://registry:8081")
    monkeypatch.setenv("DOCKET_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "key:secret")
    settings = Settings.from_env()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    assert (settings.command_retention_ms, settings.reply_retention_ms) == (-1, 3_600_000)
    assert settings.schema_registry_url == "https://registry:8081"
    assert settings.schema_registry_config == {"basic.auth.user.info": "key:secret"}
    defaults = Settings()
    assert (defaults.replication_factor, defaults.min_insync_replicas) == (-1, None)
    assert (defaults.command_retention_ms, defaults.reply_retention_ms) == (7 * DAY_MS, DAY_MS)


@pytest.mark.parametrize(("fields", "message"), [
    ({"replication_factor": 0}, "replication_factor must be -1"),
    ({"replication_factor": 2, "min_insync_replicas": 3}, "min_insync_replicas must be between 1"),
    ({"min_insync_replicas": 0}, "min_insync_replicas must be between 1"),
    ({"command_retention_ms": 10}, r"command_retention_ms must be -1 \(forever\) or at least"),
])
def test_bad_topic_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(**fields)


def test_a_non_number_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_REPLY_RETENTION_MS", "1d")
    with pytest.raises(ConfigurationError, match="DOCKET_REPLY_RETENTION_MS must be a whole number"):
        Settings.from_env()


# -- the published schemas ------------------------------------------------------------------------


def test_published_schemas_are_self_contained_and_keyed_by_the_records_fingerprint() -> None:
    records = schema_records()
    assert sorted(json.loads(v)["family"] for v in records.values()) == sorted(schemas.FAMILIES)
    for key, value in records.items():
        published = json.loads(value)
        family, schema = published["family"], published["schema"]
        assert key == published["fingerprint"] == schemas.schema_fingerprint(schemas.current(family)).hex()
        parse_schema(schema)  # valid on its own: every named type defined once, before use
        text = json.dumps(schema)
        for name in ("docket.v1.Payload", "docket.v1.Failure"):
            assert text.count(f'"name": "{name}"') <= 1


@pytest.mark.parametrize(("codec", "record"), [(TASKS, TASK), (REPLIES, REPLY)])
def test_an_outside_reader_decodes_with_the_published_schema_alone(codec: Any, record: dict[str, Any]) -> None:
    data = codec.encode(record)
    published = {k: json.loads(v) for k, v in schema_records().items()}
    assert data[:2] == b"\xc3\x01"
    writer = parse_schema(published[data[2:10].hex()]["schema"])
    decoded = schemaless_reader(io.BytesIO(data[10:]), writer, None)
    assert decoded["workflow_id"] == "w" and decoded["run_id"] == "r"
    assert decoded == {k: (v if not isinstance(v, tuple) else v[1]) for k, v in record.items()}


# -- Confluent Schema Registry framing -------------------------------------------------------------


class CountingRegistry:
    """A registry in a dict, counting calls: Docket must not ask once per record."""

    url = "dict://test"

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, int] = {}
        self.calls = 0

    def register(self, subject: str, schema: str) -> int:
        self.calls += 1
        known = [i for i, text in self.schemas.items() if text == schema]
        schema_id = known[0] if known else len(self.schemas) + 100
        self.schemas[schema_id] = schema
        self.subjects[subject] = schema_id
        return schema_id

    def lookup(self, schema_id: int) -> str | None:
        self.calls += 1
        return self.schemas.get(schema_id)

    def close(self) -> None:
        pass


def test_framing_swaps_the_prefix_and_asks_the_registry_once_per_topic() -> None:
    registry = CountingRegistry()
    framing = RegistryFraming(registry)
    task, reply = TASKS.encode(TASK), REPLIES.encode(REPLY)
    out = framing.outgoing([OutRecord("docket.ns.tasks.q", 0, "w", task, (("h", b"1"),)),
                            OutRecord("docket.ns.replies", 1, "c", reply),
                            OutRecord("docket.ns.tasks.q", 1, "w", task),
                            OutRecord("orders", 0, "k", b'{"not": "avro"}')])
    assert registry.subjects == {"docket.ns.tasks.q-value": 100, "docket.ns.replies-value": 101}
    assert [r.value[:5] for r in out[:3]] == [b"\x00\x00\x00\x00\x64", b"\x00\x00\x00\x00\x65",
                                             b"\x00\x00\x00\x00\x64"]
    assert out[0].value[5:] == task[10:] and out[0].headers == (("h", b"1"),)
    assert out[3].value == b'{"not": "avro"}'
    assert registry.calls == 2
    # back: the writer's own ids are known without asking
    assert [framing.incoming(r.value) for r in out] == [task, reply, task, b'{"not": "avro"}']
    assert registry.calls == 2
    # another process's reader asks once per id, then knows it
    reader = RegistryFraming(registry)
    assert reader.incoming(out[0].value) == task and reader.incoming(out[2].value) == task
    assert TASKS.decode(reader.incoming(out[0].value)) == TASK
    assert registry.calls == 3


def test_an_id_the_registry_does_not_know_reaches_the_codec_as_a_clear_error() -> None:
    registry = CountingRegistry()
    framing = RegistryFraming(registry)
    unknown = b"\x00\x00\x00\x00\x07" + TASKS.encode(TASK)[10:]
    assert framing.incoming(unknown) == unknown
    assert framing.incoming(unknown) == unknown and registry.calls == 1  # remembered
    with pytest.raises(SerializationError, match="Confluent Schema Registry framing with schema id 7"):
        TASKS.decode(unknown)


def test_a_registry_that_fails_is_a_log_error_not_a_skipped_record() -> None:
    class Down(CountingRegistry):
        def lookup(self, schema_id: int) -> str | None:
            raise ConnectionError("connection refused")

        def register(self, subject: str, schema: str) -> int:
            raise ConnectionError("connection refused")

    framing = RegistryFraming(Down())
    with pytest.raises(LogError, match="cannot look up schema id 5 in the schema registry at dict://test"):
        framing.incoming(b"\x00\x00\x00\x00\x05rest")
    with pytest.raises(LogError, match="subject 'docket.ns.tasks.q-value'"):
        framing.outgoing([OutRecord("docket.ns.tasks.q", 0, "w", TASKS.encode(TASK))])


def test_confluents_own_deserializer_reads_dockets_framing() -> None:
    """Through confluent-kafka's registry client (its in-process registry) and its
    AvroDeserializer: what a Confluent consumer would do."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry = ConfluentSchemaRegistry(f"mock://{uuid.uuid4().hex}")
    framing = RegistryFraming(registry)
    (out,) = framing.outgoing([OutRecord("docket.ns.replies", 0, "c", REPLIES.encode(REPLY))])
    assert registry.client.get_subjects() == ["docket.ns.replies-value"]
    schema_id = int.from_bytes(out.value[1:5], "big")
    registered = registry.client.get_schema(schema_id).schema_str
    assert to_parsing_canonical_form(json.loads(registered)) == to_parsing_canonical_form(
        json.loads(schemas.standalone("reply")))
    decoded = AvroDeserializer(registry.client)(
        out.value, SerializationContext("docket.ns.replies", MessageField.VALUE))
    assert decoded["failure"]["cause"]["message"] == "why" and decoded["kind"] == "failed"
    # a second client on the same scope (another Docket reader) resolves the id
    assert RegistryFraming(ConfluentSchemaRegistry(registry.url)).incoming(out.value) == REPLIES.encode(REPLY)


def test_an_unreachable_registry_is_a_log_error_through_confluents_http_client() -> None:
    """The real client, over HTTP, to a port where nothing listens."""
    registry = ConfluentSchemaRegistry("http://127.0.0.1:1", {"max.retries": "0"})
    try:
        with pytest.raises(LogError, match="cannot look up schema id 5 .* at http://127.0.0.1:1"):
            RegistryFraming(registry).incoming(b"\x00\x00\x00\x00\x05rest")
    finally:
        registry.close()
    with pytest.raises(ConfigurationError, match="DOCKET_SCHEMA_REGISTRY_"):
        ConfluentSchemaRegistry("http://127.0.0.1:1", {"max.retries": "many"})
