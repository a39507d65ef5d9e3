"""The time-skipping test kit: days of durable time in milliseconds, through the real timer
service; real work (running steps) is never skipped over."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import docket
from docket.testing import ManualClock, WorkflowEnvironment

app = docket.App("skipping")


@app.step
async def send_email(n: int) -> str:
    await asyncio.sleep(0.05)  # real work: the environment waits for it
    return f"email {n}"


@app.workflow
async def monthly(ctx: docket.WorkflowContext, months: int) -> list[str]:
    sent = []
    for n in range(months):
        await ctx.sleep(timedelta(days=30))
        sent.append(await ctx.step(send_email, n))
    return sent


@app.step(retry=docket.RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=3))
def flaky() -> int:
    attempt = docket.step_context().attempt
    if attempt < 3:
        raise RuntimeError("not yet")
    return attempt


@app.workflow
async def patient(ctx: docket.WorkflowContext) -> int:
    return await ctx.step(flaky)


async def test_thirty_day_sleeps_finish_at_once() -> None:
    async with WorkflowEnvironment(app) as env:
        started = env.clock.now_us()
        wall = time.monotonic()
        handle = await env.client.start(monthly, 3)
        assert await handle.result(timeout=20) == ["email 0", "email 1", "email 2"]
        assert time.monotonic() - wall < 10
        assert env.clock.now_us() - started >= 90 * 86_400 * 1_000_000
        fired = [e for e in await handle.history() if e.type == "TimerFired"]
        assert len(fired) == 3


async def test_retry_backoff_is_skipped_too() -> None:
    async with WorkflowEnvironment(app) as env:
        handle = await env.client.start(patient)
        assert await handle.result(timeout=20) == 3  # two one-hour-plus backoffs


async def test_manual_time_moves_only_when_told() -> None:
    async with WorkflowEnvironment(app, skip_time=False) as env:
        handle = await env.client.start(monthly, 1)
        await asyncio.sleep(0.3)
        assert (await handle.describe()).status == "running"
        await env.sleep(timedelta(days=31))
        assert await handle.result(timeout=20) == ["email 0"]


def test_manual_clock_never_goes_back() -> None:
    clock = ManualClock(start=100.0)
    clock.advance(timedelta(seconds=5))
    clock.set_us(1)
    assert clock.now_us() == 105_000_000


@app.workflow
async def early(ctx: docket.WorkflowContext) -> str:
    await ctx.wait_until(lambda: True, timeout=timedelta(days=365))  # met at once: no timer
    try:
        async with asyncio.timeout(3600):  # a timeout not reached: its timer is cancelled
            await ctx.step(send_email, 0)
    except TimeoutError:
        return "timed out"
    return "done"


async def test_cancelled_timers_leave_the_timer_service() -> None:
    async with WorkflowEnvironment(app, skip_time=False) as env:
        handle = await env.client.start(early)
        assert await handle.result(timeout=10) == "done"
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("TimerStarted") == 1 and kinds.count("TimerCancelled") == 1
        for _ in range(100):  # the cancel record reaches the timer service's index
            if env._next_due_us() is None:
                break
            await asyncio.sleep(0.01)
        assert env._next_due_us() is None, "the cancelled timer is gone from the due index"
