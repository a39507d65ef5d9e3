"""Start delay, run timeout and execution timeout, through the public API on the real
embedded log and timer service (time-skipping where the waits are long)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import docket
from docket.errors import ClientError
from docket.testing import WorkflowEnvironment

app = docket.App("start-options")


@app.workflow
async def stamp(ctx: docket.WorkflowContext) -> float:
    return ctx.now().timestamp()


@app.workflow
class Gate:
    def __init__(self) -> None:
        self.opened_by: str | None = None

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        await ctx.wait_until(lambda: self.opened_by is not None)
        assert self.opened_by is not None
        return self.opened_by

    @docket.signal
    def open(self, ctx: docket.WorkflowContext, who: str) -> None:
        self.opened_by = who


@app.workflow
async def sleeper(ctx: docket.WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "woke up"


@app.workflow
async def forever_continuing(ctx: docket.WorkflowContext, rounds: int) -> int:
    await ctx.sleep(timedelta(hours=1))
    ctx.continue_as_new(rounds + 1)


async def test_start_delay_records_now_and_begins_later(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        asked = asyncio.get_running_loop().time()
        import time

        wall = time.time()
        handle = await engine.client.start(stamp, start_delay=timedelta(milliseconds=600))
        description = await handle.describe()
        assert description.status == "running" and description.delayed_until is not None
        began = await handle.result(timeout=10)
        assert began - wall >= 0.55, "the code began after the delay"
        assert asyncio.get_running_loop().time() - asked >= 0.55
        kinds = [e.type for e in await handle.history()]
        assert kinds[:2] == ["WorkflowStarted", "StartDelayElapsed"]
        assert (await handle.describe()).delayed_until is None


async def test_signals_during_a_start_delay_wait_for_the_code(tmp_path: Path) -> None:
    async with WorkflowEnvironment(app, data_dir=tmp_path) as env:
        handle = await env.client.start(Gate, start_delay=timedelta(days=2))
        await handle.signal(Gate.open, "early bird")
        assert await handle.result(timeout=10) == "early bird"


async def test_run_timeout_stops_the_run(tmp_path: Path) -> None:
    async with WorkflowEnvironment(app, data_dir=tmp_path) as env:
        handle = await env.client.start(sleeper, 3600, run_timeout=timedelta(minutes=5))
        with pytest.raises(docket.WorkflowFailedError) as caught:
            await handle.result(timeout=10)
        cause = caught.value.__cause__
        assert isinstance(cause, docket.errors.TimeoutError) and cause.kind == "run"
        assert (await handle.describe()).status == "timed_out"
        assert [e.type for e in await handle.history()][-1] == "WorkflowTimedOut"


async def test_execution_timeout_spans_continue_as_new(tmp_path: Path) -> None:
    async with WorkflowEnvironment(app, data_dir=tmp_path) as env:
        handle = await env.client.start(
            forever_continuing,
            0,
            run_timeout=timedelta(hours=2),  # never reached: each run lasts an hour
            execution_timeout=timedelta(hours=5, minutes=30),
        )
        with pytest.raises(docket.WorkflowFailedError) as caught:
            await handle.result(timeout=10)
        cause = caught.value.__cause__
        assert isinstance(cause, docket.errors.TimeoutError) and cause.kind == "execution"
        description = await env.client.get_handle(handle.workflow_id).describe()
        assert description.status == "timed_out" and len(description.run_chain) == 5


async def test_bad_start_options_are_refused(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        with pytest.raises(ClientError, match="start_delay must be a positive"):
            await engine.client.start(stamp, start_delay=-1)
        with pytest.raises(ClientError, match="run_timeout must be a positive"):
            await engine.client.start(stamp, run_timeout="soon")
        assert await engine.client.list() == []


def _indexed_timers(engine: docket.Engine) -> int:
    assert engine.timers is not None
    return sum(sum(1 for _ in store.due.keys()) for store in engine.timers.stores.values())


async def test_a_closed_run_leaves_no_timer_in_the_index(tmp_path: Path) -> None:
    """Sleeps, start delays and timeouts of runs that closed early are taken out of the timer
    index (streams/outputs.py cancel_run_timers): they would sit on disk until due."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        year = timedelta(days=365)
        quick = await engine.client.start(stamp, run_timeout=year, execution_timeout=year)
        await quick.result(timeout=10)
        sleeping = await engine.client.start(sleeper, 30 * 24 * 3600.0, run_timeout=year)
        gated = await engine.client.start(Gate, start_delay=timedelta(days=2), run_timeout=year)
        deadline = asyncio.get_running_loop().time() + 10
        while _indexed_timers(engine) < 4:  # the sleep, its run timeout, the delay, its timeout
            assert asyncio.get_running_loop().time() < deadline, _indexed_timers(engine)
            await asyncio.sleep(0.05)
        await sleeping.terminate("enough")
        await gated.signal(Gate.open, "me")  # waits for the code: the delay still runs
        await gated.terminate("enough")
        while _indexed_timers(engine):
            assert asyncio.get_running_loop().time() < deadline, _indexed_timers(engine)
            await asyncio.sleep(0.05)
        assert (await sleeping.describe()).status == "terminated"
