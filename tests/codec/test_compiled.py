"""The schema-compiled codec against fastavro, the reference (docket/codec/compiled.py).

Records are generated from the schemas themselves (every union branch, tuple notation,
empty and full maps and arrays, ints at the int32/int64 limits, unicode, missing fields
that have defaults) and must encode to fastavro's bytes and decode to fastavro's values.
Bad records and bad bytes must fail exactly as they did before the compiled path existed:
same exception, same message.
"""

from __future__ import annotations

import io
import math
import operator
import re
from functools import cache
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from docket.codec import records, schemas
from docket.codec.compiled import CompiledCodec, Unhandled
from docket.codec.records import Codec
from docket.errors import SerializationError

NS = "docket.v1."
CODECS = {family: Codec(family) for family in schemas.FAMILIES}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- records from a schema ----------------------------------------------------------------


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [lo, lo + 1, -1, 0, 1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, hi - 1, hi]
    edges += [2**31 - 1, -(2**31), 1_795_683_599_218_672]  # and a timestamp, 8 bytes
    return st.integers(lo, hi) | st.sampled_from([e for e in edges if lo <= e <= hi])


class Values:
    """Strategies for values of a parsed schema, as fastavro's writer takes them."""

    def __init__(self, named: dict[str, Any], max_depth: int = 3) -> None:
        self.named = named
        self.max_depth = max_depth

    def of(self, t: Any, depth: int = 0) -> st.SearchStrategy[Any]:
        if isinstance(t, list):
            return self.union(t, depth)
        if isinstance(t, str) and t in self.named:
            return self.of(self.named[t], depth)
        kind = t["type"] if isinstance(t, dict) else t
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "int":
            return _integers(*INT32)
        if kind == "long":
            return _integers(*INT64)
        if kind == "double":
            return st.floats() | st.sampled_from([0.0, -0.0, math.inf, -math.inf, 2.0])
        if kind == "string":  # now and then longer than a 2-byte length
            return st.text(max_size=20) | st.builds(
                operator.mul, st.text(min_size=1, max_size=3), st.integers(2700, 3000)
            )
        if kind == "bytes":
            return st.binary(max_size=20) | st.builds(
                operator.mul, st.binary(min_size=1, max_size=2), st.integers(4000, 9000)
            )
        if kind == "enum":
            return st.sampled_from(t["symbols"])
        if kind == "array":
            return st.lists(self.of(t["items"], depth + 1), max_size=3)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), self.of(t["values"], depth + 1), max_size=3)
        if kind == "record":
            return self.record(t, depth)
        raise AssertionError(f"no strategy for {t!r}")

    def record(self, s: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
        required = {
            f["name"]: self.of(f["type"], depth + 1) for f in s["fields"] if "default" not in f
        }
        optional = {f["name"]: self.of(f["type"], depth + 1) for f in s["fields"] if "default" in f}
        return st.fixed_dictionaries(required, optional=optional)

    def union(self, branches: list[Any], depth: int) -> st.SearchStrategy[Any]:
        options = []
        for b in branches:
            target = self.named.get(b, b) if isinstance(b, str) else b
            kind = target["type"] if isinstance(target, dict) else target
            if depth >= self.max_depth and kind == "record" and "null" in branches:
                continue  # Failure.cause: stop recursing
            value = self.of(b, depth)
            if isinstance(b, dict) and b.get("type") == "record":
                name: str | None = b["name"]
            elif isinstance(b, str):
                name = b  # a named reference, or a primitive's type name
            else:
                name = None  # fastavro's validation names these differently: no tuple
            options.append(value)
            if name is not None:
                options.append(value.map(lambda v, n=name: (n, v)))
        return st.one_of(options)


@cache
def family_records(family: str) -> st.SearchStrategy[dict[str, Any]]:
    """Records as Docket's callers write them: ``body`` names its branch without the
    namespace, or (rarely) is a plain dict for fastavro to match."""
    schema = schemas.current(family)
    values = Values(schema["__named_schemas"])
    fields = {f["name"]: f for f in schema["fields"]}
    base = values.record(schema, 0)
    if "body" not in fields:
        return base
    bodies = []
    for branch in fields["body"]["type"]:
        s = schema["__named_schemas"].get(branch, branch) if isinstance(branch, str) else branch
        name = s["name"].removeprefix(NS)
        bodies.append(values.record(s, 1).map(lambda v, n=name: (n, v)))
    body = st.one_of(bodies) | st.one_of(bodies).map(lambda b: b[1])
    return st.tuples(base, body).map(lambda rb: {**rb[0], "body": rb[1]})


# -- the reference: what Codec did before the compiled path ----------------------------------


def fastavro_encode(codec: Codec, record: dict[str, Any]) -> bytes:
    """Codec.encode before: fastavro's compiled writer, errors wrapped the same way."""
    try:
        buffer = bytearray(codec._prefix)
        records._write_data(buffer, records._qualify(record), codec.schema, codec._named, "", {})
        return bytes(buffer)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SerializationError(
            f"cannot encode a {codec.family} record: {exc}. Record fields: {sorted(record)}"
        ) from exc


def fastavro_decode(codec: Codec, data: bytes) -> dict[str, Any]:
    """Codec.decode before, for a record of the current schema."""
    try:
        record = records._read_data(
            io.BytesIO(data[10:]), codec.schema, codec._read_named, None, records._READ_OPTIONS
        )
    except Exception as exc:
        raise SerializationError(
            f"cannot decode a {codec.family} record ({len(data)} bytes): {exc}"
        ) from exc
    return records._unqualify(record)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """The value, or the exception with its message and cause (fastavro names the
    BytesIO it read from, whose address differs from call to call)."""
    try:
        return "ok", normal(fn(*args))
    except Exception as exc:
        cause = exc.__cause__
        text = [_ADDRESS.sub("0x...", str(e)) for e in (exc, cause)]
        return type(exc).__name__, (*text, type(cause).__name__)


_ADDRESS = re.compile(r"0x[0-9a-f]+")


def normal(value: Any) -> Any:
    """NaN equals NaN (and keeps its sign bit), so values compare as the bytes do."""
    if isinstance(value, float):
        return ("float", math.copysign(1.0, value), repr(value))
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(normal(v) for v in value)
    return value


# -- the property: byte for byte, value for value --------------------------------------------


@pytest.mark.parametrize("family", schemas.FAMILIES)
@SETTINGS
@given(data=st.data())
def test_compiled_codec_matches_fastavro(family: str, data: st.DataObject) -> None:
    codec = CODECS[family]
    record = data.draw(family_records(family))
    expected = codec.encode_portable(record)
    assert codec._compiled.encode(record, codec._prefix) == expected  # no fallback taken
    assert codec.encode(record) == expected
    assert fastavro_encode(codec, record) == expected
    decoded = codec._compiled.decode(expected, 10)
    assert normal(decoded) == normal(codec.decode_portable(expected))
    assert normal(decoded) == normal(fastavro_decode(codec, expected))
    assert normal(codec.decode(expected)) == normal(decoded)


@pytest.mark.parametrize(
    ("family", "branch"),
    [
        (family, b["name"] if isinstance(b, dict) else b)
        for family in schemas.FAMILIES
        for f in schemas.current(family)["fields"]
        if f["name"] == "body"
        for b in f["type"]
    ],
)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_body_branch(family: str, branch: str, data: st.DataObject) -> None:
    codec = CODECS[family]
    record = data.draw(body_branch(family, branch))
    expected = codec.encode_portable(record)
    assert codec._compiled.encode(record, codec._prefix) == expected
    assert normal(codec._compiled.decode(expected, 10)) == normal(codec.decode_portable(expected))


@cache
def body_branch(family: str, branch: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = schemas.current(family)
    values = Values(schema["__named_schemas"])
    name = branch.removeprefix(NS)
    return st.tuples(values.record(schema, 0), values.of(branch, 1)).map(
        lambda rb: {**rb[0], "body": (name, rb[1])}
    )


# A schema of the shapes Docket's own do not have yet: enums, doubles and containers in
# unions, int before long, two records in one union (fastavro picks; the compiled code
# hands it over), a record with no fields, a map of arrays of maps.
ZOO = parse_schema(
    {
        "type": "record",
        "name": "test.Zoo",
        "fields": [
            {
                "name": "color",
                "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]},
            },
            {
                "name": "either",
                "type": [
                    "null",
                    "int",
                    "long",
                    "double",
                    "string",
                    "bytes",
                    "boolean",
                    "test.Color",
                ],
            },
            {"name": "number", "type": ["double", "long"]},
            {"name": "list", "type": ["null", {"type": "array", "items": "long"}], "default": None},
            {"name": "map", "type": ["null", {"type": "map", "values": "string"}, "string"]},
            {
                "name": "two",
                "type": [
                    {"type": "record", "name": "A", "fields": [{"name": "a", "type": "long"}]},
                    {"type": "record", "name": "B", "fields": [{"name": "b", "type": "string"}]},
                ],
            },
            {"name": "empty", "type": {"type": "record", "name": "Empty", "fields": []}},
            {
                "name": "nested",
                "type": {
                    "type": "map",
                    "values": {
                        "type": "array",
                        "items": {"type": "map", "values": ["null", "test.Empty"]},
                    },
                },
                "default": {},
            },
            {"name": "x", "type": "double", "default": 1.5},
            {"name": "flag", "type": "boolean", "default": True},
            {"name": "name", "type": "string", "default": "zoo"},
        ],
    }
)
ZOO_CODEC = CompiledCodec(ZOO, label="zoo")


def zoo_reference(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, ZOO, record)
    return out.getvalue()


def zoo_read(data: bytes) -> Any:
    return schemaless_reader(
        io.BytesIO(data), ZOO, None, return_record_name=True, return_record_name_override=True
    )


@SETTINGS
@given(record=Values(ZOO["__named_schemas"]).of(ZOO))
def test_unions_of_every_supported_shape_match_fastavro(record: dict[str, Any]) -> None:
    expected = zoo_reference(record)
    assert ZOO_CODEC.encode(record, b"") == expected
    assert normal(ZOO_CODEC.decode(expected, 0)) == normal(zoo_read(expected))


def test_generated_source_is_kept_for_reading() -> None:
    source = CODECS["event"]._compiled.source
    assert "def encode(r, prefix):" in source and "def decode(d, p):" in source
    assert "docket.v1.Failure" in source  # the recursive record keeps its own function


# -- the same failures as before ---------------------------------------------------------------

STARTED = {
    "workflow_id": "w-1",
    "run_id": "r-1",
    "event_id": 1,
    "activation": 1,
    "ts_us": 1_795_683_599_218_672,
    "command_id": "c-1",
    "body": (
        "WorkflowStarted",
        {
            "workflow_type": "hello",
            "args": [{"encoding": "json/plain", "data": b'"x"'}],
            "kwargs": {"k": {"encoding": "json/plain", "data": b"1"}},
            "task_queue": "default",
            "reply_to": None,
            "parent": {"workflow_id": "p", "run_id": "pr", "seq": 3},
        },
    ),
}

WRONG = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    2**70,
    1.5,
    float("nan"),
    "text",
    "\ud800",
    b"bytes",
    bytearray(b"ba"),
    [],
    [1],
    {},
    {"k": 1},
    ("string", "x"),
    ("nope", 1),
    (1,),
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    elif isinstance(value, tuple):
        found += _paths(value[1], (*path, 1))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, tuple):
        return (value[0], _replace(value[1], rest, new))
    if isinstance(value, list):
        return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]
    return {k: _replace(v, rest, new) if k == head else v for k, v in value.items()}


