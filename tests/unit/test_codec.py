"""Codec round-trips, clear errors on bad bytes, and schema evolution (STYLE.md 4.5, 4.9).

Everything here is pure: records <-> bytes with the shipped schemas, user values <-> payloads,
exceptions <-> Failure records.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import io
import json
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_args, get_origin

import pytest
from fastavro import schemaless_writer
from fastavro.utils import generate_many

from docket import errors
from docket.codec import schemas
from docket.codec.failure import from_failure, qualified_name, to_failure
from docket.codec.payload import (
    JSON,
    NULL,
    decode_args,
    encode_args,
    from_payload,
    to_payload,
)
from docket.codec.records import COMMANDS, EVENTS, MAGIC, REPLIES, STATES, TASKS, TIMERS, Codec
from docket.errors import SerializationError
from docket.retry import RetryPolicy

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RELEASED = Path(__file__).resolve().parents[1] / "schemas" / "released"


# -- sample records -----------------------------------------------------------------------------


def payload(value: Any) -> dict[str, Any]:
    return to_payload(value)


def failure(message: str = "boom", *, cause: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "ValueError",
        "message": message,
        "stack": "Traceback ...\nValueError: boom\n",
        "non_retryable": False,
        "details": payload({"k": [1, 2]}),
        "kind": "application",
        "cause": cause,
    }


RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["KeyError"]).to_record()

COMMAND_BODIES: dict[str, dict[str, Any]] = {
    "StartWorkflow": {
        "workflow_type": "checkout",
        "args": [payload("a"), payload({"n": 1}), to_payload(None)],
        "kwargs": {"x": payload([1, 2, 3])},
        "task_queue": "default",
        "id_reuse_policy": "allow_after_close",
        "reply_to": "client-1",
        "start_delay_ms": 1000,
        "run_timeout_ms": None,
        "execution_timeout_ms": 86_400_000,
        "parent": {"workflow_id": "order-1", "run_id": "r-1", "seq": 4},
    },
    "CompleteStep": {"run_id": "r1", "seq": 3, "attempt": 2, "result": payload("ok"), "reply_to": None},
    "FailStep": {"run_id": "r1", "seq": 3, "attempt": 2, "failure": failure(cause=failure("inner")),
                 "reply_to": "client-5"},
    "HeartbeatStep": {"run_id": "r1", "seq": 3, "attempt": 1, "details": payload({"at": 7}), "reply_to": None},
    "StartStep": {"run_id": "r1", "seq": 3, "attempt": 2},
    "FireTimer": {"run_id": "r1", "kind": "sleep", "seq": 4, "attempt": 0, "fire_at_us": 10**15},
    "WatchWorkflow": {"run_id": None, "reply_to": "client-2"},
    "TerminateWorkflow": {"run_id": None, "reason": "enough", "reply_to": "client-2"},
    "CancelWorkflow": {"run_id": "r", "reason": "stop", "reply_to": None},
    "SignalWorkflow": {"run_id": None, "signal_name": "add", "args": [payload("x")], "kwargs": {},
                       "reply_to": "client-2", "sender": None},
    "ReportChild": {"run_id": "r-1", "seq": 4, "child_run_id": "r-9", "outcome": "completed",
                    "result": payload(3), "failure": None},
    "ReportSignal": {"run_id": "r-1", "seq": 5, "failure": failure()},
    "QueryWorkflow": {"run_id": "r", "query_name": "contents", "args": [], "kwargs": {"k": payload(1)},
                      "reply_to": "client-2"},
    "UpdateWorkflow": {"run_id": None, "update_id": "u-1", "update_name": "add", "args": [payload(1)],
                       "kwargs": {}, "reply_to": "client-3"},
}

EVENT_BODIES: dict[str, dict[str, Any]] = {
    "WorkflowStarted": {
        "workflow_type": "checkout",
        "args": [payload("a")],
        "kwargs": {},
        "task_queue": "default",
        "reply_to": None,
        "run_chain": ["r-0"],
        "watchers": ["client-1"],
        "start_at_us": 12,
        "run_timeout_ms": 60_000,
        "execution_deadline_us": None,
        "parent": None,
    },
    "StepScheduled": {
        "seq": 1,
        "step_name": "charge",
        "args": [payload({"cents": 5})],
        "kwargs": {"note": payload("n")},
        "task_queue": "payments",
        "local": True,
        "retry": RETRY,
        "start_to_close_ms": 5000,
        "heartbeat_ms": None,
        "schedule_to_close_ms": 60000,
        "schedule_to_start_ms": None,
    },
    "StepAttemptFailed": {"seq": 1, "attempt": 1, "failure": failure(), "retry_at_us": 123},
    "StepRetried": {"seq": 1, "attempt": 2},
    "StepHeartbeat": {"seq": 1, "attempt": 2, "details": None},
    "StepStarted": {"seq": 1, "attempt": 2},
    "StepCompleted": {"seq": 1, "attempt": 2, "result": payload([1, "two", 3.5, None, True])},
    "StepFailed": {"seq": 1, "attempt": 3, "failure": failure(cause=failure(cause=failure("root")))},
    "TimerStarted": {"seq": 2, "fire_at_us": 99},
    "TimerFired": {"seq": 2},
    "WatcherAdded": {"reply_to": "client-3"},
    "SignalReceived": {"signal_name": "add", "args": [payload("x")], "kwargs": {}},
    "CommandsDeferred": {"reason": "NondeterminismError: ...", "commands": [b"\xc3\x01raw"]},
    "DeferredResumed": {"count": 1},
    "WorkflowTerminated": {"reason": "enough"},
    "TimerCancelled": {"seq": 2, "fire_at_us": 10**15},
    "StepCancelRequested": {"seq": 2},
    "UpdateAccepted": {"update_id": "u-1", "update_name": "add", "args": [payload(1)], "kwargs": {},
                       "reply_to": "client-3"},
    "UpdateWatcherAdded": {"update_id": "u-1", "reply_to": "client-4"},
    "StartDelayElapsed": {},
    "ChildWorkflowScheduled": {"seq": 3, "workflow_type": "doubler", "workflow_id": "w/child-3",
                               "args": [payload(1)], "kwargs": {}, "task_queue": "default",
                               "parent_close_policy": "abandon", "run_timeout_ms": None,
                               "execution_timeout_ms": 1000},
    "ChildWorkflowStarted": {"seq": 3, "run_id": "r-9"},
    "ChildWorkflowCompleted": {"seq": 3, "result": payload(2)},
    "ChildWorkflowFailed": {"seq": 3, "failure": failure()},
    "ChildCancelRequested": {"seq": 3},
    "ExternalSignalScheduled": {"seq": 4, "workflow_id": "other", "run_id": None, "signal_name": "go",
                                "args": [], "kwargs": {}},
    "ExternalSignalDelivered": {"seq": 4},
    "ExternalSignalFailed": {"seq": 4, "failure": failure()},
    "WorkflowTimedOut": {"timeout": "run"},
    "WorkflowContinuedAsNew": {"new_run_id": "r-2", "workflow_type": "checkout", "args": [payload(3)],
                               "kwargs": {}, "task_queue": "default",
                               "signals": [{"signal_name": "add", "args": [payload("x")], "kwargs": {}}]},
    "UpdateCompleted": {"update_id": "u-1", "result": None, "failure": failure()},
    "RecordEmitted": {"seq": 5, "topic": "orders", "key": "o-1", "value": b'{"total":10}',
                      "headers": {"trace": b"\x00\xff"}},
    "SideEffectRecorded": {"seq": 6, "result": payload([7, "seven"]), "failure": None},
    "CancelRequested": {"reason": "stop"},
    "WorkflowCancelled": {"failure": failure()},
    "WorkflowCompleted": {"result": payload({"total": 10})},
    "WorkflowFailed": {"failure": failure()},
}

STATE = {
    "workflow_id": "w",
    "run_id": "r",
    "workflow_type": "checkout",
    "task_queue": "default",
    "status": "running",
    "started_us": 1,
    "closed_us": None,
    "last_event_id": 7,
    "last_activation": 3,
    "steps": {
        "1": {
            "seq": 1,
            "scheduled_event_id": 2,
            "step_name": "charge",
            "attempt": 2,
            "local": False,
            "dispatched_us": 5,
            "last_heartbeat_us": 6,
            "heartbeat_details": payload("half"),
            "retry_at_us": None,
            "cancel_requested": False,
            "started_us": 7,
            "deadline_us": 60_000_005,
        }
    },
    "run_chain": ["r-0"],
    "start_at_us": None,
    "run_timeout_ms": 5000,
    "execution_deadline_us": 99,
    "parent": {"workflow_id": "p", "run_id": "pr", "seq": 2},
    "children": {"3": {"workflow_id": "w/child-3", "run_id": None, "parent_close_policy": "terminate"}},
    "signals_out": {"4": "other"},
    "updates": {"u-1": {"update_name": "add", "watchers": ["client-3"]}},
    "updates_done": {"u-0": 6},
    "timers": {"2": 99},
    "watchers": ["client-1", "client-2"],
    "deferred": [],
    "stopped_reason": None,
    "cancel_requested": False,
    "result": None,
    "failure": failure(),
}


def union_names(family: str) -> set[str]:
    raw = json.loads((SCHEMAS / f"{family}.avsc").read_text())
    (body,) = [f for f in raw["fields"] if f["name"] == "body"]
    return {branch["name"] for branch in body["type"]}


# -- record families round-trip -----------------------------------------------------------------


def test_samples_cover_every_union_branch() -> None:
    assert set(COMMAND_BODIES) == union_names("command")
    assert set(EVENT_BODIES) == union_names("event")


@pytest.mark.parametrize("kind", sorted(COMMAND_BODIES))
def test_command_round_trip(kind: str) -> None:
    command = {"command_id": "c-1", "workflow_id": "order-1", "ts_us": 1_700_000_000_000_000,
               "body": (kind, COMMAND_BODIES[kind])}
    data = COMMANDS.encode(command)
    assert data.startswith(MAGIC + COMMANDS.fingerprint)
    assert COMMANDS.decode(data) == command
    assert COMMANDS.encode(command) == data  # deterministic bytes: readers can dedupe


@pytest.mark.parametrize("kind", sorted(EVENT_BODIES))
def test_event_round_trip(kind: str) -> None:
    event = {"workflow_id": "order-1", "run_id": "r-1", "event_id": 9, "activation": 4,
             "ts_us": 5, "command_id": "c-9", "body": (kind, EVENT_BODIES[kind])}
    data = EVENTS.encode(event)
    assert EVENTS.decode(data) == event
    assert EVENTS.encode(EVENTS.decode(data)) == data


def test_task_timer_reply_state_round_trip() -> None:
    task = {"workflow_id": "w", "run_id": "r", "workflow_type": "t", "seq": 1, "attempt": 2,
            "step_name": "s", "args": [payload(1)], "kwargs": {"a": payload("b")},
            "idempotency_key": "w/r/1/2", "start_to_close_ms": 10, "heartbeat_ms": None,
            "schedule_to_start_ms": 20, "heartbeat_details": payload({"page": 3}), "cancel": False}
    fire = COMMANDS.encode({"command_id": "timer:x", "workflow_id": "w", "ts_us": 3,
                            "body": ("FireTimer", COMMAND_BODIES["FireTimer"])})
    timer = {"timer_id": "w/r/sleep/4/0", "workflow_id": "w", "fire_at_us": 3, "command": fire, "cancel": False}
    reply = {"reply_to": "c", "request_id": "req", "workflow_id": "w", "run_id": "r",
             "kind": "failed", "result": None, "failure": failure(cause=failure("why"))}
    for codec, record in ((TASKS, task), (TIMERS, timer), (REPLIES, reply), (STATES, STATE)):
        assert codec.decode(codec.encode(record)) == record, codec.family
    # the timer carries a whole command, still decodable after the round trip
    assert COMMANDS.decode(TIMERS.decode(TIMERS.encode(timer))["command"])["body"][0] == "FireTimer"


def test_each_family_has_its_own_fingerprint() -> None:
    codecs = [COMMANDS, EVENTS, TASKS, TIMERS, REPLIES, STATES]
    assert len({c.fingerprint for c in codecs}) == len(codecs)
    assert all(len(c.fingerprint) == 8 for c in codecs)


def test_a_record_of_another_family_is_rejected_clearly() -> None:
    data = TASKS.encode({"workflow_id": "w", "run_id": "r", "workflow_type": "t", "seq": 1,
                         "attempt": 1, "step_name": "s", "args": [], "kwargs": {},
                         "idempotency_key": "k", "start_to_close_ms": None, "heartbeat_ms": None,
                         "heartbeat_details": None})
    with pytest.raises(SerializationError, match="unknown writer schema fingerprint .* command record"):
        COMMANDS.decode(data)


# -- undecodable and unencodable records --------------------------------------------------------


def _valid_command() -> bytes:
    return COMMANDS.encode({"command_id": "c", "workflow_id": "w", "ts_us": 1,
                            "body": ("StartWorkflow", COMMAND_BODIES["StartWorkflow"])})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a Docket command record: expected Avro single-object encoding"),
        (b"garbage bytes, not avro", "not a Docket command record: expected Avro single-object"),
        (b'{"json": "is not avro"}', "starts with C3 01"),
        (MAGIC + b"\x00" * 8 + b"body", "unknown writer schema fingerprint 0000000000000000"),
        (_valid_command()[:-5], r"cannot decode a command record \(\d+ bytes\)"),
        (MAGIC + COMMANDS.fingerprint + b"\xff" * 40, "cannot decode a command record"),
    ],
    ids=["empty", "text", "json", "unknown-fingerprint", "truncated", "garbled-body"],
)
def test_undecodable_bytes_raise_serialization_error(data: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        COMMANDS.decode(data)


def test_encoding_a_malformed_record_names_the_family_and_fields() -> None:
    with pytest.raises(SerializationError, match=r"cannot encode a event record: .*Record fields: \["):
        EVENTS.encode({"workflow_id": "w", "body": ("TimerFired", {"seq": 1})})
    with pytest.raises(SerializationError, match="cannot encode a command record"):
        COMMANDS.encode({"command_id": "c", "workflow_id": "w", "ts_us": "not a number",
                         "body": ("WatchWorkflow", {"run_id": None, "reply_to": "c"})})


# -- failures -------------------------------------------------------------------------------------


class CardDeclined(Exception):
    pass


def _raise_chain() -> BaseException:
    try:
        try:
            try:
                raise KeyError("card")
            except KeyError as exc:
                raise CardDeclined("declined") from exc
        except CardDeclined as exc:
            raise errors.ApplicationError("payment failed", type="Payment", non_retryable=True,
                                          details={"retry_in": 5}) from exc
    except errors.ApplicationError as exc:
        return exc
    raise AssertionError("unreachable")


def test_failure_cause_chain_round_trips_through_the_log() -> None:
    record = to_failure(_raise_chain())
    event = {"workflow_id": "w", "run_id": "r", "event_id": 3, "activation": 2, "ts_us": 1,
             "command_id": "", "body": ("WorkflowFailed", {"failure": record})}
    decoded = EVENTS.decode(EVENTS.encode(event))["body"][1]["failure"]
    assert decoded == record
    exc = from_failure(decoded)
    assert isinstance(exc, errors.ApplicationError)
    assert (exc.type_name, str(exc), exc.non_retryable, exc.details) == (
        "Payment", "payment failed", True, {"retry_in": 5})
    assert "payment failed" in exc.remote_stack and "CardDeclined" in exc.remote_stack
    middle = exc.__cause__
    assert isinstance(middle, errors.ExecutionFailure)
    assert middle.type_name == qualified_name(CardDeclined)
    assert middle.type_name.endswith("test_codec.CardDeclined")
    root = middle.__cause__
    assert isinstance(root, errors.ExecutionFailure)
    assert (root.type_name, str(root), root.__cause__) == ("KeyError", "'card'", None)


@pytest.mark.parametrize(
    ("exc", "kind", "cls"),
    [
        (errors.StepError("gave up"), "step", errors.StepError),
        (errors.TimeoutError("slow", kind="heartbeat"), "timeout.heartbeat", errors.TimeoutError),
        (errors.TimeoutError("slow", kind="start_to_close"), "timeout.start_to_close", errors.TimeoutError),
        (errors.CancelledError("stop"), "cancelled", errors.CancelledError),
        (errors.ApplicationError("app"), "application", errors.ApplicationError),
        (RuntimeError("plain"), "application", errors.ApplicationError),
    ],
)
def test_failure_kinds_rebuild_the_right_exception(exc: BaseException, kind: str, cls: type) -> None:
    record = to_failure(exc)
    assert record["kind"] == kind
    rebuilt = from_failure(STATES.decode(STATES.encode({**STATE, "failure": record}))["failure"])
    assert type(rebuilt) is cls
    assert str(rebuilt) == str(exc)
    if isinstance(rebuilt, errors.TimeoutError):
        assert rebuilt.kind == kind.split(".", 1)[1]
    # the original type's name survives for retry policies and callers
    assert rebuilt.type_name == (exc.type_name if isinstance(exc, errors.ExecutionFailure)
                                 else "RuntimeError")


def test_a_very_long_cause_chain_is_truncated_not_a_recursion_error() -> None:
    exc: BaseException = ValueError("0")
    for i in range(1, 200):
        try:
            raise ValueError(str(i)) from exc
        except ValueError as new:
            exc = new
    record = to_failure(exc)
    depth = 0
    node: dict[str, Any] | None = record
    while node is not None:
        depth += 1
        node = node["cause"]
    assert 2 <= depth <= 25
    assert EVENTS.decode(EVENTS.encode({"workflow_id": "w", "run_id": "r", "event_id": 1,
                                        "activation": 0, "ts_us": 0, "command_id": "",
                                        "body": ("WorkflowFailed", {"failure": record})}))


def test_failure_stack_is_the_formatted_traceback() -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as exc:
        record = to_failure(exc)
        expected = "".join(traceback.format_exception(exc))
    assert record["stack"] == expected and "test_codec.py" in record["stack"]


# -- payloads -------------------------------------------------------------------------------------


@dataclass
class Address:
    city: str
    zip: str = "00000"


@dataclass
class Customer:
    name: str
    address: Address
    previous: list[Address] = field(default_factory=list)
    nickname: str | None = None
    billing: Optional[Address] = None  # noqa: UP007, UP045 - the typing spelling must work too
    by_label: dict[str, Address] = field(default_factory=dict)
    manager: Customer | None = None


ALICE = Customer(
    "alice",
    Address("Paris", "75001"),
    previous=[Address("Lyon"), Address("Nice", "06000")],
    nickname=None,
    billing=Address("Berlin"),
    by_label={"home": Address("Rome")},
    manager=Customer("bob", Address("Oslo")),
)


@pytest.mark.parametrize(
    "value",
    [None, 0, -7, 3.25, True, "", "héllo ✓", [1, [2, [3]]], {"a": {"b": None}}, {"": []}],
)
def test_json_values_round_trip(value: Any) -> None:
    encoded = to_payload(value)
    assert encoded["encoding"] == (NULL if value is None else JSON)
    assert from_payload(encoded) == value


def test_nested_dataclasses_round_trip_through_type_hints() -> None:
    encoded = to_payload(ALICE)
    assert json.loads(encoded["data"])["address"] == {"city": "Paris", "zip": "75001"}
    decoded = from_payload(encoded, Customer)
    assert decoded == ALICE
    assert isinstance(decoded.previous[1], Address)
    assert isinstance(decoded.billing, Address) and isinstance(decoded.by_label["home"], Address)
    assert isinstance(decoded.manager, Customer) and isinstance(decoded.manager.address, Address)
    # without a hint the value stays plain JSON
    assert from_payload(encoded)["manager"]["name"] == "bob"


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ([Address("a"), Address("b")], list[Address]),
        ({"x": Address("a")}, dict[str, Address]),
        ((Address("a"), 3), tuple[Address, int]),
        ((Address("a"), Address("b")), tuple[Address, ...]),
        (Address("a"), Optional[Address]),  # noqa: UP007, UP045
        (Address("a"), Address | None),
        (None, Address | None),
        ([], list[Address]),
    ],
)
def test_containers_of_dataclasses(value: Any, hint: Any) -> None:
    assert from_payload(to_payload(value), hint) == value


def test_payload_in_a_record_round_trips() -> None:
    event = {"workflow_id": "w", "run_id": "r", "event_id": 2, "activation": 1, "ts_us": 0,
             "command_id": "", "body": ("StepCompleted", {"seq": 1, "attempt": 1,
                                                          "result": to_payload(ALICE)})}
    decoded = EVENTS.decode(EVENTS.encode(event))
    assert from_payload(decoded["body"][1]["result"], Customer) == ALICE


def charge(customer: Customer, amount: int, *, note: str | None = None,
           addresses: list[Address] = ()) -> None:  # type: ignore[assignment]
    raise AssertionError("never called")


def test_encode_and_decode_args_use_the_functions_annotations() -> None:
    args, kwargs = encode_args((ALICE, 5), {"addresses": [Address("x")], "note": None}, where="step 'charge'")
    decoded_args, decoded_kwargs = decode_args(charge, args, kwargs, where="step 'charge'")
    assert decoded_args == [ALICE, 5]
    assert decoded_kwargs == {"addresses": [Address("x")], "note": None}
    assert isinstance(decoded_kwargs["addresses"][0], Address)


@pytest.mark.parametrize("hint", [list[Address] | None, Optional[dict[str, Address]]])  # noqa: UP007, UP045
def test_optional_containers_of_dataclasses(hint: Any) -> None:
    value = [Address("x")] if get_origin(get_args(hint)[0]) is list else {"k": Address("x")}
    assert from_payload(to_payload(value), hint) == value


def test_unencodable_value_names_where_it_was() -> None:
    with pytest.raises(SerializationError, match=r"cannot encode argument 1 of step 'charge': object is "
                                                 r"not JSON-encodable\. Use JSON types, dataclasses"):
        encode_args((1, object()), {}, where="step 'charge'")
    with pytest.raises(SerializationError, match=r"cannot encode argument 'when' of workflow 'w'"):
        encode_args((), {"when": {1, object()}}, where="workflow 'w'")
    with pytest.raises(SerializationError, match="cannot encode result of step 's': keys must be"):
        to_payload({(1, 2): "tuple keys"}, where="result of step 's'")


def test_undecodable_payloads_raise_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot decode result of step seq 3: "):
        from_payload({"encoding": JSON, "data": b"{not json"}, where="result of step seq 3")
    with pytest.raises(SerializationError, match="unknown payload encoding 'binary/protobuf'"):
        from_payload({"encoding": "binary/protobuf", "data": b"\x08\x01"})


def test_payload_missing_a_dataclass_field_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="Address"):
        from_payload(to_payload({"zip": "1"}), Address, where="argument 0 of step 'ship'")


@pytest.mark.parametrize(("value", "hint"), [(b"\x00\xff\x10", bytes), ({3, 1, 2}, set[int])])
def test_bytes_and_sets_round_trip_through_type_hints(value: Any, hint: Any) -> None:
    decoded = from_payload(to_payload(value), hint)
    assert type(decoded) is type(value) and decoded == value


# -- schema evolution ---------------------------------------------------------------------------


def _released() -> list[Path]:
    return sorted(RELEASED.glob("*.avsc"))


def _write_with(raw_schema: dict[str, Any], record: dict[str, Any], codec: Codec) -> bytes:
    """Encode ``record`` the way an older Docket did: with the old schema and its fingerprint."""
    parsed = schemas.parse_family(raw_schema)
    out = io.BytesIO()
    schemaless_writer(out, parsed, record)
    return MAGIC + schemas.schema_fingerprint(parsed) + out.getvalue()


def test_released_schemas_are_kept() -> None:
    assert _released(), f"no released schema under {RELEASED}"


@pytest.mark.parametrize("path", _released(), ids=lambda p: p.name)
def test_every_released_schema_is_readable_by_the_current_one(path: Path) -> None:
    family = path.name.split(".", 1)[0]
    assert family in schemas.FAMILIES
    raw = json.loads(path.read_text())
    codec = Codec(family)
    parsed = schemas.parse_family(raw)
    records = generate_many(parsed, 50)
    data = []
    for record in records:
        out = io.BytesIO()
        schemaless_writer(out, parsed, record)
        data.append(MAGIC + schemas.schema_fingerprint(parsed) + out.getvalue())
    with pytest.raises(SerializationError, match="unknown writer schema fingerprint"):
        codec.decode(data[0])  # not registered yet: a clear error, not garbage
    fingerprint = codec.register_writer_schema(raw)
    assert fingerprint != codec.fingerprint, "a released schema must differ from the current one"
    for value in data:
        decoded = codec.decode(value)
        assert codec.decode(codec.encode(decoded)) == decoded  # upcast records re-encode as current


def test_the_current_schemas_are_kept_for_later_readers() -> None:
    missing = [f for f in schemas.FAMILIES
               if schemas.schema_fingerprint(schemas.current(f)) not in schemas.released(f)]
    assert not missing, (
        f"the current {', '.join(missing)} schema is not in schemas/released/: run "
        "`python -m docket.schemas` so that later Dockets read what this one writes")


def _kept() -> list[tuple[str, bytes]]:
    return [(f, fp) for f in schemas.FAMILIES for fp in sorted(schemas.released(f))]


@pytest.mark.parametrize(("family", "fingerprint"), _kept(), ids=lambda v: getattr(v, "hex", lambda: v)())
def test_records_of_every_kept_schema_version_are_read(family: str, fingerprint: bytes) -> None:
    """Records written by any earlier Docket (a data directory from before an upgrade)
    decode with the current schema, with no registration: the kept versions are found by
    fingerprint, and the decoded records re-encode as the current version."""
    writer = schemas.load_released(family, fingerprint)
    codec = Codec(family)
    assert codec.reads(fingerprint)
    for record in generate_many(writer, 30):
        out = io.BytesIO()
        schemaless_writer(out, writer, record)
        decoded = codec.decode(MAGIC + fingerprint + out.getvalue())
        assert codec.decode(codec.encode(decoded)) == decoded


def test_event_v0_decodes_with_defaults_filled_in() -> None:
    raw = json.loads((RELEASED / "event.v0.avsc").read_text())
    codec = Codec("event")
    codec.register_writer_schema(raw)
    old_failure = {"type": "ValueError", "message": "bad", "stack": "", "non_retryable": False,
                   "details": None,
                   "cause": {"type": "KeyError", "message": "k", "stack": "", "non_retryable": True,
                             "details": payload(1), "cause": None}}
    envelope = {"workflow_id": "w", "run_id": "r", "event_id": 1, "activation": 1, "ts_us": 42}
    started = _write_with(raw, {**envelope, "body": ("docket.v1.WorkflowStarted", {
        "workflow_type": "t", "args": [payload("x")], "kwargs": {}, "task_queue": "q"})}, codec)
    scheduled = _write_with(raw, {**envelope, "event_id": 2, "body": ("docket.v1.StepScheduled", {
        "seq": 1, "step_name": "s", "args": [], "kwargs": {}, "task_queue": "q", "retry": RETRY})},
        codec)
    failed = _write_with(raw, {**envelope, "event_id": 3, "body": ("docket.v1.StepFailed", {
        "seq": 1, "attempt": 1, "failure": old_failure})}, codec)

    first = codec.decode(started)
    assert first["command_id"] == ""  # the envelope field's default
    assert first["body"] == ("WorkflowStarted", {"workflow_type": "t", "args": [payload("x")],
                                                 "kwargs": {}, "task_queue": "q", "reply_to": None,
                                                 "run_chain": [], "watchers": [], "start_at_us": None,
                                                 "run_timeout_ms": None, "execution_deadline_us": None,
                                                 "parent": None})
    kind, body = codec.decode(scheduled)["body"]
    assert kind == "StepScheduled"
    assert (body["local"], body["start_to_close_ms"], body["heartbeat_ms"]) == (False, None, None)
    assert (body["schedule_to_close_ms"], body["schedule_to_start_ms"]) == (None, None)
    kind, body = codec.decode(failed)["body"]
    assert kind == "StepFailed"
    assert body["failure"]["kind"] == "application"
    assert body["failure"]["cause"]["kind"] == "application"  # defaults apply down the chain
    assert body["failure"]["cause"]["details"] == payload(1)
    rebuilt = from_failure(body["failure"])
    assert rebuilt.type_name == "ValueError" and rebuilt.__cause__ is not None
    # the shared codec is untouched by registering on a private one
    with pytest.raises(SerializationError, match="unknown writer schema fingerprint"):
        EVENTS.decode(started)


def test_fast_encoder_matches_fastavros_public_writer() -> None:
    """records.py uses fastavro's compiled write_data directly; it must agree byte for byte."""
    from docket.codec.records import EVENTS

    payload = {"encoding": "json/plain", "data": b'"x"'}
    event = {"workflow_id": "w", "run_id": "r", "event_id": 3, "activation": 2, "ts_us": 17,
             "command_id": "c", "body": ("StepCompleted", {"seq": 1, "attempt": 1, "result": payload})}
    assert EVENTS.encode(event) == EVENTS.encode_portable(event)


