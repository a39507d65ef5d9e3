"""Continue-as-new through the public API on the real embedded log: fresh history under the
same workflow ID, handles and result() following the chain, describe() showing it, and
signals and updates sent around the switch never lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.errors import ReadOnlyContextError

app = docket.App("continue-as-new")


@app.step
async def tick(n: int) -> int:
    return n + 1


@app.workflow
async def counter(ctx: docket.WorkflowContext, n: int, until: int) -> int:
    """Three steps per run, then continue with the new count, until ``until``."""
    for _ in range(3):
        if n >= until:
            return n
        n = await ctx.step(tick, n)
    ctx.continue_as_new(n, until)


@app.workflow
async def collector(ctx: docket.WorkflowContext, seen: list[str], per_run: int) -> list[str]:
    """Takes ``per_run`` signals per run with wait_for_signal; stops at "stop"."""
    for _ in range(per_run):
        item = await ctx.wait_for_signal("item")
        seen = [*seen, item]
        if item == "stop":
            return seen
    ctx.continue_as_new(seen, per_run)


@app.workflow
class Ledger:
    def __init__(self) -> None:
        self.entries: list[int] = []
        self.generation = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, entries: list[int], generation: int) -> list[int]:
        self.entries, self.generation = list(entries), generation
        await ctx.wait_until(lambda: len(self.entries) >= 3 * (generation + 1) or -1 in self.entries)
        await ctx.wait_until(ctx.all_handlers_finished)
        if -1 in self.entries:
            return [e for e in self.entries if e != -1]
        ctx.continue_as_new(self.entries, generation + 1)

    @docket.update
    def append(self, ctx: docket.WorkflowContext, value: int) -> int:
        self.entries.append(value)
        return self.generation

    @docket.query
    def generation_of(self, ctx: docket.QueryContext) -> int:
        return self.generation


@app.workflow
async def long_lived(ctx: docket.WorkflowContext, n: int, runs: int) -> object:
    """Continues as new until its ``runs``-th run, which waits for a signal "go"."""
    if n < runs:
        ctx.continue_as_new(n + 1, runs)
    ctx.set_query_handler("run", lambda qctx: n)
    return await ctx.wait_for_signal("go")


@app.workflow
class Rollover:
    """Continues as new from a handler (the generation is the run's argument); ends on "stop"."""

    def __init__(self) -> None:
        self.stopped = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, generation: int) -> int:
        await ctx.wait_until(lambda: self.stopped)
        return generation

    @docket.signal
    def roll(self, ctx: docket.WorkflowContext, generation: int) -> None:
        ctx.continue_as_new(generation)

    @docket.update
    def roll_now(self, ctx: docket.WorkflowContext, generation: int) -> None:
        ctx.continue_as_new(generation)

    @docket.signal
    def stop(self, ctx: docket.WorkflowContext) -> None:
        self.stopped = True


@app.workflow
async def query_continues(ctx: docket.WorkflowContext) -> None:
    def bad(qctx: docket.QueryContext) -> None:
        qctx.continue_as_new()  # type: ignore[attr-defined]

    ctx.set_query_handler("bad", bad)
    await ctx.wait_for_signal("never")


