"""Retry policies for steps, and the pure backoff computation the processor applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# the longest duration a timeout, retry interval, sleep or start option may give: the
# processor adds it, in microseconds, to the time it starts (a deadline, a fire time),
# and a record's long holds about 292,000 years of them
MAX_DURATION_S = 100_000 * 365 * 86_400


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed step attempt is retried. Backoff is scheduled through the delay topic.

    Attempt n (n >= 2) waits ``initial_interval * backoff_coefficient ** (n - 2)``, capped at
    ``maximum_interval`` (default: 100 x initial). ``maximum_attempts=0`` retries forever.
    Errors whose type name is in ``non_retryable_error_types`` (or raised with
    ``ApplicationError(non_retryable=True)``) fail the step at once.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.initial_interval <= timedelta(0):
            raise ValueError(
                f"RetryPolicy.initial_interval must be positive, got {self.initial_interval}"
            )
        if self.backoff_coefficient < 1:
            raise ValueError(
                f"RetryPolicy.backoff_coefficient must be >= 1, got {self.backoff_coefficient}"
            )
        if self.maximum_attempts < 0:
            raise ValueError(
                f"RetryPolicy.maximum_attempts must be >= 0, got {self.maximum_attempts}"
            )
        if isinstance(self.non_retryable_error_types, str):
            raise ValueError(
                "RetryPolicy.non_retryable_error_types must be a list of type names, got the "
                f"string {self.non_retryable_error_types!r}; write [{self.non_retryable_error_types!r}]"
            )
        for name, interval in (
            ("initial", self.initial_interval),
            ("maximum", self.maximum_interval),
        ):
            if interval is not None and interval.total_seconds() > MAX_DURATION_S:
                raise ValueError(
                    f"RetryPolicy.{name}_interval must be at most 100,000 years, got {interval}"
                )
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise ValueError(
                f"RetryPolicy.maximum_interval ({self.maximum_interval}) is shorter than "
                f"initial_interval ({self.initial_interval})"
            )
        object.__setattr__(self, "non_retryable_error_types", tuple(self.non_retryable_error_types))

    def to_record(self) -> dict[str, Any]:
        return {
            "initial_interval_ms": whole_ms(self.initial_interval),
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval_ms": None
            if self.maximum_interval is None
            else whole_ms(self.maximum_interval),
            "maximum_attempts": self.maximum_attempts,
            "non_retryable_error_types": list(self.non_retryable_error_types),
        }


def whole_ms(delta: timedelta) -> int:
    """A positive duration in whole milliseconds, rounded to the nearest (4.35 s is 4350, not
    4349) and never to 0: a 0.4 ms interval must not turn into retries without a wait, nor a
    timeout into none."""
    return max(1, round(delta.total_seconds() * 1000))


def bounded_ms(seconds: float) -> int | None:
    """``seconds`` in whole milliseconds, rounded as `whole_ms`; None if it is no duration a
    record holds: not above 0, nan, infinite, or over `MAX_DURATION_S`."""
    if not 0 < seconds <= MAX_DURATION_S:
        return None
    return max(1, round(seconds * 1000))


def next_retry_delay_ms(
    policy: dict[str, Any],
    *,
    attempt: int,
    error_type: str,
    non_retryable: bool,
    kind: str = "application",
) -> int | None:
    """Delay before attempt ``attempt + 1``, or None when the step must fail for good.

    ``policy`` is a RetryPolicy record (as stored in StepScheduled), ``attempt`` the attempt
    that just failed (1-based), ``kind`` its failure's kind. An attempt timed out by Docket
    is matched in ``non_retryable_error_types`` by its kind (``timeout.start_to_close``,
    ``timeout.heartbeat``), not as ``TimeoutError``: listing the TimeoutError an HTTP
    client raises must not stop retries of hung attempts (Temporal names its timeouts
    ``TemporalTimeout:StartToClose`` for the same reason).
    """
    if non_retryable:
        return None
    names = policy["non_retryable_error_types"]
    if kind.startswith("timeout."):
        if kind in names:
            return None
    elif error_type in names or error_type.rsplit(".", 1)[-1] in names:
        return None
    maximum_attempts = policy["maximum_attempts"]
    if maximum_attempts and attempt >= maximum_attempts:
        return None
    initial = policy["initial_interval_ms"]
    cap = policy["maximum_interval_ms"] or initial * 100
    try:
        delay = initial * policy["backoff_coefficient"] ** (attempt - 1)
    except OverflowError:  # retry-forever policies reach huge exponents; the cap applies
        return int(cap)
    return int(min(delay, cap))
