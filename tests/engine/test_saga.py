"""docket.Saga: compensations run newest first, failures of compensations never hide the cause."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import docket

app = docket.App("saga-tests")
done: list[str] = []
ONCE = docket.RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=1)


@app.step
def act(name: str) -> None:
    done.append(name)


@app.step(retry=ONCE)
def broken(name: str) -> None:
    raise RuntimeError(f"{name} broke")


@app.workflow
async def three_then_fail(ctx: docket.WorkflowContext, parallel: bool) -> None:
    async with docket.Saga(ctx, parallel=parallel) as saga:
        for name in ("a", "b", "c"):
            await ctx.step(act, name)
            saga.compensate(broken if name == "b" else act, f"undo-{name}")
        await ctx.step(broken, "d")


@pytest.mark.parametrize("parallel", [False, True])
async def test_compensations_run_in_reverse_and_keep_the_cause(tmp_path: Path, parallel: bool) -> None:
    done.clear()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(three_then_fail, parallel)
        with pytest.raises(docket.WorkflowFailedError) as failed:
            await handle.result(timeout=20)
    cause = failed.value.__cause__
    assert isinstance(cause, docket.StepError) and "d broke" in str(cause)
    undone = [name for name in done if name.startswith("undo")]
    assert sorted(undone) == ["undo-a", "undo-c"]
    if not parallel:
        assert undone == ["undo-c", "undo-a"]
    scheduled = [e.attributes["args"] for e in await handle.history() if e.type == "StepScheduled"]
    assert [a[0]["data"] for a in scheduled[-3:]] == [b'"undo-c"', b'"undo-b"', b'"undo-a"']


async def _until_scheduled(handle: docket.WorkflowHandle[None], step_name: str) -> None:
    while not any(e.type == "StepScheduled" and e.attributes["step_name"] == step_name
                  for e in await handle.history()):
        await asyncio.sleep(0.02)


@app.step
async def long_wait(name: str) -> None:
    await asyncio.sleep(30)


@app.workflow
async def cancelled_midway(ctx: docket.WorkflowContext) -> None:
    async with docket.Saga(ctx) as saga:
        await ctx.step(act, "reserve")
        saga.compensate(act, "undo-reserve")
        await ctx.step(act, "charge")
        saga.compensate(act, "undo-charge")
        await ctx.step(long_wait, "ship")  # cancelled while it runs


async def test_a_cancelled_workflow_runs_its_compensations(tmp_path: Path) -> None:
    """A cancellation left what the block had done in place (compensations ran on failures
    only); a Temporal saga undoes a cancelled transaction too."""
    done.clear()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(cancelled_midway)

        await _until_scheduled(handle, "long_wait")
        await handle.cancel("customer changed their mind")
        with pytest.raises(docket.WorkflowFailedError, match="cancel"):
            await handle.result(timeout=20)
        assert (await handle.describe()).status == "cancelled"
    assert done == ["reserve", "charge", "undo-charge", "undo-reserve"]


@app.step
async def slow_undo(name: str) -> None:
    await asyncio.sleep(1.0)
    done.append(name)


@app.workflow
async def fails_then_undoes_slowly(ctx: docket.WorkflowContext) -> None:
    async with docket.Saga(ctx) as saga:
        await ctx.step(act, "a")
        saga.compensate(act, "undo-a")
        await ctx.step(act, "b")
        saga.compensate(slow_undo, "undo-b")
        await ctx.step(broken, "c")


async def test_a_cancel_during_the_compensations_of_a_failure_waits_for_them(
    tmp_path: Path,
) -> None:
    """The compensations of a failure ran unshielded: a cancel arriving meanwhile cut the
    running one and skipped the rest (found by helper-32's review)."""
    done.clear()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(fails_then_undoes_slowly)

        await _until_scheduled(handle, "slow_undo")
        await handle.cancel("operator")
        with pytest.raises(docket.WorkflowFailedError):
            await handle.result(timeout=20)
    assert done == ["a", "b", "undo-b", "undo-a"]
