"""Docket's Avro schemas for readers outside Docket, on Kafka.

Docket itself needs neither of these: every process knows the schemas it ships. They are
for consumers written without Docket (another language, a stream processor, a data lake).

1. **The schemas topic.** ``docket.<namespace>.schemas`` (compacted, one partition) holds
   one record per current schema, keyed by the fingerprint hex as it appears in records
   (bytes 2-10 of a record in Avro single-object encoding), its value a JSON object:
   ``{"family": "event", "fingerprint": "<hex>", "schema": {...}}``. The schema is
   self-contained (named types defined inline). A reader strips ``C3 01`` and the 8
   fingerprint bytes, looks the schema up by the fingerprint, and decodes the rest with any
   Avro library. Every Kafka log publishes what is missing when it first touches a topic.
2. **Confluent Schema Registry framing.** With a registry configured
   (``DOCKET_SCHEMA_REGISTRY_URL``), records leave this process framed as Confluent's
   serializers frame them: ``00``, the 4-byte big-endian schema id, the Avro body. Each
   schema is registered under the topic's subject, ``<topic>-value`` (TopicNameStrategy:
   every Docket topic holds one record family), once per process. Reads turn either
   framing back into single-object encoding, so the codec above the log never sees the
   difference; a schema id is looked up in the registry once per process.

The Avro body is the same in both framings, so re-framing is a prefix swap, no re-encoding.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from fastavro.schema import to_parsing_canonical_form

from docket.codec import schemas
from docket.codec.records import MAGIC
from docket.errors import ConfigurationError, LogError
from docket.log.base import OutRecord

CONFLUENT_MAGIC = b"\x00"
_PREFIX = len(MAGIC) + 8  # C3 01 + fingerprint
_CONFLUENT_PREFIX = 5  # 00 + schema id
# registry client settings that are numbers (DOCKET_SCHEMA_REGISTRY_* values are strings)
_NUMERIC = (
    "timeout",
    "cache.capacity",
    "cache.latest.ttl.sec",
    "max.retries",
    "retries.wait.ms",
    "retries.max.wait.ms",
)


def schema_records() -> dict[str, bytes]:
    """The schemas topic's records for the schemas this Docket writes: key -> value."""
    records = {}
    for family in schemas.FAMILIES:
        hexprint = schemas.schema_fingerprint(schemas.current(family)).hex()
        schema = json.loads(schemas.standalone(family))
        value = {"family": family, "fingerprint": hexprint, "schema": schema}
        records[hexprint] = json.dumps(value).encode()
    return records


