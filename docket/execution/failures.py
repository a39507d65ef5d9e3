"""Failures the engine itself decides (refusals, timeouts, terminations), as Failure records.

Shaped like schemas/failure.avsc, and kept here rather than in the codec so that the pure
state machine needs no codec.
"""

from __future__ import annotations

from typing import Any

Failure = dict[str, Any]


def failure_record(
    message: str,
    *,
    type_name: str = "InvalidCommand",
    kind: str = "application",
    cause: Failure | None = None,
) -> Failure:
    """A Failure made by the engine itself (a refusal, a timeout, a termination): no stack,
    never retried."""
    return {
        "type": type_name,
        "message": message,
        "stack": "",
        "non_retryable": True,
        "details": None,
        "kind": kind,
        "cause": cause,
    }


def step_failed(step_name: str, seq: int, attempts: int, last: Failure) -> Failure:
    """What a step that failed for good raises in workflow code: a StepError caused by its
    last failure. Side effects fail the same way, after their one attempt."""
    return failure_record(
        f"step {step_name!r} (seq {seq}) failed after {attempts} "
        f"attempt{'s' if attempts != 1 else ''}: {last['message']}",
        type_name="StepError",
        kind="step",
        cause=last,
    )


def step_timeout_message(step_name: str, attempt: int, kind: str, limit_ms: int) -> str:
    """The message of a step attempt's timeout, whether the processor's timer or the
    worker's own deadline saw it first: the same failure either way."""
    return (
        f"step {step_name!r} attempt {attempt} exceeded its {kind.replace('_', '-')} "
        f"timeout of {limit_ms} ms{_WHAT.get(kind, '')}"
    )


_WHAT = {
    "schedule_to_close": " (it bounds all attempts and backoffs, from the step's scheduling)",
    "schedule_to_start": (
        " waiting in its task queue: no worker started it (does a worker serve the queue?)"
    ),
}
