"""Step timeouts at their edges, through the public API on a real engine: parent-close
policies next to step outcomes, local steps cut at their schedule-to-close deadline, and
what a late retry timer may still start. Each test states what the docs promise."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import docket
from docket.errors import ChildWorkflowError, StepError, TimeoutError

app = docket.App("timeout-edges")


# -- parent-close policy (streams/closing.py) -------------------------------------------------


@app.step
async def quick() -> str:
    return "done"


@app.workflow
class Child:
    """Waits for the signal "proceed", then returns."""

    def __init__(self) -> None:
        self.go = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        await ctx.wait_until(lambda: self.go)
        return "went"

    @docket.signal
    def proceed(self, ctx: docket.WorkflowContext) -> None:
        self.go = True


@app.workflow
async def parent_runs_a_step_then_awaits_its_child(ctx: docket.WorkflowContext) -> str:
    child = await ctx.start_child(Child, workflow_id="child-of-a-running-parent")
    await ctx.step(quick)  # the parent is still running: its child must be left alone
    await child.signal(Child.proceed)
    try:
        return await child
    except ChildWorkflowError as exc:
        return f"child failed: {exc.__cause__!r}"


@app.workflow
async def parent_closes_with_an_open_child(ctx: docket.WorkflowContext) -> str:
    await ctx.start_child(Child, workflow_id="orphan", parent_close_policy="terminate")
    return "parent done"


async def test_a_step_ending_in_a_running_parent_leaves_its_children_alone(tmp_path: Path) -> None:
    """docs/concepts: a child's parent-close policy applies when the parent *closes*.
    f889670 moved ``out.parent_closing`` under the StepCompleted/StepFailed branch of
    closing.before_fold, so the parent's first step completion terminates its child."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(parent_runs_a_step_then_awaits_its_child)
        assert await handle.result(timeout=20) == "went"
        child = engine.client.get_handle("child-of-a-running-parent")
        assert (await child.describe()).status == "completed"


async def test_a_closing_parent_still_terminates_its_child(tmp_path: Path) -> None:
    """The other half of the same regression (also caught by
    tests/engine/test_children.py::test_parent_close_policies): the close no longer
    applies the policy, so the child runs on."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(parent_closes_with_an_open_child)
        assert await handle.result(timeout=20) == "parent done"
        child = engine.client.get_handle("orphan")
        for _ in range(150):
            if (await child.describe()).status == "terminated":
                break
            await asyncio.sleep(0.02)
        assert (await child.describe()).status == "terminated"


# -- local steps cut at their schedule-to-close deadline ----------------------------------------

local_attempts: list[float] = []


@app.step(
    retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=10), backoff_coefficient=1),
    schedule_to_close_timeout=timedelta(milliseconds=500),
)
async def local_hangs() -> str:
    local_attempts.append(time.monotonic())
    await asyncio.sleep(30)  # each attempt is cut at the step's deadline
    return "finished"


@app.workflow
async def local_past_its_deadline(ctx: docket.WorkflowContext) -> dict[str, Any]:
    try:
        return {"result": await ctx.local_step(local_hangs)}
    except StepError as exc:
        timeout = exc.__cause__
        assert isinstance(timeout, TimeoutError), repr(timeout)
        return {"timeout": timeout.kind}


async def test_a_local_step_cut_at_its_deadline_fails_and_its_workflow_goes_on(
    tmp_path: Path,
) -> None:
    """guarantees.md: a local attempt is cut at the step's schedule-to-close deadline and
    the step fails with a schedule-to-close TimeoutError. With a retry shorter than the
    deadline (here 10 ms, 500 ms), attempt 1 is cut at 500 ms, but its failure is decided
    with the batch's clock taken *before* the inline run, so a retry "at 10 ms" is recorded
    (StepAttemptFailed) instead of the timeout. Its retry timer and the schedule-to-close
    timer are then both due and fire in one batch: StepRetried queues a local retry,
    StepFailed (schedule_to_close) removes the step, and settle() runs the queued retry
    of a step that is gone: KeyError in _retry_local, and the whole execution is stopped
    ("its commands wait until the engine restarts with fixed code")."""
    local_attempts.clear()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(local_past_its_deadline)
        try:
            outcome: Any = await handle.result(timeout=8)
        except docket.errors.ReplyTimeoutError:
            outcome = "no result after 8 s"
        kinds = [e.type for e in await handle.history()]
        assert outcome == {"timeout": "schedule_to_close"}, (outcome, kinds)
        assert len(local_attempts) == 1, "no attempt after the deadline"


@app.step(
    retry=docket.RetryPolicy(maximum_attempts=1), schedule_to_close_timeout=timedelta(milliseconds=300)
)
async def local_hangs_no_retry() -> str:
    await asyncio.sleep(30)
    return "finished"


@app.workflow
async def local_cut_without_retry(ctx: docket.WorkflowContext) -> dict[str, Any]:
    try:
        return {"result": await ctx.local_step(local_hangs_no_retry)}
    except StepError as exc:
        cause = exc.__cause__
        return {"cause": type(cause).__name__, "kind": getattr(cause, "kind", None),
                "message": str(cause)}


async def test_a_local_step_cut_at_its_deadline_fails_with_a_schedule_to_close_timeout(
    tmp_path: Path,
) -> None:
    """guarantees.md: a local step is cut at its deadline and fails with a StepError caused
    by a TimeoutError of kind schedule_to_close. With no retry left, the cut attempt's own
    failure (asyncio.wait_for's builtin TimeoutError, recorded as an application failure
    with an empty message) becomes the StepError's cause instead."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(local_cut_without_retry)
        outcome = await handle.result(timeout=10)
        assert (outcome["cause"], outcome["kind"]) == ("TimeoutError", "schedule_to_close"), outcome
