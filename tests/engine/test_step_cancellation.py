"""Cancellation reaches running steps: async steps at their current await, sync steps at
their next heartbeat; a cancelled step is not retried."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import docket

app = docket.App("step-cancel")
seen: list[str] = []


@app.step
async def slow_async(name: str) -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen.append(f"{name} cancelled")
        raise
    return "finished"


@app.step(heartbeat_timeout=timedelta(seconds=5))
def slow_sync(name: str) -> str:
    ctx = docket.step_context()
    for i in range(300):
        time.sleep(0.02)
        try:
            ctx.heartbeat(i)
        except docket.errors.CancelledError:
            seen.append(f"{name} cancelled at heartbeat")
            raise
    return "finished"


@app.workflow
async def race(ctx: docket.WorkflowContext, step_name: str) -> str:
    loser = asyncio.ensure_future(ctx.step(step_name, "loser"))
    await ctx.sleep(0.2)
    loser.cancel()
    try:
        await loser
    except asyncio.CancelledError:
        pass
    await ctx.sleep(0.3)  # give the worker time to report
    return "moved on"


@app.step
async def hog() -> str:
    await asyncio.sleep(1.0)
    return "hog done"


@app.step
def never_started(name: str) -> str:
    seen.append(f"{name} ran")
    return name


@app.workflow
async def cancel_queued(ctx: docket.WorkflowContext) -> str:
    busy = asyncio.ensure_future(ctx.step(hog))
    await ctx.sleep(0.1)  # the worker's only slot is taken
    queued = asyncio.ensure_future(ctx.step(never_started, "queued"))
    await ctx.sleep(0.1)
    queued.cancel()
    try:
        await queued
    except asyncio.CancelledError:
        pass
    return await busy


async def test_async_and_sync_steps_are_cancelled_on_the_worker(tmp_path: Path) -> None:
    seen.clear()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        for step_name in ("slow_async", "slow_sync"):
            handle = await engine.client.start(race, step_name)
            assert await handle.result(timeout=20) == "moved on"
            history = await handle.history()
            kinds = [e.type for e in history]
            assert "StepCancelRequested" in kinds
            failed = [e for e in history if e.type == "StepFailed"]
            assert failed and failed[0].attributes["failure"]["cause"]["kind"] == "cancelled"
            assert "StepAttemptFailed" not in kinds  # a cancelled step is not retried
    assert seen == ["loser cancelled", "loser cancelled at heartbeat"]


async def test_cancelling_the_workflow_cancels_its_running_step(tmp_path: Path) -> None:
    seen.clear()

    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(race, "slow_async")
        await asyncio.sleep(0.1)
        await handle.cancel("stop everything")
        try:
            await handle.result(timeout=20)
        except docket.WorkflowFailedError:
            pass
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
    assert seen == ["loser cancelled"]


async def test_a_full_worker_still_cancels_its_running_step(tmp_path: Path) -> None:
    """A worker at its max_concurrency read nothing from its task queues, cancel notices
    included: the step it ran could not be cancelled (here it ran its 30 s to the end)."""
    seen.clear()
    async with docket.Engine(app, data_dir=tmp_path, max_concurrency=1) as engine:
        handle = await engine.client.start(race, "slow_async")
        assert await handle.result(timeout=20) == "moved on"
        failed = [e for e in await handle.history() if e.type == "StepFailed"]
        assert failed and failed[0].attributes["failure"]["cause"]["kind"] == "cancelled"
    assert seen == ["loser cancelled"]


async def test_a_step_cancelled_while_queued_on_a_full_worker_never_runs(tmp_path: Path) -> None:
    """The cancelled step's task waited behind a busy worker; it used to run once a slot
    freed (its cancel notice, read after it, found nothing running). Now the worker reads
    ahead: the notice drops the waiting task and reports it cancelled."""
    seen.clear()
    async with docket.Engine(app, data_dir=tmp_path, max_concurrency=1) as engine:
        handle = await engine.client.start(cancel_queued)
        assert await handle.result(timeout=20) == "hog done"
        history = await handle.history()
        kinds = [e.type for e in history]
        (failed,) = [e for e in history if e.type == "StepFailed"]
        assert failed.attributes["failure"]["cause"]["kind"] == "cancelled"
        assert kinds.index("StepFailed") < kinds.index("StepCompleted")  # before hog ended
        await asyncio.sleep(0.3)
    assert seen == []