@pytest.mark.parametrize("kind", sorted(EVENT_BODIES))
def test_fast_decoder_matches_fastavros_public_reader(kind: str) -> None:
    """records.py reads current-schema records with fastavro's compiled reader directly."""
    event = {"workflow_id": "w", "run_id": "r", "event_id": 3, "activation": 2, "ts_us": 17,
             "command_id": "c", "body": (kind, EVENT_BODIES[kind])}
    data = EVENTS.encode(event)
    assert EVENTS.decode(data) == EVENTS.decode_portable(data) == event
    state = STATES.encode(STATE)
    assert STATES.decode(state) == STATES.decode_portable(state)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (dt.datetime(2026, 11, 26, 3, 0, 6, 209109, tzinfo=dt.UTC), dt.datetime),
        (dt.datetime(2026, 11, 26, 3, 0), dt.datetime | None),
        (dt.date(2026, 2, 28), dt.date),
        (dt.time(23, 59, 1), dt.time),
        (dt.timedelta(days=2, milliseconds=5), dt.timedelta),
        (uuid.UUID("6f1c1f9e-6a6b-4f0e-9d8e-3c1b2a4d5e6f"), uuid.UUID),
        (decimal.Decimal("19.99"), decimal.Decimal),
        (Colour.BLUE, Colour),
        ([dt.date(2026, 1, 1), dt.date(2026, 1, 2)], list[dt.date]),
        ({"due": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, dict[str, dt.datetime]),
    ],
)
def test_standard_value_types_round_trip_through_type_hints(value: Any, hint: Any) -> None:
    decoded = from_payload(to_payload(value), hint)
    assert decoded == value and type(decoded) is type(value)


