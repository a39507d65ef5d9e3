"""Exceptions <-> Failure records. Failures never travel as pickles.

A decoded failure is an `ExecutionFailure` subclass chosen by ``kind``; the original type's
qualified name stays in ``type_name`` so retry policies and callers can match on it.
"""

from __future__ import annotations

import traceback
from typing import Any

from docket import errors
from docket.codec.payload import from_payload, to_payload

Failure = dict[str, Any]

_MAX_DEPTH = 20


def qualified_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def to_failure(exc: BaseException, *, depth: int = 0) -> Failure:
    """Encode an exception and its ``__cause__`` chain."""
    kind = "application"
    if isinstance(exc, errors.ExecutionFailure):
        type_name = exc.type_name
        if type(exc) is errors.ExecutionFailure or isinstance(exc, errors.ApplicationError):
            pass
        elif isinstance(exc, errors.StepError):
            kind = "step"
        elif isinstance(exc, errors.TimeoutError):
            kind = f"timeout.{exc.kind}"
        elif isinstance(exc, errors.CancelledError):
            kind = "cancelled"
        elif isinstance(exc, errors.ChildWorkflowError):
            kind = "child"
        non_retryable = exc.non_retryable
        details, unrecorded = _encoded_details(exc)
        stack = exc.remote_stack or "".join(traceback.format_exception(exc))
    else:
        type_name = qualified_name(type(exc))
        non_retryable = False
        details, unrecorded = None, ""
        stack = "".join(traceback.format_exception(exc))
    cause = exc.__cause__
    return {
        "type": type_name,
        "message": _message(exc) + unrecorded,
        "stack": stack,
        "non_retryable": non_retryable,
        "details": details,
        "kind": kind,
        "cause": to_failure(cause, depth=depth + 1) if cause and depth < _MAX_DEPTH else None,
    }


def _message(exc: BaseException) -> str:
    """``str(exc)``, or what went wrong taking it: the failure must be recorded all the same
    (a worker that cannot report a step's failure leaves the step pending for good)."""
    try:
        return str(exc)
    except Exception as problem:
        return f"<str() of {type(exc).__qualname__} raised {type(problem).__name__}: {problem}>"


def _encoded_details(exc: errors.ExecutionFailure) -> tuple[Any, str]:
    """The failure's details as a payload, and a note for its message if they cannot be
    encoded. The failure is then recorded without them rather than not at all: a worker that
    cannot report a step's failure leaves the step pending for good."""
    if exc.details is None:
        return None, ""
    try:
        return to_payload(exc.details, where="failure details"), ""
    except errors.SerializationError as problem:
        return None, f" [details not recorded: {problem}]"


def from_failure(failure: Failure) -> errors.ExecutionFailure:
    """Rebuild an exception (with its cause chain) from a Failure record."""
    kind = failure["kind"]
    details = from_payload(failure["details"]) if failure["details"] is not None else None
    common: dict[str, Any] = {
        "type_name": failure["type"],
        "non_retryable": failure["non_retryable"],
        "details": details,
        "remote_stack": failure["stack"],
    }
    exc: errors.ExecutionFailure
    if kind == "step":
        exc = errors.StepError(failure["message"], **common)
    elif kind.startswith("timeout."):
        exc = errors.TimeoutError(failure["message"], kind=kind.split(".", 1)[1], **common)
    elif kind == "cancelled":
        exc = errors.CancelledError(failure["message"], **common)
    elif kind == "child":
        exc = errors.ChildWorkflowError(failure["message"], **common)
    elif failure["type"] == "ApplicationError" or kind == "application":
        exc = errors.ApplicationError(
            failure["message"],
            type=failure["type"],
            non_retryable=failure["non_retryable"],
            details=details,
        )
        exc.remote_stack = failure["stack"]
    else:
        exc = errors.ExecutionFailure(failure["message"], **common)
    if failure["cause"] is not None:
        exc.__cause__ = from_failure(failure["cause"])
    return exc
