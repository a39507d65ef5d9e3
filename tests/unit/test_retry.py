"""Retry policies: validation, and the pure backoff math the processor applies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from docket.codec.records import EVENTS
from docket.retry import RetryPolicy, next_retry_delay_ms


def policy(**kwargs: Any) -> dict[str, Any]:
    return RetryPolicy(**kwargs).to_record()


def delays(record: dict[str, Any], attempts: int, error_type: str = "ValueError") -> list[int | None]:
    return [next_retry_delay_ms(record, attempt=a, error_type=error_type, non_retryable=False)
            for a in range(1, attempts + 1)]


def test_exponential_growth_from_the_initial_interval() -> None:
    record = policy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0)
    # attempt n (just failed) waits initial * 2 ** (n - 1) before attempt n + 1
    assert delays(record, 6) == [100, 200, 400, 800, 1600, 3200]


def test_non_integer_coefficient() -> None:
    record = policy(initial_interval=timedelta(seconds=1), backoff_coefficient=1.5)
    assert delays(record, 4) == [1000, 1500, 2250, 3375]


def test_coefficient_one_is_a_constant_interval() -> None:
    record = policy(initial_interval=timedelta(milliseconds=250), backoff_coefficient=1.0)
    assert delays(record, 5) == [250] * 5


def test_explicit_maximum_interval_caps_the_delay() -> None:
    record = policy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5))
    assert delays(record, 6) == [1000, 2000, 4000, 5000, 5000, 5000]


def test_default_cap_is_100_times_the_initial_interval() -> None:
    record = policy(initial_interval=timedelta(milliseconds=10))
    assert record["maximum_interval_ms"] is None
    got = delays(record, 12)
    assert got[:7] == [10, 20, 40, 80, 160, 320, 640]
    assert got[7:] == [1000] * 5


def test_maximum_attempts_stops_retrying() -> None:
    record = policy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3)
    assert delays(record, 4) == [10, 20, None, None]
    assert delays(policy(maximum_attempts=1), 2) == [None, None]


def test_zero_maximum_attempts_retries_forever() -> None:
    record = policy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
    assert next_retry_delay_ms(record, attempt=500, error_type="E", non_retryable=False) == 60_000


def test_retry_forever_never_overflows() -> None:
    record = policy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
    assert next_retry_delay_ms(record, attempt=1100, error_type="E", non_retryable=False) == 60_000


@pytest.mark.parametrize(
    ("names", "error_type", "retried"),
    [
        (["ValueError"], "ValueError", False),
        (["shop.errors.CardDeclined"], "shop.errors.CardDeclined", False),  # full name
        (["CardDeclined"], "shop.errors.CardDeclined", False),  # short name matches too
        (["errors.CardDeclined"], "shop.errors.CardDeclined", True),  # partial paths don't
        (["shop.errors.CardDeclined"], "CardDeclined", True),  # full name needs a full type
        (["CardDeclined"], "shop.errors.CardDeclinedLater", True),
        (["cardDeclined"], "CardDeclined", True),  # case sensitive
        ([], "ValueError", True),
        (["KeyError", "Payment"], "Payment", False),  # ApplicationError(type="Payment")
    ],
)
def test_non_retryable_error_types(names: list[str], error_type: str, retried: bool) -> None:
    record = policy(non_retryable_error_types=names)
    delay = next_retry_delay_ms(record, attempt=1, error_type=error_type, non_retryable=False)
    assert (delay is not None) is retried


def test_non_retryable_flag_wins_over_the_policy() -> None:
    record = policy(maximum_attempts=0)
    assert next_retry_delay_ms(record, attempt=1, error_type="ValueError", non_retryable=True) is None
    assert next_retry_delay_ms(record, attempt=1, error_type="ValueError", non_retryable=False) == 1000


def test_policy_record_survives_the_log() -> None:
    """The processor reads the policy back from a StepScheduled event: same math after the trip."""
    original = RetryPolicy(initial_interval=timedelta(milliseconds=1500), backoff_coefficient=3.0,
                           maximum_interval=timedelta(seconds=20), maximum_attempts=5,
                           non_retryable_error_types=["KeyError"])
    event = {"workflow_id": "w", "run_id": "r", "event_id": 2, "activation": 1, "ts_us": 0,
             "command_id": "", "body": ("StepScheduled", {
                 "seq": 1, "step_name": "s", "args": [], "kwargs": {}, "task_queue": "q",
                 "local": False, "retry": original.to_record(), "start_to_close_ms": None,
                 "heartbeat_ms": None})}
    record = EVENTS.decode(EVENTS.encode(event))["body"][1]["retry"]
    assert record == original.to_record()
    assert delays(record, 5) == [1500, 4500, 13500, 20000, None]
    assert next_retry_delay_ms(record, attempt=1, error_type="builtins.KeyError", non_retryable=False) is None


def test_to_record_converts_durations_to_milliseconds() -> None:
    record = RetryPolicy(initial_interval=timedelta(seconds=2, microseconds=500_000),
                         maximum_interval=timedelta(minutes=2), non_retryable_error_types=("A", "B"))\
        .to_record()
    assert record == {"initial_interval_ms": 2500, "backoff_coefficient": 2.0,
                      "maximum_interval_ms": 120_000, "maximum_attempts": 0,
                      "non_retryable_error_types": ["A", "B"]}


def test_defaults() -> None:
    default = RetryPolicy()
    assert default.initial_interval == timedelta(seconds=1)
    assert default.backoff_coefficient == 2.0
    assert default.maximum_interval is None and default.maximum_attempts == 0
    assert default.non_retryable_error_types == ()


def test_non_retryable_types_are_frozen_into_a_tuple() -> None:
    names = ["A"]
    retry = RetryPolicy(non_retryable_error_types=names)
    names.append("B")
    assert retry.non_retryable_error_types == ("A",)
    assert hash(retry) == hash(RetryPolicy(non_retryable_error_types=("A",)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_interval": timedelta(0)}, r"initial_interval must be positive, got 0:00:00"),
        ({"initial_interval": timedelta(seconds=-1)}, "initial_interval must be positive"),
        ({"backoff_coefficient": 0.5}, r"backoff_coefficient must be >= 1, got 0.5"),
        ({"backoff_coefficient": 0}, "backoff_coefficient must be >= 1"),
        ({"maximum_attempts": -1}, r"maximum_attempts must be >= 0, got -1"),
        ({"initial_interval": timedelta(days=10**8)}, "initial_interval must be at most 100,000"),
        ({"maximum_interval": timedelta(days=10**8)}, "maximum_interval must be at most 100,000"),
    ],
)
def test_invalid_policies_are_rejected_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_policy_is_immutable() -> None:
    retry = RetryPolicy()
    with pytest.raises(AttributeError):
        retry.maximum_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(("given", "recorded"), [
    (timedelta(seconds=4.35), 4350),  # int(4.35 * 1000) was 4349
    (timedelta(microseconds=400), 1),  # was 0: retries with no wait at all
    (timedelta(milliseconds=1.6), 2),
    (timedelta(hours=1), 3_600_000),
])
def test_intervals_are_recorded_in_whole_milliseconds_never_zero(given: timedelta, recorded: int) -> None:
    policy = RetryPolicy(initial_interval=given, maximum_interval=max(given, timedelta(seconds=5)))
    assert policy.to_record()["initial_interval_ms"] == recorded
    assert next_retry_delay_ms(policy.to_record(), attempt=1, error_type="E", non_retryable=False) == recorded


@pytest.mark.parametrize(("listed", "kind", "error_type", "retried"), [
    # Docket's own timeouts go by their kind, as Temporal's go by TemporalTimeout:StartToClose
    (["TimeoutError"], "timeout.start_to_close", "TimeoutError", True),  # was not retried
    (["TimeoutError"], "timeout.heartbeat", "TimeoutError", True),
    (["timeout.start_to_close"], "timeout.start_to_close", "TimeoutError", False),
    (["timeout.heartbeat"], "timeout.start_to_close", "TimeoutError", True),
    # the step's own TimeoutError (an HTTP client's, say) goes by its type, as any exception
    (["TimeoutError"], "application", "TimeoutError", False),
    (["timeout.start_to_close"], "application", "TimeoutError", True),
])
def test_docket_timeouts_are_matched_by_kind_not_as_timeout_error(
    listed: list[str], kind: str, error_type: str, retried: bool
) -> None:
    policy = RetryPolicy(non_retryable_error_types=listed).to_record()
    delay = next_retry_delay_ms(policy, attempt=1, error_type=error_type, non_retryable=False, kind=kind)
    assert (delay is not None) == retried
