"""Child workflows and signals between workflows, through the public API on the real
embedded log: children on other partitions, results and failures back to the parent as
typed errors, parent-close policies, cancellation reaching children, child-to-parent and
workflow-to-workflow signals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.errors import ChildWorkflowError
from docket.log.partitioner import partition

app = docket.App("children")


@app.step
async def double(n: int) -> int:
    return 2 * n


@app.workflow
async def doubler(ctx: docket.WorkflowContext, n: int) -> int:
    return await ctx.step(double, n)


@app.workflow
async def failing_child(ctx: docket.WorkflowContext) -> None:
    raise docket.ApplicationError("the child gives up", non_retryable=True)


@app.workflow
async def parent_sum(ctx: docket.WorkflowContext, numbers: list[int]) -> int:
    handles = [await ctx.start_child(doubler, n) for n in numbers]
    results = await asyncio.gather(*handles)
    return sum(results)


@app.workflow
async def parent_of_failure(ctx: docket.WorkflowContext) -> str:
    try:
        await ctx.child(failing_child, workflow_id="the-failing-child")
    except ChildWorkflowError as exc:
        return f"caught: {exc.__cause__}"
    return "no error"


@app.workflow
class Waiter:
    """Waits for a signal "go"; tells its parent when it got it."""

    def __init__(self) -> None:
        self.go = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        await ctx.wait_until(lambda: self.go)
        if ctx.parent is not None:
            await ctx.parent.signal("child_done", ctx.workflow_id)
        return "went"

    @docket.signal
    def proceed(self, ctx: docket.WorkflowContext) -> None:
        self.go = True


@app.workflow
async def closes_before_its_child_starts(ctx: docket.WorkflowContext) -> str:
    asyncio.get_running_loop().create_task(ctx.start_child(Waiter, workflow_id="shared"))
    await asyncio.sleep(0)  # the start is recorded; the run closes before it is reported
    return "closed"


@app.workflow
async def child_with_a_bad_timeout(ctx: docket.WorkflowContext, seconds: float) -> str:
    try:
        await ctx.start_child(doubler, 1, run_timeout=seconds)
    except docket.errors.WorkflowError as exc:
        return str(exc)
    return "started"


@app.workflow
async def parent_signalling(ctx: docket.WorkflowContext) -> list[str]:
    child = await ctx.start_child(Waiter, workflow_id="waiter-child")
    await child.signal(Waiter.proceed)
    heard = await ctx.wait_for_signal("child_done")
    return [heard, await child]


@app.workflow
async def leaves_children(ctx: docket.WorkflowContext, policy: str) -> str:
    await ctx.start_child(Waiter, workflow_id=f"orphan-{policy}", parent_close_policy=policy)
    return "parent done"


@app.workflow
async def long_chain(ctx: docket.WorkflowContext, n: int) -> None:
    """Continues as new 105 times, then waits for ever."""
    if n < 105:
        ctx.continue_as_new(n + 1)
    await ctx.wait_for_signal("never")


@app.workflow
async def parent_of_a_long_chain(ctx: docket.WorkflowContext) -> None:
    await ctx.start_child(long_chain, 0, workflow_id="long-chain")
    await ctx.wait_for_signal("never")


@app.workflow
async def parent_cancellable(ctx: docket.WorkflowContext) -> str:
    # REQUEST_CANCEL: when this run closes the child is not terminated, so its own
    # cancellation (asked for when the awaiting task was cancelled) plays out
    return await ctx.child(
        Waiter, workflow_id="cancel-me", parent_close_policy=docket.ParentClosePolicy.REQUEST_CANCEL
    )


@app.workflow
async def duplicate_child(ctx: docket.WorkflowContext) -> str:
    await ctx.start_child(Waiter, workflow_id="same-id")
    try:
        await ctx.start_child(Waiter, workflow_id="same-id")
    except ChildWorkflowError as exc:
        await ctx.external_workflow("same-id").signal(Waiter.proceed)
        return str(exc)
    return "started twice"


@app.workflow
async def signals_nobody(ctx: docket.WorkflowContext) -> str:
    try:
        await ctx.external_workflow("nobody-here").signal("hello")
    except docket.ApplicationError as exc:
        return str(exc)
    return "delivered"


async def test_children_return_results_to_the_parent(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        numbers = [1, 2, 3, 4, 5]
        handle = await engine.client.start(parent_sum, numbers, workflow_id="parent")
        assert await handle.result(timeout=20) == 30
        children = [d for d in await engine.client.list() if d.workflow_type == "doubler"]
        assert len(children) == 5 and {d.status for d in children} == {"completed"}
        partitions = {partition(d.workflow_id, 4) for d in children}
        assert len(partitions) > 1, "children live on other partitions"
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("ChildWorkflowScheduled") == kinds.count("ChildWorkflowCompleted") == 5


async def test_a_failing_child_raises_a_typed_error_in_the_parent(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(parent_of_failure)
        assert await handle.result(timeout=20) == "caught: the child gives up"


async def test_signals_between_parent_and_child(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(parent_signalling)
        assert await handle.result(timeout=20) == ["waiter-child", "went"]


@pytest.mark.parametrize(
    ("policy", "status"),
    [("terminate", "terminated"), ("request_cancel", "cancelled"), ("abandon", "running")],
)
async def test_parent_close_policies(tmp_path: Path, policy: str, status: str) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(leaves_children, policy)
        assert await handle.result(timeout=20) == "parent done"
        child = engine.client.get_handle(f"orphan-{policy}")
        for _ in range(200):
            if (await child.describe()).status == status:
                break
            await asyncio.sleep(0.02)
        assert (await child.describe()).status == status


async def test_a_child_that_continued_as_new_past_the_kept_chain_gets_its_policy(
    tmp_path: Path,
) -> None:
    """The parent knows its child's first run; the child's state names only its latest 100.
    Terminating the parent used to leave such a child running (its terminate: not found)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        parent = await engine.client.start(parent_of_a_long_chain)
        child = engine.client.get_handle("long-chain")
        for _ in range(200):
            try:
                if len((await child.describe()).run_chain) == 100:
                    break
            except docket.errors.WorkflowNotFoundError:
                pass
            await asyncio.sleep(0.02)
        await parent.terminate("done")
        for _ in range(200):
            if (await child.describe()).status == "terminated":
                break
            await asyncio.sleep(0.02)
        assert (await child.describe()).status == "terminated"


