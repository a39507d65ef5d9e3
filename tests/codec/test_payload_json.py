"""JSON payloads as other producers write them (a Kafka producer's signal, a hand-written
record) decode as ``json.loads`` would: whitespace around the value is fine, anything
else that is not one JSON value is a SerializationError naming the value."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from docket.codec.payload import JSON, decode_args, from_payload, to_payload
from docket.errors import SerializationError


@pytest.mark.parametrize(
    "value", ["x", "", 0, -1.5, True, None, [1, {"a": [None]}], {"k": "v", "n": {"m": []}}]
)
def test_what_docket_writes_reads_back(value: Any) -> None:
    assert from_payload(to_payload(value)) == value


@pytest.mark.parametrize(
    ("data", "value"),
    [(b" 1", 1), (b"1\n", 1), (b'{"a": 1} ', {"a": 1}), (b"\n[1, 2]\t", [1, 2]), (b'"\\u00e9"', "é")],
)
def test_whitespace_around_a_value_from_another_producer_is_fine(data: bytes, value: Any) -> None:
    assert from_payload({"encoding": JSON, "data": data}) == value


@pytest.mark.parametrize("data", [b"", b" ", b"1 2", b"{", b"nul", b"[1,]", b"1}"])
def test_what_is_not_one_json_value_is_refused(data: bytes) -> None:
    with pytest.raises(SerializationError, match="cannot decode argument 0 of step 'charge'"):
        from_payload({"encoding": JSON, "data": data}, where="argument 0 of step 'charge'")


@dataclass
class _Point:
    x: int
    y: int


@dataclass
class _Tagged:
    point: _Point
    extra: Any | None = None  # a union arm of Any: any value fits it


class _Colour(enum.StrEnum):
    RED = "red"


# Hints naming only JSON's own types skip the walk that rebuilds richer ones: every hint
# here must come back exactly as the full walk gives it (type included), the rich ones too.
@pytest.mark.parametrize(
    ("hint", "value", "expected"),
    [
        (str, "a", "a"),
        (int, 3, 3),
        (float, 3, 3),
        (bool, True, True),
        (Any, {"a": [1]}, {"a": [1]}),
        (list[str], ["a"], ["a"]),
        (dict[str, list[int]], {"a": [1]}, {"a": [1]}),
        (Optional[str], None, None),  # noqa: UP045 (typing.Union and X | None both checked)
        (str | None, "a", "a"),
        (tuple[int, int], [1, 2], (1, 2)),
        (list[tuple[int, int]], [[1, 2]], [(1, 2)]),
        (set[str], ["a"], {"a"}),
        (bytes, "ab", b"ab"),
        (_Point, {"x": 1, "y": 2}, _Point(1, 2)),
        (Optional[_Point], {"x": 1, "y": 2}, _Point(1, 2)),  # noqa: UP045
        (dict[str, _Point], {"k": {"x": 1, "y": 2}}, {"k": _Point(1, 2)}),
        (_Colour, "red", _Colour.RED),
        (uuid.UUID, str(uuid.UUID(int=7)), uuid.UUID(int=7)),
        (Any | None, [1], [1]),
        (_Tagged, {"point": {"x": 1, "y": 2}, "extra": [3]}, _Tagged(_Point(1, 2), [3])),
        (list[_Point | Any], [{"x": 1, "y": 2}, 3], [_Point(1, 2), 3]),
    ],
)
def test_a_hint_gives_its_type_whether_or_not_it_needs_rebuilding(
    hint: Any, value: Any, expected: Any
) -> None:
    decoded = from_payload(to_payload(value), hint)
    assert decoded == expected
    assert type(decoded) is type(expected)
    if isinstance(expected, list):
        assert [type(v) for v in decoded] == [type(v) for v in expected]
    if isinstance(expected, dict):
        assert [type(v) for v in decoded.values()] == [type(v) for v in expected.values()]


def test_an_argument_that_does_not_decode_is_named_with_its_function() -> None:
    def charge(order: _Point, *, note: str) -> None: ...

    with pytest.raises(SerializationError, match=r"^cannot decode argument 0 of step 'charge': "):
        decode_args(charge, [{"encoding": JSON, "data": b"{"}], {}, where="step 'charge'")
    with pytest.raises(
        SerializationError, match=r"^cannot decode argument 'note' of step 'charge': unknown"
    ):
        decode_args(
            charge,
            [to_payload({"x": 1, "y": 2})],
            {"note": {"encoding": "x/y", "data": b""}},
            where="step 'charge'",
        )
    args, kwargs = decode_args(
        charge, [to_payload({"x": 1, "y": 2})], {"note": to_payload("n")}, where="step 'charge'"
    )
    assert (args, kwargs) == ([_Point(1, 2)], {"note": "n"})
