"""Running a local step's attempt inline, in the processor's batch, as a worker would run it."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from typing import Any

from docket.codec.failure import to_failure
from docket.codec.payload import from_payload, to_payload
from docket.errors import TimeoutError as StepTimeoutError
from docket.execution.decide import local_attempt_timeout_ms
from docket.execution.failures import step_timeout_message
from docket.execution.fold import State
from docket.execution.ids import idempotency_key
from docket.user_code import call_without_exit, cancelled_from_outside, without_exit
from docket.worker import StepContext, current_step


async def run_attempt(
    state: State, scheduled: dict[str, Any], call: Any, attempt: int, now_us: int
) -> dict[str, Any]:
    """Run one attempt of a local step; return the command a worker would have reported
    (CompleteStep or FailStep), for the processor to decide on."""
    seq = scheduled["seq"]
    pending = state["steps"][str(seq)]
    timeout = local_attempt_timeout_ms(scheduled, pending, now_us)
    details = from_payload(pending["heartbeat_details"]) if pending["heartbeat_details"] else None
    step_ctx = StepContext(
        state["workflow_id"],
        state["run_id"],
        state["workflow_type"],
        scheduled["step_name"],
        seq,
        attempt,
        idempotency_key(state["workflow_id"], state["run_id"], seq, attempt),
        details,
    )
    base = {"run_id": state["run_id"], "seq": seq, "attempt": attempt}
    scope = asyncio.timeout(timeout / 1000 if timeout else None)
    try:
        async with scope:
            inline = scheduled["step_name"] == "side_effect"
            result = await call_local(call, step_ctx, inline=inline)
        where = f"result of local step {scheduled['step_name']!r}"
        body: dict[str, Any] = {**base, "result": to_payload(result, where=where)}
        kind = "CompleteStep"
    except (Exception, asyncio.CancelledError) as exc:  # the step's failure is data
        if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
            raise  # the processor is stopping; else the step raised it: a failure
        timed_out = scope.expired()
        failure = attempt_timed_out(scheduled, attempt, timeout or 0) if timed_out else exc
        body, kind = {**base, "failure": to_failure(failure)}, "FailStep"
    return {
        "command_id": "",
        "workflow_id": state["workflow_id"],
        "ts_us": now_us,
        "body": (kind, body),
    }


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
