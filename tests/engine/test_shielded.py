"""Shielded blocks: a cancellation that arrives while one runs waits for it to finish."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket

app = docket.App("shielded")
began: list[str] = []


@app.step
async def transfer(amount: int) -> str:
    began.append(f"transfer {amount}")
    await asyncio.sleep(0.4)
    return f"moved {amount}"


@app.step
async def notify(text: str) -> None:
    began.append(text)


@app.workflow
async def payment(ctx: docket.WorkflowContext) -> str:
    try:
        async with ctx.shielded():  # must not be cut half-way
            moved = await ctx.step(transfer, 100)
        await ctx.sleep(60)
        return moved
    except asyncio.CancelledError:
        async with ctx.shielded():
            await ctx.step(notify, "cancelled after the transfer finished")
        raise


@pytest.mark.parametrize("cache", [10, 0], ids=["cached", "always-replay"])
async def test_a_cancel_during_a_shielded_block_is_delivered_after_it(tmp_path: Path, cache: int) -> None:
    began.clear()
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache) as engine:
        handle = await engine.client.start(payment)
        while not began:
            await asyncio.sleep(0.01)
        await handle.cancel("customer gave up")  # while the transfer runs
        with pytest.raises(docket.WorkflowFailedError) as caught:
            await handle.result(timeout=10)
        assert isinstance(caught.value.__cause__, docket.errors.CancelledError)
        kinds = [e.type for e in await handle.history()]
        assert "StepCancelRequested" not in kinds  # the transfer was not cut
        assert kinds.count("StepCompleted") == 2
        assert "TimerStarted" not in kinds  # cancelled at the first await after the block
        assert began == ["transfer 100", "cancelled after the transfer finished"]