async def test_cancelling_the_parent_cancels_the_child(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(parent_cancellable)
        child = engine.client.get_handle("cancel-me")
        for _ in range(200):
            try:
                if (await child.describe()).status == "running":
                    break
            except docket.errors.WorkflowNotFoundError:
                pass
            await asyncio.sleep(0.02)
        await handle.cancel("stop all")
        with pytest.raises(docket.WorkflowFailedError):
            await handle.result(timeout=20)
        for _ in range(200):
            if (await child.describe()).status == "cancelled":
                break
            await asyncio.sleep(0.02)
        assert (await child.describe()).status == "cancelled"
        kinds = [e.type for e in await child.history()]
        assert "CancelRequested" in kinds
        assert "ChildCancelRequested" in [e.type for e in await handle.history()]


async def test_a_child_id_already_running_fails_the_start(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(duplicate_child)
        message = await handle.result(timeout=20)
        assert "could not start" in message and "already running" in message


async def test_signalling_an_unknown_workflow_raises_in_the_sender(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(signals_nobody)
        assert "no workflow with workflow_id='nobody-here'" in await handle.result(timeout=20)


async def test_children_replay_with_the_cache_off(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=0) as engine:
        handle = await engine.client.start(parent_signalling)
        assert await handle.result(timeout=20) == ["waiter-child", "went"]
        handle = await engine.client.start(parent_sum, [1, 2])
        assert await handle.result(timeout=20) == 6


async def test_a_parent_closing_before_its_childs_start_leaves_an_unrelated_run_alone(
    tmp_path: Path,
) -> None:
    """The parent-close policy's terminate named no run while the child's start was not
    reported yet, so it reached whatever run held the ID: here an unrelated one, which had
    made the child's start fail (found by helper-32's review)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        unrelated = await engine.client.start(Waiter, workflow_id="shared")
        parent = await engine.client.start(closes_before_its_child_starts)
        assert await parent.result(timeout=10) == "closed"
        await unrelated.signal(Waiter.proceed)  # after the parent's notice, on its partition
        assert await unrelated.result(timeout=10) == "went"
        assert "WorkflowTerminated" not in [e.type for e in await unrelated.history()]


@pytest.mark.parametrize("seconds", [-5.0, 0.0, float("inf"), float("nan"), 1e13])
async def test_a_child_timeout_must_be_positive_and_finite(tmp_path: Path, seconds: float) -> None:
    """-5 s became a 1 ms run timeout, inf an OverflowError from inside start_child, and
    1e13 s a deadline no record holds, which stopped the child's workflow ID."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        outcome = await (await engine.client.start(child_with_a_bad_timeout, seconds)).result(timeout=10)
        assert outcome.startswith("start_child: run_timeout must be a positive, finite")