def _drop(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        return (
            {k: v for k, v in value.items() if k != path[0]} if isinstance(value, dict) else value
        )
    head, rest = path[0], path[1:]
    if isinstance(value, tuple):
        return (value[0], _drop(value[1], rest))
    if isinstance(value, list):
        return [_drop(v, rest) if i == head else v for i, v in enumerate(value)]
    return {k: _drop(v, rest) if k == head else v for k, v in value.items()}


@pytest.mark.parametrize("path", _paths(STARTED), ids=lambda p: ".".join(map(str, p)))
def test_a_wrong_value_anywhere_fails_or_encodes_as_before(path: tuple[Any, ...]) -> None:
    codec = CODECS["event"]
    for wrong in WRONG:
        record = _replace(STARTED, path, wrong)
        assert outcome(codec.encode, record) == outcome(fastavro_encode, codec, record), wrong
    record = _drop(STARTED, path)
    assert outcome(codec.encode, record) == outcome(fastavro_encode, codec, record)


def test_a_wrong_type_is_the_same_serialization_error() -> None:
    record = {**STARTED, "ts_us": "yesterday"}
    with pytest.raises(SerializationError) as got:
        CODECS["event"].encode(record)
    with pytest.raises(TypeError) as reference:
        CODECS["event"].encode_portable(record)
    assert str(got.value) == (
        f"cannot encode a event record: {reference.value}. Record fields: {sorted(record)}"
    )
    assert "ts_us" in str(got.value)


@pytest.mark.parametrize("family", schemas.FAMILIES)
@SETTINGS
@given(data=st.data())
def test_truncated_garbled_and_padded_bytes_decode_as_before(
    family: str, data: st.DataObject
) -> None:
    codec = CODECS[family]
    good = codec.encode(data.draw(family_records(family)))
    mutation = data.draw(st.sampled_from(["truncate", "flip", "append", "garbage"]))
    if mutation == "truncate":
        bad = good[: data.draw(st.integers(10, len(good) - 1))]
    elif mutation == "flip":
        at = data.draw(st.integers(10, len(good) - 1))
        bad = good[:at] + bytes([data.draw(st.integers(0, 255))]) + good[at + 1 :]
    elif mutation == "append":
        bad = good + data.draw(st.binary(min_size=1, max_size=4))
    else:
        bad = good[:10] + data.draw(st.binary(max_size=64))
    assume(bad != good)
    assert outcome(codec.decode, bad) == outcome(fastavro_decode, codec, bad)


def test_a_truncated_record_is_the_same_serialization_error() -> None:
    codec = CODECS["event"]
    bad = codec.encode(STARTED)[:-3]
    with pytest.raises(
        SerializationError, match=rf"^cannot decode a event record \({len(bad)} bytes\)"
    ):
        codec.decode(bad)
    assert outcome(codec.decode, bad) == outcome(fastavro_decode, codec, bad)


def test_bytes_left_over_are_fastavros_to_read() -> None:
    """fastavro reads one record and ignores what follows; so does Codec, as before."""
    good = CODECS["reply"].encode(
        {"reply_to": "c", "request_id": "q", "workflow_id": "w", "run_id": "r", "kind": "started"}
    )
    with pytest.raises(Unhandled):  # the compiled path refuses them: fastavro decides
        CODECS["reply"]._compiled.decode(good + b"\x00", 10)
    assert CODECS["reply"].decode(good + b"\x00") == CODECS["reply"].decode(good)


def test_an_unsupported_type_is_refused_where_the_codec_is_made() -> None:
    schema = parse_schema(
        {
            "type": "record",
            "name": "test.Fixed",
            "fields": [{"name": "id", "type": {"type": "fixed", "name": "Id", "size": 16}}],
        }
    )
    with pytest.raises(SerializationError, match="cannot handle type 'fixed'.*test.Fixed.id"):
        CompiledCodec(schema)
    timestamp = parse_schema(
        {
            "type": "record",
            "name": "test.Ts",
            "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}],
        }
    )
    with pytest.raises(SerializationError, match="logicalType timestamp-micros"):
        CompiledCodec(timestamp)