class SchemaRegistry(Protocol):
    """The two calls Docket makes to a schema registry."""

    url: str

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (Avro JSON) under ``subject`` (idempotent); its id."""

    def lookup(self, schema_id: int) -> str | None:
        """The schema with this id, or None when the registry has none."""

    def close(self) -> None: ...


class ConfluentSchemaRegistry:
    """A Confluent Schema Registry API (Confluent's, or a compatible one) through
    confluent-kafka's client, which brings authentication and TLS settings
    (``basic.auth.user.info``, ``ssl.ca.location``, ...: DOCKET_SCHEMA_REGISTRY_*).

    A ``mock://<scope>`` URL is confluent-kafka's in-process registry, as in Confluent's
    serializers: one per scope in this process, for tests.
    """

    _mocks: dict[str, Any] = {}

    def __init__(self, url: str, config: Mapping[str, str] | None = None) -> None:
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        except ImportError as exc:
            raise ConfigurationError(
                f"DOCKET_SCHEMA_REGISTRY_URL is set ({url}) but confluent-kafka's schema "
                "registry client is not installed: pip install 'docket-engine[schema-registry]'"
            ) from exc
        self.url = url
        self._schema = Schema
        conf: dict[str, Any] = {**(config or {}), "url": url}
        try:
            for name in _NUMERIC:
                if isinstance(conf.get(name), str):
                    conf[name] = float(conf[name]) if name == "timeout" else int(conf[name])
            if url.startswith("mock://"):
                client = self._mocks.get(url)
                if client is None:
                    client = self._mocks[url] = SchemaRegistryClient.new_client(conf)
                self.client: Any = client
            else:
                self.client = SchemaRegistryClient(conf)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"bad schema registry settings (DOCKET_SCHEMA_REGISTRY_*): {exc}"
            ) from exc

    def register(self, subject: str, schema: str) -> int:
        schema_id: int = self.client.register_schema(subject, self._schema(schema, "AVRO"))
        return schema_id

    def lookup(self, schema_id: int) -> str | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise
        text: str = found.schema_str
        return text

    def close(self) -> None:
        close = getattr(self.client, "close", None)  # its HTTP session; older clients lack it
        if close is not None and not self.url.startswith("mock://"):  # a scope outlives users
            close()


class RegistryFraming:
    """Single-object encoding inside this process, Confluent framing on Kafka."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        # what this Docket writes: fingerprint -> its schema JSON
        self._schemas = {
            schemas.schema_fingerprint(schemas.current(f)): schemas.standalone(f)
            for f in schemas.FAMILIES
        }
        # a registry schema is recognised by its canonical form (the registry may reformat
        # it); fingerprints are Docket's own, so they are looked up, never recomputed
        self._canonical = {
            to_parsing_canonical_form(json.loads(text)): MAGIC + fp
            for fp, text in self._schemas.items()
        }
        for family in schemas.FAMILIES:  # and what earlier Dockets registered
            for fp in schemas.released(family):
                text = schemas.released_text(family, fp)
                assert text is not None
                self._canonical.setdefault(to_parsing_canonical_form(json.loads(text)), MAGIC + fp)
        self._ids: dict[tuple[str, bytes], bytes] = {}  # (topic, fingerprint) -> 00 + id
        self._prefixes: dict[bytes, bytes] = {}  # 00 + id -> C3 01 + fingerprint
        self._foreign: set[bytes] = set()  # 00 + ids of no schema of this Docket

    def outgoing(self, records: Sequence[OutRecord]) -> list[OutRecord]:
        """``records`` as Confluent's serializers would frame them (registering schemas the
        first time a topic gets them); values that are not Docket records stay as they are."""
        out = []
        for r in records:
            value = r.value
            if value[:2] == MAGIC and value[2:_PREFIX] in self._schemas:
                prefix = self._ids.get((r.topic, value[2:_PREFIX])) or self._register(
                    r.topic, value[2:_PREFIX]
                )
                r = dataclasses.replace(r, value=prefix + value[_PREFIX:])
            out.append(r)
        return out

    def incoming(self, value: bytes) -> bytes:
        """``value`` in single-object encoding if it is Confluent-framed with a schema of
        this Docket; as it is otherwise (the codec then says what it is)."""
        if value[:1] != CONFLUENT_MAGIC or len(value) < _CONFLUENT_PREFIX:
            return value
        confluent = value[:_CONFLUENT_PREFIX]
        prefix = self._prefixes.get(confluent)
        if prefix is None:
            if confluent in self._foreign:
                return value
            prefix = self._resolve(confluent)
            if prefix is None:
                with self._lock:
                    self._foreign.add(confluent)
                return value
        return prefix + value[_CONFLUENT_PREFIX:]

    def _register(self, topic: str, fingerprint: bytes) -> bytes:
        subject = f"{topic}-value"
        try:
            schema_id = self.registry.register(subject, self._schemas[fingerprint])
        except Exception as exc:  # the client raises its own errors and httpx's
            raise LogError(
                f"cannot register the schema of {topic!r} (subject {subject!r}) with the "
                f"schema registry at {self.registry.url}: {exc}. If the registry rejects it "
                "as incompatible, the subject holds another schema: each Docket topic needs "
                "its own subject"
            ) from exc
        confluent = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        with self._lock:
            self._ids[(topic, fingerprint)] = confluent
            self._prefixes[confluent] = MAGIC + fingerprint
        return confluent

    def _resolve(self, confluent: bytes) -> bytes | None:
        schema_id = int.from_bytes(confluent[1:], "big")
        try:
            text = self.registry.lookup(schema_id)
        except Exception as exc:  # unreachable, unauthorised, ...: retry later, skip nothing
            raise LogError(
                f"cannot look up schema id {schema_id} in the schema registry at "
                f"{self.registry.url}: {exc}"
            ) from exc
        if text is None:
            return None
        try:
            prefix = self._canonical.get(to_parsing_canonical_form(json.loads(text)))
        except (ValueError, TypeError, KeyError):  # not Avro, or not JSON
            return None
        if prefix is not None:
            with self._lock:
                self._prefixes[confluent] = prefix
        return prefix


__all__ = ["ConfluentSchemaRegistry", "RegistryFraming", "SchemaRegistry", "schema_records"]
