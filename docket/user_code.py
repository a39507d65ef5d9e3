"""User code run by the engine cannot end the engine's process with ``sys.exit()``.

``SystemExit`` is a BaseException: ``except Exception`` lets it through, and asyncio lets
it escape the task that raised it, out of the event loop. From a step (argparse's
``parse_args`` on bad input, click in standalone mode, a stray ``sys.exit``), it would end
the engine, and again after every restart, since the task that ran it is delivered again.
Wrapped here, it becomes an ordinary failure of that code (type ``SystemExit``, retried by
the step's policy unless listed in ``non_retryable_error_types``). ``KeyboardInterrupt``
still goes through: it is how an operator interrupts the process.

``asyncio.CancelledError`` raised by user code itself (not by a cancellation of the task
running it) is the same kind of trouble: caught as a cancellation, it would end the
processor's loop or leave a step unreported. `cancelled_from_outside` tells them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from docket.errors import ApplicationError, WorkflowError

T = TypeVar("T")


def exit_failure(exc: SystemExit, what: str) -> ApplicationError:
    return ApplicationError(
        f"{what} raised SystemExit({exc.code!r}) (sys.exit?): code run by the engine cannot "
        "end its process; return or raise an exception instead",
        type="SystemExit",
    )


def workflow_exit(exc: SystemExit, what: str) -> WorkflowError:
    """What SystemExit from workflow code becomes: an error inside the run, which stops
    that execution (nothing recorded, its commands wait for fixed code)."""
    return WorkflowError(
        f"{what} raised SystemExit({exc.code!r}) (sys.exit?): a workflow cannot end the "
        "process; return or raise an exception"
    )


async def without_exit(awaitable: Awaitable[T], what: str) -> T:
    """Await ``awaitable`` (wrap a coroutine before it becomes a task: a task lets
    SystemExit out of the loop before anyone awaiting it can catch it)."""
    try:
        return await awaitable
    except SystemExit as exc:
        raise exit_failure(exc, what) from exc


def call_without_exit(fn: Callable[..., T], what: str, *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` (in a thread pool too: its future would carry SystemExit to the loop)."""
    try:
        return fn(*args, **kwargs)
    except SystemExit as exc:
        raise exit_failure(exc, what) from exc


def cancelled_from_outside() -> bool:
    """Whether the CancelledError being handled cancels the current task (a shutdown, a
    timeout): asyncio counts the cancel requests a task received. Otherwise the code it
    awaited raised it itself, and it is only that code's failure."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
