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
