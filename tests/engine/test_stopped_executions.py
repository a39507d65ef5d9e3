"""An execution whose code no longer matches its history stops, keeps what arrives, and
resumes when an engine runs fixed code; nothing is lost and the history stays replayable."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import docket
from docket.replay import replay_history


def make_app(broken: bool) -> tuple[docket.App, docket.Workflow[..., str]]:
    app = docket.App("resume")

    @app.step
    async def first() -> str:
        return "first"

    @app.step
    async def second() -> str:
        return "second"

    @app.workflow
    async def flow(ctx: docket.WorkflowContext) -> str:
        if broken:  # a replay-unsafe edit: another step where history has `first`
            await ctx.step(second)
        a = await ctx.step(first)
        await ctx.sleep(0.3)
        return a + "+" + await ctx.step(second)

    return app, flow


async def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_stopped_execution_defers_commands_and_resumes_with_fixed_code(tmp_path: Path) -> None:
    good, flow = make_app(broken=False)
    async with docket.Engine(good, data_dir=tmp_path) as engine:
        handle = await engine.client.start(flow, workflow_id="resume-1")

        async def sleeping() -> bool:
            return "TimerStarted" in [e.type for e in await handle.history()]

        await until(sleeping)

    bad, _ = make_app(broken=True)
    async with docket.Engine(bad, data_dir=tmp_path) as engine:
        handle = engine.client.get_handle("resume-1")

        async def deferred() -> bool:
            return "CommandsDeferred" in [e.type for e in await handle.history()]

        await until(deferred)  # the timer fired; replay failed; the FireTimer command waits
        stopped = [e for e in await handle.history() if e.type == "CommandsDeferred"][0]
        assert "asked for step 'second' at seq 1" in stopped.attributes["reason"]
        with pytest.raises(docket.errors.ClientError, match="is stopped and takes no requests"):
            await handle.signal("anything")
        assert (await handle.describe()).status == "running"

    async with docket.Engine(good, data_dir=tmp_path) as engine:
        handle = engine.client.get_handle("resume-1")
        assert await handle.result(timeout=10) == "first+second"
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("TimerFired") == 1 and kinds.index("DeferredResumed") < kinds.index("TimerFired")
        events = engine.client._reader.history("resume-1")
    assert replay_history(good, events).ok


async def test_a_stopped_execution_can_be_terminated(tmp_path: Path) -> None:
    good, flow = make_app(broken=False)
    async with docket.Engine(good, data_dir=tmp_path) as engine:
        handle = await engine.client.start(flow, workflow_id="resume-2")

        async def sleeping() -> bool:
            return "TimerStarted" in [e.type for e in await handle.history()]

        await until(sleeping)
    bad, _ = make_app(broken=True)
    async with docket.Engine(bad, data_dir=tmp_path) as engine:
        handle = engine.client.get_handle("resume-2")

        async def deferred() -> bool:
            return "CommandsDeferred" in [e.type for e in await handle.history()]

        await until(deferred)
        await handle.terminate("cannot be fixed")
        assert (await handle.describe()).status == "terminated"
    async with docket.Engine(good, data_dir=tmp_path) as engine:  # nothing is left to resume
        history = await engine.client.get_handle("resume-2").history()
        assert history[-1].type == "WorkflowTerminated" and "DeferredResumed" not in [e.type for e in history]


def make_waiting_app(step_after_sleep: bool) -> docket.App:
    app = docket.App("resume-waiting")

    @app.step
    async def notify() -> str:
        return "notified"

    @app.workflow
    async def approval(ctx: docket.WorkflowContext) -> str:
        await ctx.sleep(0.2)
        if step_after_sleep:  # a replay-unsafe edit where history has the code waiting
            await ctx.step(notify)
        await ctx.wait_for_signal("approve")
        return "approved"

    return app


async def test_a_step_added_after_the_last_recorded_activation_stops_the_execution(tmp_path: Path) -> None:
    """The timer fired and the old code waited for a signal, recording nothing. The new code
    asks for a step there: the engine stops the execution and says why, rather than drop
    the step and leave the run waiting for it forever (and replay reports it)."""
    async with docket.Engine(make_waiting_app(False), data_dir=tmp_path) as engine:
        handle = await engine.client.start("approval", workflow_id="waiting-1")

        async def fired() -> bool:
            return "TimerFired" in [e.type for e in await handle.history()]

        await until(fired)
        events = engine.client._reader.history("waiting-1")
    changed = make_waiting_app(True)
    result = replay_history(changed, events)
    assert not result.ok and "asked for step 'notify' at seq 2" in str(result.error)
    async with docket.Engine(changed, data_dir=tmp_path) as engine:
        handle = engine.client.get_handle("waiting-1")
        with pytest.raises(docket.errors.ClientError, match="asked for step 'notify' at seq 2"):
            await handle.signal("approve")
        assert "StepScheduled" not in [e.type for e in await handle.history()]


async def test_sys_exit_in_workflow_code_stops_that_execution_not_the_engine(tmp_path: Path) -> None:
    """asyncio lets SystemExit out of the task that raised it: it ended the engine's process,
    and every restart's, since the command that ran the code stayed unprocessed."""
    app = docket.App("exits")

    @app.workflow
    async def quits(ctx: docket.WorkflowContext) -> str:
        await ctx.sleep(0.1)
        sys.exit(3)

    @app.workflow
    async def hello(ctx: docket.WorkflowContext) -> str:
        return "hello"

    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(quits, workflow_id="quits-1")

        async def deferred() -> bool:
            return "CommandsDeferred" in [e.type for e in await handle.history()]

        await until(deferred)
        stopped = [e for e in await handle.history() if e.type == "CommandsDeferred"][0]
        assert "workflow code raised SystemExit(3)" in stopped.attributes["reason"]
        assert (await handle.describe()).status == "running"
        assert await (await engine.client.start(hello, workflow_id="hello-1")).result(timeout=10) == "hello"