def test_a_malformed_standard_value_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="is not a datetime"):
        from_payload(to_payload("next tuesday"), dt.datetime)
    with pytest.raises(SerializationError, match="is not a valid Colour"):
        from_payload(to_payload("green"), Colour)


def test_records_an_older_docket_framed_for_a_schema_registry_are_read() -> None:
    """On Kafka with a registry, an older Docket registered its own schema version and
    framed records with that id: they are recognised as a kept version and decoded."""
    import uuid

    from docket.log.registry import ConfluentSchemaRegistry, RegistryFraming

    registry = ConfluentSchemaRegistry(f"mock://{uuid.uuid4().hex}")
    framing = RegistryFraming(registry)
    family = "event"
    old = next(fp for fp in schemas.released(family)
               if fp != schemas.schema_fingerprint(schemas.current(family)))
    text = schemas.released_text(family, old)
    assert text is not None
    schema_id = registry.register("docket.default.history-value", text)  # as the old one did
    writer = schemas.load_released(family, old)
    (record,) = generate_many(writer, 1)
    out = io.BytesIO()
    schemaless_writer(out, writer, record)
    framed = b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()
    assert framing.incoming(framed) == MAGIC + old + out.getvalue()
    assert Codec(family).decode(framing.incoming(framed))["workflow_id"] == record["workflow_id"]