async def test_result_follows_the_chain_and_each_run_has_a_fresh_history(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(counter, 0, 10, workflow_id="counter")
        assert await handle.result(timeout=20) == 10
        description = await handle.describe()
        assert description.status == "completed"
        assert len(description.run_chain) == 3  # 3 + 3 + 3 steps, then the last run's 1
        assert description.run_id not in description.run_chain
        first = engine.client.get_handle("counter", description.run_chain[0])
        kinds = [e.type for e in await first.history()]
        assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowContinuedAsNew"
        assert kinds.count("StepCompleted") == 3
        latest = [e.type for e in await handle.history()]  # handle.run_id is the first run
        assert latest == kinds  # a handle from start() reads the run it started
        newest = engine.client.get_handle("counter")
        assert [e.type for e in await newest.history()][-1] == "WorkflowCompleted"
        # a handle on an old run, created later, still waits for the end of the chain
        assert await first.result(timeout=5) == 10


async def test_unconsumed_signals_move_to_the_new_run(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(collector, [], 2, workflow_id="collector")
        for item in ["a", "b", "c", "d", "e", "stop"]:  # several land during each switch
            await handle.signal("item", item)
        assert await handle.result(timeout=20) == ["a", "b", "c", "d", "e", "stop"]


async def test_updates_around_the_switch_are_never_lost(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Ledger, [], 0, workflow_id="ledger")
        generations = await asyncio.gather(
            *(handle.execute_update(Ledger.append, value) for value in range(10))
        )
        assert len(generations) == 10 and set(generations) <= {0, 1, 2, 3}  # one answer each
        await handle.execute_update(Ledger.append, -1)
        result = await handle.result(timeout=20)
        assert sorted(result) == list(range(10))  # applied once each, none lost
        assert (await handle.describe()).run_chain  # it did continue as new
        assert await engine.client.get_handle("ledger").query(Ledger.generation_of) >= 1


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "always-replay"])
async def test_a_handler_can_continue_the_run_as_new(tmp_path: Path, cache_size: int | None) -> None:
    """A ContinueAsNew raised in a signal or update handler ends the run as it does in the
    main code (the update is cut off with it). It used to end only the handler's task: the
    run went on as if nothing had happened, and the update's caller waited for ever."""
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(Rollover, 0, workflow_id="rollover")
        await handle.signal(Rollover.roll, 1)
        update = await handle.start_update(Rollover.roll_now, 2)
        with pytest.raises(docket.errors.UpdateFailedError, match="before update 'roll_now'"):
            await update.result(timeout=5)
        await handle.signal(Rollover.stop)
        assert await handle.result(timeout=5) == 2
        assert len((await handle.describe()).run_chain) == 2


async def test_a_handle_reaches_the_latest_run_of_a_chain_longer_than_the_state_names(
    tmp_path: Path,
) -> None:
    """The state names only the latest 100 runs of its chain, and a handle from start()
    keeps the first run: its requests were refused as not found once the chain was longer."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(long_lived, 0, 105, workflow_id="long")
        assert await handle.query("run") == 105
        assert len((await handle.describe()).run_chain) == 100
        await handle.signal("go", "went")
        assert await handle.result(timeout=10) == "went"
        assert (await handle.describe()).status == "completed"
        with pytest.raises(docket.errors.WorkflowNotFoundError):  # not a run of this chain
            await engine.client.get_handle("long", "6f1c1f9e-0000-4000-8000-000000000000").signal("go")


async def test_an_update_id_is_remembered_per_run(tmp_path: Path) -> None:
    """A documented limit (guarantees.md), as in Temporal: the next run of the chain does
    not know the update_ids its predecessor finished, so a late retry is applied again."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Ledger, [], 0, workflow_id="ledger")
        assert await handle.execute_update(Ledger.append, 7, update_id="seven") == 0
        assert await handle.execute_update(Ledger.append, 7, update_id="seven") == 0  # same run
        for value in (8, 9):
            await handle.execute_update(Ledger.append, value)
        for _ in range(200):  # three entries: generation 0 continues as new
            if await handle.query(Ledger.generation_of) == 1:
                break
            await asyncio.sleep(0.02)
        assert await handle.execute_update(Ledger.append, 7, update_id="seven") == 1
        await handle.execute_update(Ledger.append, -1)
        assert await handle.result(timeout=10) == [7, 8, 9, 7]


async def test_continue_as_new_in_a_query_is_refused(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(query_continues, workflow_id="q")
        with pytest.raises(docket.errors.ClientError, match=ReadOnlyContextError.__name__) as caught:
            await handle.query("bad")
        assert "ctx.continue_as_new() was called in a query" in str(caught.value)
        assert (await handle.describe()).status == "running"


async def test_continued_runs_replay_with_the_cache_off(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=0) as engine:
        handle = await engine.client.start(collector, [], 2, workflow_id="collector")
        for item in ["a", "b", "c", "stop"]:
            await handle.signal("item", item)
        assert await handle.result(timeout=20) == ["a", "b", "c", "stop"]
