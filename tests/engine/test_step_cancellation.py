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
