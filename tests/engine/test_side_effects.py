"""ctx.side_effect through the engine: a synchronous one runs once, within its activation,
whatever the cache does; a slow one is not taken for stuck code; an asynchronous one is a
local step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import docket
from docket.config import Settings
from docket.replay import load_history, replay_history

app = docket.App("side-effects")
ran: list[str] = []


def ticket() -> str:
    ran.append("ticket")
    return f"ticket-{len(ran)}"


def slow_ticket() -> str:
    time.sleep(0.8)  # I/O, say: longer than the deadlock timeout of the test below
    return "slow ticket"


async def fetched() -> str:
    await asyncio.sleep(0.01)
    return "fetched"


@app.workflow
async def draws_then_sleeps(ctx: docket.WorkflowContext) -> list[str]:
    first = await ctx.side_effect(ticket)
    await ctx.sleep(0.05)
    second = await ctx.side_effect(ticket)
    await ctx.sleep(0.05)
    return [first, second]


@app.workflow
async def waits_for_a_slow_one(ctx: docket.WorkflowContext) -> str:
    return await ctx.side_effect(slow_ticket)


@app.workflow
async def awaits_one(ctx: docket.WorkflowContext) -> list[str]:
    by_function = await ctx.side_effect(fetched)
    by_lambda = await ctx.side_effect(lambda: fetched())  # sync, but returns a coroutine
    return [by_function, by_lambda]


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "always-replay"])
async def test_a_side_effect_runs_once_and_each_activation_sees_its_record(
    tmp_path: Path, cache_size: int | None
) -> None:
    ran.clear()
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(draws_then_sleeps)
        assert await handle.result(timeout=10) == ["ticket-1", "ticket-2"]
        assert ran == ["ticket", "ticket"]  # always-replay re-ran the code, not the fn
        history = await handle.history()
    kinds = [e.type for e in history]
    assert kinds == [
        "WorkflowStarted", "SideEffectRecorded", "TimerStarted",
        "TimerFired", "SideEffectRecorded", "TimerStarted",
        "TimerFired", "WorkflowCompleted",
    ]
    assert history[1].attributes["result"]["data"] == b'"ticket-1"'


async def test_a_slow_side_effect_is_not_stopped_as_stuck_code(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, deadlock_timeout_s=0.3)
    async with docket.Engine(app, settings=settings) as engine:
        handle = await engine.client.start(waits_for_a_slow_one)
        assert await handle.result(timeout=10) == "slow ticket"
        assert "CommandsDeferred" not in [e.type for e in await handle.history()]


async def test_an_awaitable_side_effect_is_a_local_step(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(awaits_one)
        assert await handle.result(timeout=10) == ["fetched", "fetched"]
        history = await handle.history()
    scheduled = [e.attributes["step_name"] for e in history if e.type == "StepScheduled"]
    assert scheduled == ["side_effect", "side_effect"]
    assert "SideEffectRecorded" not in [e.type for e in history]


class OutsideTheHierarchy(BaseException):
    """What some libraries raise (test frameworks, green-thread timeouts): not an Exception."""


def cancels() -> str:
    raise asyncio.CancelledError("the side effect's own cancellation, not the workflow's")


def escapes() -> str:
    raise OutsideTheHierarchy("not an Exception")


@app.workflow
async def survives_a_failed_one(ctx: docket.WorkflowContext, which: str) -> str:
    try:
        await ctx.side_effect(cancels if which == "cancels" else escapes)
    except docket.StepError as err:
        await ctx.sleep(0.05)  # a later activation: replays the first one
        return f"{err.__cause__.type_name}: {err.__cause__}"  # type: ignore[union-attr]
    return "no error"


@pytest.mark.parametrize("which", ["cancels", "escapes"])
@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "always-replay"])
async def test_a_side_effect_raising_a_base_exception_is_recorded_as_its_failure(
    tmp_path: Path, cache_size: int | None, which: str
) -> None:
    """Once fn has run, its outcome must be recorded: a BaseException that escaped it left
    its seq taken with nothing recorded, so the next replay asked for a local step where
    history held the timer (the execution stopped), and a CancelledError passed for a
    cancellation of the whole run."""
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(survives_a_failed_one, which)
        outcome = await handle.result(timeout=10)
        await handle.export_history(tmp_path / "history.jsonl")
    assert outcome == {
        "cancels": "asyncio.exceptions.CancelledError: the side effect's own cancellation, "
        "not the workflow's",
        "escapes": "test_side_effects.OutsideTheHierarchy: not an Exception",
    }[which]
    assert replay_history(app, load_history(tmp_path / "history.jsonl")).ok


def asks_ctx(ctx: docket.WorkflowContext, call: str) -> Callable[[], str]:
    def fn() -> str:
        if call == "uuid4":
            return str(ctx.uuid4())
        return ctx.emit("side-effect-records", "from inside")
    return fn


@app.step
def echo(text: str) -> str:
    return text


@app.workflow
async def side_effect_asks_ctx(ctx: docket.WorkflowContext, call: str) -> str:
    try:
        inside = await ctx.side_effect(asks_ctx(ctx, call))
    except docket.StepError as err:
        inside = str(err.__cause__)
    await ctx.sleep(0.05)  # a later activation: replays the first one
    await ctx.step(echo, str(ctx.uuid4()))  # replays compare its argument
    return inside


@pytest.mark.parametrize("call", ["uuid4", "emit"])
async def test_a_side_effect_that_asks_ctx_fails_the_same_live_and_replayed(
    tmp_path: Path, call: str
) -> None:
    """fn runs only the first time, never in replays: what it drew from ctx (the run's
    random sequence, a seq) was drawn live only, so the code after it saw other values, or
    asked for other seqs, once replayed (a NondeterminismError). Using ctx there is an
    error, recorded as the side effect's failure."""
    for cache_size in (None, 0):
        data = tmp_path / f"cache-{cache_size}"
        async with docket.Engine(app, data_dir=data, workflow_cache_size=cache_size) as engine:
            handle = await engine.client.start(side_effect_asks_ctx, call)
            inside = await handle.result(timeout=10)
            await handle.export_history(data / "history.jsonl")
        assert replay_history(app, load_history(data / "history.jsonl")).ok
        assert f"ctx.{call}() was called in the function of a side effect" in inside
