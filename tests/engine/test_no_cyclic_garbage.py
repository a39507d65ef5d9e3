"""A finished workflow is freed by reference counting, not left for the cyclic collector.

Cyclic garbage is a cost per workflow: it makes collections more frequent, and each full
collection longer, with the event loop stopped (bench/README, "The cyclic garbage
collector"). The run's instance, loop, tasks and contexts point at one another, so the
processor disposes of a closed instance and the worker drops a finished step's task."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import weakref
from collections import Counter
from pathlib import Path

import pytest

import docket
from docket.config import flag
from docket.runtime.instance import WorkflowInstance
from docket.runtime.loop import DeterministicLoop
from docket.worker import StepContext

# With no workflow cache, every activation replays an instance and drops it while its run is
# open, tasks pending: such an instance is left to the collector (WorkflowInstance.dispose).
cached_path_only = pytest.mark.skipif(
    flag("DOCKET_ALWAYS_REPLAY"), reason="measures the cached path: always-replay evicts open runs"
)

app = docket.App("garbage")


@app.step
async def greet(name: str) -> str:
    return f"Hello, {name}"


@app.step
def shout(text: str) -> str:  # a sync step, in a thread
    return text.upper()


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(shout, await ctx.step(greet, name))


@app.workflow
async def answers(ctx: docket.WorkflowContext, name: str) -> str:
    greeting = await ctx.step(greet, name)
    ctx.set_query_handler("greeting", lambda qctx: greeting)
    return greeting


def _workflow_of(o: object) -> str | None:
    """The workflow ID an object of the runtime belongs to (None: not one of ours). Tests
    run before this one in the same process may leave garbage of their own."""
    if isinstance(o, DeterministicLoop):
        o = getattr(getattr(o, "_timer_factory", None), "_instance", None)
    if isinstance(o, WorkflowInstance | StepContext):
        return getattr(o, "workflow_id", None)
    return None


@app.workflow
async def leaves_a_ticker(ctx: docket.WorkflowContext) -> str:
    async def tick() -> None:
        try:
            while True:
                await ctx.sleep(60)
        finally:
            ctx.now()  # clean-up that uses the context, when the task is collected

    ctx_task = asyncio.create_task(tick())
    await ctx.sleep(0.01)
    assert not ctx_task.done()
    return "done, the ticker still pending"


async def test_a_run_that_closes_with_tasks_pending_is_not_disposed(tmp_path: Path) -> None:
    """Its tasks' coroutines are closed when the collector finds them, and their clean-up
    (asyncio.sleep's finally, the user's) still runs against the instance: disposing of it
    made that clean-up fail ("Exception ignored in <coroutine ...>")."""
    unraisable: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        async with docket.Engine(app, data_dir=tmp_path) as engine:
            handle = await engine.client.start(leaves_a_ticker)
            assert await handle.result(timeout=20) == "done, the ticker still pending"
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []


@cached_path_only
async def test_finished_workflows_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        await (await client.start(hello, "warm-up")).result(timeout=20)
        ours = {f"garbage-{i}" for i in range(30)}
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to count it
        try:
            for i in range(30):
                handle = await client.start(hello, f"n{i}", workflow_id=f"garbage-{i}")
                assert await handle.result(timeout=20) == f"HELLO, N{i}"
            gc.collect()
            found = Counter(type(o).__name__ for o in gc.garbage if _workflow_of(o) in ours)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert not found, f"cyclic garbage left by finished workflows: {dict(found)}"


_IN_FLIGHT = (asyncio.TimerHandle, contextvars.Context, weakref.ReferenceType)


@cached_path_only
async def test_closed_runs_leave_nothing_behind_in_a_long_running_engine(tmp_path: Path) -> None:
    """What an engine holds must not grow with the runs that closed. It did: the processor
    cached every closed run's state (up to 10,000; the store has it), the client every
    outcome, taken or not (up to 100,000), and the timer service left a task waiting for
    good each time an append woke it first (one per few workflows, without bound). In a
    long-running engine every full collection walked them all."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:

        async def run(names: list[str]) -> None:
            handles = [await engine.client.start(hello, n, workflow_id=n) for n in names]
            assert await asyncio.gather(*(h.result(timeout=20) for h in handles)) == [
                f"HELLO, {n.upper()}" for n in names
            ]

        async def tracked() -> int:
            """Tracked objects but asyncio's bookkeeping of what is in flight as they are
            counted (timer handles, their contexts, the weak references of its task set):
            that moves by 150 either way with the timing, and a loaded CI machine took it
            for growth. The rest grows by 30-50 here (thread pools filling up)."""
            await asyncio.sleep(0.1)  # what the runs' gather held goes
            gc.collect()
            return sum(1 for o in gc.get_objects() if not isinstance(o, _IN_FLIGHT))

        await run([f"warm-{i}" for i in range(50)])
        before = await tracked()
        await run([f"run-{i}" for i in range(400)])
        grown = await tracked() - before
        assert grown < 100, f"{grown} more tracked objects after 400 closed runs"
        again = engine.client.get_handle("run-7")  # a closed run's result is still there
        assert await again.result(timeout=20) == await again.result(timeout=20) == "HELLO, RUN-7"


@cached_path_only
async def test_queries_of_closed_runs_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    """A closed run answers a query from its history, replayed into an instance for that
    query alone: the instance goes with the answer, not to the cyclic collector."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(answers, "ann", workflow_id="queried")
        assert await handle.result(timeout=20) == "Hello, ann"
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(5):
                assert await handle.query("greeting") == "Hello, ann"
            gc.collect()
            found = Counter(type(o).__name__ for o in gc.garbage if _workflow_of(o) == "queried")
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert not found, f"cyclic garbage left by queries of a closed run: {dict(found)}"
