"""Asynchronous step completion: a step hands out its task token and returns without
finishing; a client (here another process's client) completes, fails or heartbeats it,
with the step's timeouts still enforced."""

from __future__ import annotations

import asyncio
import queue
from datetime import timedelta
from pathlib import Path

import pytest

import docket
from docket.errors import ClientError, WorkflowNotFoundError

app = docket.App("async-completion")
tokens: queue.Queue[str] = queue.Queue()  # filled by steps, from the loop or a thread


async def next_token() -> str:
    return await asyncio.to_thread(tokens.get, timeout=10)


@pytest.fixture(autouse=True)
def no_leftover_tokens() -> None:
    while not tokens.empty():
        tokens.get_nowait()


@app.step(
    start_to_close_timeout=timedelta(seconds=1.5),
    retry=docket.RetryPolicy(maximum_attempts=2, initial_interval=timedelta(milliseconds=50)),
)
async def approval(request: str) -> str:
    tokens.put_nowait(docket.step_context().task_token)
    docket.step_context().complete_async()


@app.step(heartbeat_timeout=timedelta(seconds=0.6), start_to_close_timeout=timedelta(seconds=30))
def watched(request: str) -> str:
    tokens.put_nowait(docket.step_context().task_token)
    docket.step_context().complete_async()


@app.workflow
async def expense(ctx: docket.WorkflowContext, request: str) -> str:
    return await ctx.step(approval, request)


@app.workflow
async def watched_expense(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(watched, "x")


async def test_complete_by_token_from_another_client(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(expense, "lunch")
        token = await next_token()
        other = docket.Client.connect(data_dir=tmp_path)
        try:
            await other.complete_step(token, "approved")
            assert await handle.result(timeout=10) == "approved"
            with pytest.raises(WorkflowNotFoundError, match="is not pending"):
                await other.complete_step(token, "approved twice")  # nothing recorded
        finally:
            await other.close()
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("StepCompleted") == 1


async def test_fail_by_token_goes_through_the_retry_policy(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(expense, "yacht")
        first = await next_token()
        await engine.client.fail_step(first, "rejected by the first approver")
        second = await next_token()  # attempt 2: a new token
        assert second != first
        await engine.client.fail_step(second, "rejected again")
        with pytest.raises(docket.WorkflowFailedError) as caught:
            await handle.result(timeout=10)
        assert "rejected again" in str(caught.value.__cause__)


async def test_timeouts_still_apply_and_a_late_token_is_refused(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(expense, "late")
        first = await next_token()
        second = await next_token()  # attempt 1 timed out: retried
        with pytest.raises(WorkflowNotFoundError, match="is not pending"):
            await engine.client.complete_step(first, "too late")
        await engine.client.complete_step(second, "in time")
        assert await handle.result(timeout=10) == "in time"
        kinds = [e.type for e in await handle.history()]
        assert "StepAttemptFailed" in kinds


async def test_heartbeats_by_token_keep_the_attempt_alive(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(watched_expense)
        token = await next_token()
        for i in range(4):  # 1.2 s in all, twice the heartbeat timeout
            await asyncio.sleep(0.3)
            await engine.client.heartbeat_step(token, {"checked": i})
        await engine.client.complete_step(token, "done")
        assert await handle.result(timeout=10) == "done"
        kinds = [e.type for e in await handle.history()]
        assert "StepAttemptFailed" not in kinds and kinds.count("StepHeartbeat") == 4


async def test_a_malformed_token_is_a_clear_error(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        with pytest.raises(ClientError, match="is not a Docket task token"):
            await engine.client.complete_step("not-a-token", 1)
