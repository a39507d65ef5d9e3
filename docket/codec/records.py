"""Records <-> bytes in Avro single-object encoding: ``C3 01`` + fingerprint + body.

Records are plain dicts shaped like the schemas. A union ``body`` is written and read as a
``(type_name, fields)`` tuple, with the short type name (``"StartWorkflow"``), which is both
fast (no branch to guess) and easy to match on.

Records of the current schema go through code generated from it (``docket.codec.compiled``:
3-5x faster to encode, 2-3x to decode); whatever that code does not handle (a wrong type,
bad bytes, an older writer schema) goes through fastavro, the reference, as before.
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

try:  # fastavro's compiled writer without schemaless_writer's per-call set-up: ~40% faster
    from fastavro._write import write_data as _write_data  # type: ignore[attr-defined]  # compiled, unstubbed
except ImportError:  # pure-Python fastavro builds lack it; the public writer is the fallback
    _write_data = None
try:  # and its compiled reader, for records in the current schema (no resolution): ~2x faster
    from fastavro._read import _read_data  # type: ignore[attr-defined]  # compiled, unstubbed
except ImportError:
    _read_data = None

from docket.codec import schemas
from docket.codec.compiled import CompiledCodec
from docket.errors import SerializationError

_READ_OPTIONS = {"return_record_name": True, "return_record_name_override": True}

MAGIC = b"\xc3\x01"
_NS = "docket.v1."


class Codec:
    """Encoder/decoder for one record family; knows every writer schema it can read."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.schema = schemas.current(family)
        self.fingerprint = schemas.schema_fingerprint(self.schema)
        self._prefix = MAGIC + self.fingerprint
        self._writers: dict[bytes, Any] = {self.fingerprint: self.schema}
        self._named = self.schema["__named_schemas"]
        self._read_named = {"writer": self._named, "reader": {}}
        self._compiled = CompiledCodec(self.schema, label=family, relative={"body": _NS})

    def register_writer_schema(self, raw: dict[str, Any]) -> bytes:
        """Make an older (or other) writer schema of this family readable; returns its fingerprint."""
        parsed = schemas.parse_family(raw)
        fp = schemas.schema_fingerprint(parsed)
        self._writers[fp] = parsed
        return fp

    def reads(self, fingerprint: bytes) -> bool:
        """Whether a record whose writer schema has this fingerprint belongs to this family
        and can be decoded here (readers of mixed topics pick the family by it)."""
        return fingerprint in self._writers or fingerprint in schemas.released(self.family)

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            return self._compiled.encode(record, self._prefix)
        except Exception:  # left to fastavro, which writes it or says what is wrong
            pass
        try:
            if _write_data is not None:
                buffer = bytearray(self._prefix)
                _write_data(buffer, _qualify(record), self.schema, self._named, "", {})
                return bytes(buffer)
            out = io.BytesIO()
            out.write(self._prefix)
            schemaless_writer(out, self.schema, _qualify(record))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(
                f"cannot encode a {self.family} record: {exc}. Record fields: {sorted(record)}"
            ) from exc
        return out.getvalue()

    def encode_portable(self, record: dict[str, Any]) -> bytes:
        """The same bytes through fastavro's public writer (tests compare the two paths)."""
        out = io.BytesIO()
        out.write(self._prefix)
        schemaless_writer(out, self.schema, _qualify(record))
        return out.getvalue()

    def _writer(self, fingerprint: bytes) -> Any:
        """The writer schema with this fingerprint: this Docket's, or a kept older one
        (None if neither)."""
        writer = self._writers.get(fingerprint)
        if writer is None and (writer := schemas.load_released(self.family, fingerprint)):
            self._writers[fingerprint] = writer  # an older Docket wrote it
        return writer

    def decode_portable(self, data: bytes) -> dict[str, Any]:
        """The same record through fastavro's public reader (tests compare the two paths)."""
        record = schemaless_reader(
            io.BytesIO(data[10:]),
            self._writer(data[2:10]),
            self.schema,
            return_record_name=True,
            return_record_name_override=True,
        )
        return _unqualify(record)

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 10 or data[:2] != MAGIC:
            if data[:1] == b"\x00" and len(data) >= 5:  # the Kafka log resolves these
                raise SerializationError(
                    f"a {self.family} record in Confluent Schema Registry framing with schema "
                    f"id {int.from_bytes(data[1:5], 'big')}, which names no schema of this "
                    "Docket: set DOCKET_SCHEMA_REGISTRY_URL to the registry its writer used, "
                    "or upgrade this process if a newer Docket wrote it"
                )
            raise SerializationError(
                f"not a Docket {self.family} record: expected Avro single-object encoding "
                f"(starts with C3 01), got {data[:10]!r}"
            )
        writer = self._writer(data[2:10])
        if writer is None:
            raise SerializationError(
                f"unknown writer schema fingerprint {data[2:10].hex()} for a {self.family} "
                "record: it was written by a newer or foreign Docket; upgrade this process"
            )
        if writer is self.schema and type(data) is bytes:
            try:
                fast: dict[str, Any] = self._compiled.decode(data, 10)
            except Exception:  # left to fastavro, which reads it or says what is wrong
                pass
            else:
                return fast
        try:
            if _read_data is not None and writer is self.schema:  # no schema resolution needed
                record = _read_data(
                    io.BytesIO(data[10:]), writer, self._read_named, None, _READ_OPTIONS
                )
            else:
                record = schemaless_reader(
                    io.BytesIO(data[10:]),
                    writer,
                    self.schema,
                    return_record_name=True,
                    return_record_name_override=True,
                )
        except Exception as exc:  # fastavro raises many types on truncated or garbled input
            raise SerializationError(
                f"cannot decode a {self.family} record ({len(data)} bytes): {exc}"
            ) from exc
        return _unqualify(record)


def _qualify(record: dict[str, Any]) -> dict[str, Any]:
    body = record.get("body")
    if isinstance(body, tuple):
        record = dict(record)
        record["body"] = (_NS + body[0], body[1])
    return record


def _unqualify(record: Any) -> dict[str, Any]:
    body = record.get("body")
    if isinstance(body, tuple):
        record["body"] = (body[0].removeprefix(_NS), body[1])
    return dict(record)


COMMANDS = Codec("command")
EVENTS = Codec("event")
TASKS = Codec("task")
TIMERS = Codec("timer")
REPLIES = Codec("reply")
STATES = Codec("state")
LAYOUTS = Codec("layout")
