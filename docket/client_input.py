"""What the client checks and converts in its callers' input, and how it waits for answers."""

from __future__ import annotations

import asyncio
import typing
from datetime import timedelta
from typing import Any, TypeVar

from docket.errors import ClientError
from docket.retry import bounded_ms

T = TypeVar("T")

# the keyword arguments `Client.start` takes for itself: they never reach the workflow
START_OPTIONS = frozenset(
    {
        "workflow_id",
        "id_reuse_policy",
        "task_queue",
        "start_delay",
        "run_timeout",
        "execution_timeout",
        "start_signal",
        "start_signal_args",
    }
)


async def within(future: asyncio.Future[T], timeout: float | None) -> T:
    """``asyncio.wait_for`` for a future only this client resolves: raises TimeoutError
    alike, without the waiter future and callbacks it adds to every request."""
    if timeout is None:
        return await future
    timer = asyncio.get_running_loop().call_later(timeout, expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def handler_name(handler: Any, marker: str) -> str:
    if isinstance(handler, str):
        return handler
    name = getattr(handler, marker, None)
    if name is None:
        kind = marker.strip("_").removeprefix("docket_")
        raise ClientError(
            f"{handler!r} is not a @docket.{kind} handler; pass the handler or its name"
        )
    return str(name)


def return_hint(handler: Any) -> Any:
    if isinstance(handler, str):
        return None
    try:
        return typing.get_type_hints(handler).get("return")
    except Exception:
        return None


def duration_ms(value: Any, option: str) -> int | None:
    """A start option given as a timedelta or seconds, in milliseconds (None: not set)."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    ms = None
    if not isinstance(seconds, bool) and isinstance(seconds, int | float):
        ms = bounded_ms(seconds)
    if ms is None:  # nan and inf too: leave it unset for no limit
        raise ClientError(
            f"{option} must be a positive, finite timedelta or number of seconds, got "
            f"{value!r} (at most 100,000 years)"
        )
    return ms


def check_workflow_id(workflow_id: str) -> None:
    if (
        not isinstance(workflow_id, str)
        or not workflow_id
        or "\0" in workflow_id
        or len(workflow_id) > 1000
        or not utf8(workflow_id)
    ):
        raise ClientError(
            f"workflow_id {workflow_id!r} is invalid: use 1-1000 characters, no NUL and no "
            "lone surrogate"
        )


def utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8, as every string of a record is (a lone
    surrogate cannot): a start's names are refused with a ClientError saying which."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
