"""Commands handed to the processor in memory (streams/handoff.py) behave as if they had
gone through ``commands``: bad input is refused at the call and changes nothing, the time
skipper waits for them, and one recorded before a failure is not handed back to be
recorded again. Each scenario also runs with the engine's client appending to
``commands`` (``commands_to = None``), the behaviour they must match."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import docket
from docket.errors import StateStoreError
from docket.state.store import StoreBatch
from docket.testing import WorkflowEnvironment

app = docket.App("review-findings")


@app.workflow
class Box:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.done)
        return self.total

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, n: int) -> None:
        self.total += n

    @docket.signal
    def finish(self, ctx: docket.WorkflowContext) -> None:
        self.done = True

    @docket.update
    def bump(self, ctx: docket.WorkflowContext) -> int:
        self.total += 1
        return self.total


@app.workflow
async def sleeps_an_hour(ctx: docket.WorkflowContext) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


@app.step
async def quick_local_work() -> int:
    await asyncio.sleep(0.2)  # real work, inside the processor's batch
    return 1


@app.workflow
async def local_then_ten_seconds(ctx: docket.WorkflowContext) -> float:
    await ctx.local_step(quick_local_work)
    before = ctx.now()
    await ctx.sleep(10)
    return (ctx.now() - before).total_seconds()


@pytest.mark.parametrize("handed", [True, False], ids=["handed", "appended"])
async def test_a_bad_terminate_reason_refuses_the_request_and_keeps_the_engine_running(
    tmp_path: Path, handed: bool
) -> None:
    """terminate(reason=123): refused by the client's encode, handed or not. Unchecked, it
    reached the processor as is: neither its event nor the command itself could be
    encoded, and the exception ended the processor's task (the whole engine stopped)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        if not handed:
            engine.client.commands_to = None
        handle = await engine.client.start(Box, workflow_id="box")
        with pytest.raises(docket.errors.SerializationError):
            await asyncio.wait_for(handle.terminate(reason=123), 10)  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert not engine._stop.is_set(), "one bad argument stopped the engine"
        await handle.signal(Box.add, 2)
        await handle.signal(Box.finish)
        assert await handle.result(timeout=10) == 2


@pytest.mark.parametrize("handed", [True, False], ids=["handed", "appended"])
async def test_a_bad_update_id_changes_nothing(tmp_path: Path, handed: bool) -> None:
    """update_id=123 (not a string) is refused at the call. Handed over unchecked, the
    processor could not encode the UpdateAccepted event and stopped the execution for the
    rest of the process's life (every later signal, update and result refused or hung).
    Bad input must change nothing (docs/guarantees.md)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        if not handed:
            engine.client.commands_to = None
        handle = await engine.client.start(Box, workflow_id="box")
        with pytest.raises(docket.errors.SerializationError):
            await asyncio.wait_for(
                handle.execute_update(Box.bump, update_id=123),  # type: ignore[arg-type]
                10,
            )
        await handle.signal(Box.add, 2)
        assert await handle.execute_update(Box.bump) == 3
        await handle.signal(Box.finish)
        assert await handle.result(timeout=10) == 3


@pytest.mark.parametrize("handed", [True, False], ids=["handed", "appended"])
async def test_time_does_not_skip_while_a_handed_start_is_being_processed(
    handed: bool,
) -> None:
    """A handed start is neither in the inbox nor on the commands topic once the processor
    took it, while its batch awaits a local step: WorkflowEnvironment.idle() also asks
    whether a batch is in hand. It did not, and jumped to the next due timer (another
    workflow's hour), so the 10 s sleep after the local step ended an hour later."""
    async with WorkflowEnvironment(app) as env:
        if not handed:
            env.client.commands_to = None
        other = await env.client.start(sleeps_an_hour, workflow_id="hour")
        handle = await env.client.start(local_then_ten_seconds, workflow_id="ten")
        slept = await handle.result(timeout=20)
        assert slept < 60, f"durable time jumped {slept:.0f} s during a 10 s sleep"
        assert await other.result(timeout=20) == "woke"


@app.step
async def worker_step() -> int:
    return 1


@app.workflow
async def step_local_then_ten_seconds(ctx: docket.WorkflowContext) -> float:
    await ctx.step(worker_step)
    await ctx.local_step(quick_local_work)
    before = ctx.now()
    await ctx.sleep(10)
    return (ctx.now() - before).total_seconds()


async def test_time_does_not_skip_while_a_handed_report_is_being_processed() -> None:
    """The same for the worker's handed reports: the report that completes the step is
    taken out of the inbox, and its batch runs a local step."""
    async with WorkflowEnvironment(app) as env:
        env.client.commands_to = None  # the start on the log: only the report is handed
        other = await env.client.start(sleeps_an_hour, workflow_id="hour")
        handle = await env.client.start(step_local_then_ten_seconds, workflow_id="ten")
        slept = await handle.result(timeout=20)
        assert slept < 60, f"durable time jumped {slept:.0f} s during a 10 s sleep"
        assert await other.result(timeout=20) == "woke"


@pytest.mark.parametrize("handed", [True, False], ids=["handed", "appended"])
async def test_a_signal_recorded_before_the_store_write_failed_is_delivered_once(
    tmp_path: Path, handed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's append succeeded (the signal is in history, its sender was answered),
    then writing the state store failed and the processor stopped. A handed signal must
    not be handed back to ``commands`` then: signals from clients are not deduplicated,
    and the next engine would deliver it a second time."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        if not handed:
            engine.client.commands_to = None
        handle = await engine.client.start(Box, workflow_id="box")
        await handle.signal(Box.add, 1)

        def full_disk(self: StoreBatch, checkpoint: int) -> None:
            raise StateStoreError("cannot write state: no space left on device")

        # the next state write fails; reads still work (a replay of the run reads history)
        monkeypatch.setattr(StoreBatch, "commit", full_disk)
        await asyncio.wait_for(handle.signal(Box.add, 2), 10)  # recorded, answered
        await asyncio.wait_for(engine._stop.wait(), 10)  # the processor stopped on the error
        monkeypatch.undo()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = engine.client.get_handle("box")
        await handle.signal(Box.finish)
        assert await handle.result(timeout=10) == 3
        added = [e for e in await handle.history() if e.type == "SignalReceived"
                 and e.attributes["signal_name"] == "add"]
        assert len(added) == 2
