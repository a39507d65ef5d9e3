"""JSON payloads as other producers write them (a Kafka producer's signal, a hand-written
record) decode as ``json.loads`` would: whitespace around the value is fine, anything
else that is not one JSON value is a SerializationError naming the value."""

from __future__ import annotations

from typing import Any

import pytest

from docket.codec.payload import JSON, from_payload, to_payload
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
