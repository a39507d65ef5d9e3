"""Workflow code that never awaits is stopped (DeadlockError) instead of holding the processor,
and the processor's other workflows run on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.config import Settings
from docket.errors import ConfigurationError

app = docket.App("deadlock")


@app.step
async def shout(text: str) -> str:
    return text.upper()


@app.workflow
async def spinner(ctx: docket.WorkflowContext, swallow: bool) -> str:
    ready = await ctx.step(shout, "go")
    while ready:  # meant to wait for something, but never awaits: it holds the loop
        if swallow:
            try:
                sum(range(1000))
            except Exception:  # noqa: BLE001, S112 - code that swallows everything
                continue
    return ready


@app.workflow
async def greet(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(shout, f"hello {name}")


@app.workflow
class Counter:
    def __init__(self) -> None:
        self.count = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.count >= 1)
        return self.count

    @docket.signal
    def bump(self, ctx: docket.WorkflowContext) -> None:
        self.count += 1

    @docket.query
    def stuck(self, ctx: docket.QueryContext) -> int:
        while self.count >= 0:  # never ends
            pass
        return self.count

    @docket.update
    def add(self, ctx: docket.WorkflowContext, n: int) -> int:
        self.count += n
        return self.count

    @add.validator
    def check_add(self, ctx: docket.QueryContext, n: int) -> None:
        while n > 0:  # never ends for a positive n
            pass


async def _deferred_reason(handle: docket.WorkflowHandle[str]) -> str:
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        for event in await handle.history():
            if event.type == "CommandsDeferred":
                return str(event.attributes["reason"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.workflow_id} was not stopped")


@pytest.mark.parametrize("swallow", [False, True], ids=["spins", "swallows-the-error"])
async def test_code_that_never_awaits_is_stopped_and_the_others_run_on(
    tmp_path: Path, swallow: bool
) -> None:
    settings = Settings(data_dir=tmp_path, deadlock_timeout_s=0.3)
    async with docket.Engine(app, settings=settings) as engine:
        stuck = await engine.client.start(spinner, swallow, workflow_id="stuck")
        reason = await _deferred_reason(stuck)
        assert reason.startswith("DeadlockError: workflow_id='stuck': its code ran for ")
        assert "(more than 0.3 s) without awaiting anything" in reason
        assert f"{__file__}:" in reason  # the line it was on, in the workflow code
        # the processor was not held: other workflows run, and the stuck one stays stopped
        names = [f"n{i}" for i in range(8)]
        handles = [await engine.client.start(greet, n, workflow_id=n) for n in names]
        assert [await h.result(timeout=10) for h in handles] == [f"HELLO {n.upper()}" for n in names]
        assert (await stuck.describe()).status == "running"
        with pytest.raises(docket.errors.ClientError, match="is stopped and takes no requests"):
            await stuck.signal("anything")


def test_the_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_DEADLOCK_TIMEOUT", "0.5")
    assert Settings.from_env().deadlock_timeout_s == 0.5
    monkeypatch.setenv("DOCKET_DEADLOCK_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="DOCKET_DEADLOCK_TIMEOUT must be a number"):
        Settings.from_env()
    with pytest.raises(ConfigurationError, match="deadlock_timeout_s must be 0"):
        Settings(deadlock_timeout_s=-1)


async def test_a_query_handler_or_validator_that_never_returns_fails_that_request_only(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, deadlock_timeout_s=0.3)
    async with docket.Engine(app, settings=settings) as engine:
        handle = await engine.client.start(Counter, workflow_id="counter")
        with pytest.raises(docket.errors.ClientError, match="without awaiting anything"):
            await handle.query(Counter.stuck)
        with pytest.raises(docket.errors.ClientError, match="without awaiting anything"):
            await handle.execute_update(Counter.add, 5)
        assert await handle.execute_update(Counter.add, 0) == 0  # the validator lets 0 through
        await handle.signal(Counter.bump)
        assert await handle.result(timeout=10) == 1
        assert "CommandsDeferred" not in [e.type for e in await handle.history()]
