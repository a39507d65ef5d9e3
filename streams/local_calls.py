"""Running a local step's code inline, in the processor's batch, as a worker would run it."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from typing import Any

from docket.errors import TimeoutError as StepTimeoutError
from docket.execution.failures import step_timeout_message
from docket.user_code import call_without_exit, without_exit
from docket.worker import StepContext, current_step


async def call_local(fn: Any, step_ctx: StepContext, *, inline: bool) -> Any:
    """Run a local step's bound call with its step context: awaited if async; sync ones in a
    thread unless ``inline`` (side effects are meant to be quick, like drawing a number)."""
    context = contextvars.copy_context()
    context.run(current_step.set, step_ctx)
    what = f"local step {step_ctx.step_name!r}"
    if inspect.iscoroutinefunction(fn):
        running = without_exit(fn(), what)
        return await asyncio.get_running_loop().create_task(running, context=context)
    if inline:
        result = context.run(call_without_exit, fn, what)
    else:
        result = await asyncio.to_thread(context.run, call_without_exit, fn, what)
    if inspect.isawaitable(result):
        return await without_exit(result, what)
    return result


def attempt_timed_out(scheduled: dict[str, Any], attempt: int, limit_ms: int) -> StepTimeoutError:
    """The failure of a local attempt cut at ``limit_ms``: its start-to-close timeout, or
    the step's schedule-to-close deadline when that came first (then the step fails)."""
    start_to_close = scheduled["start_to_close_ms"]
    kind = (
        "start_to_close" if start_to_close and limit_ms >= start_to_close else "schedule_to_close"
    )
    limit = limit_ms if kind == "start_to_close" else scheduled["schedule_to_close_ms"] or limit_ms
    message = step_timeout_message(scheduled["step_name"], attempt, kind, limit)
    return StepTimeoutError(message, kind=kind)
