"""Core features end to end through the public API on the real embedded log and RocksDB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

import docket

app = docket.App("basics")


@dataclass
class Order:
    order_id: str
    cents: int


@app.step
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@app.step
def price(order: Order) -> int:
    assert isinstance(order, Order)
    return order.cents * 2


@app.step(retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=3))
def fails_until_third() -> int:
    attempt = docket.step_context().attempt
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt}")
    return attempt


@app.step(retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2))
def always_fails() -> None:
    raise ValueError("boom")


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(greet, name)


@app.workflow
async def pricing(ctx: docket.WorkflowContext, orders: list[Order]) -> list[int]:
    return list(await asyncio.gather(*(ctx.step(price, o) for o in orders)))


@app.workflow
async def retrying(ctx: docket.WorkflowContext) -> int:
    return await ctx.step(fails_until_third)


@app.workflow
async def doomed(ctx: docket.WorkflowContext) -> None:
    await ctx.step(always_fails)


@app.workflow
async def sleeper(ctx: docket.WorkflowContext, seconds: float) -> float:
    before = ctx.now()
    await ctx.sleep(seconds)
    return (ctx.now() - before).total_seconds()


@app.workflow
class NamedLikeTheClient:
    """Its argument and handlers' arguments are named as the client methods' parameters."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, workflow: str) -> str:
        self.seen.append(workflow)
        await ctx.wait_until(lambda: len(self.seen) == 4)
        return "/".join(self.seen)

    @docket.query
    def q(self, ctx: docket.QueryContext, query: str) -> str:
        return "/".join([*self.seen, query])

    @docket.signal
    def s(self, ctx: docket.WorkflowContext, signal: str) -> None:
        self.seen += ["q", signal]

    @docket.update
    def u(self, ctx: docket.WorkflowContext, update: str) -> str:
        self.seen.append(update)
        return "/".join(self.seen)


async def test_hello_result_describe_history(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(hello, "World", workflow_id="hello-1")
        assert await handle.result(timeout=10) == "Hello, World!"
        description = await handle.describe()
        assert (description.status, description.workflow_type) == ("completed", "hello")
        types = [e.type for e in await handle.history()]
        assert types == ["WorkflowStarted", "StepScheduled", "StepCompleted", "WorkflowCompleted"]


async def test_dataclasses_and_parallel_steps(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(pricing, [Order("a", 1), Order("b", 5)])
        assert await handle.result(timeout=10) == [2, 10]


async def test_retries_then_success(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(retrying)
        assert await handle.result(timeout=10) == 3
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("StepAttemptFailed") == 2 and kinds.count("StepRetried") == 2


async def test_step_failure_reaches_caller_with_cause_chain(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(doomed)
        with pytest.raises(docket.WorkflowFailedError) as failed:
            await handle.result(timeout=10)
        step_error = failed.value.__cause__
        assert isinstance(step_error, docket.StepError)
        assert "failed after 2 attempts: boom" in str(step_error)
        assert step_error.__cause__ is not None and step_error.__cause__.type_name == "ValueError"


async def test_durable_sleep(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(sleeper, 0.2)
        assert await handle.result(timeout=10) >= 0.2


async def test_id_reuse_policies(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        first = await client.start(hello, "a", workflow_id="same")
        await first.result(timeout=10)
        with pytest.raises(docket.errors.WorkflowAlreadyStartedError):
            await client.start(hello, "b", workflow_id="same", id_reuse_policy=docket.IdReusePolicy.REJECT_DUPLICATE)
        existing = await client.start(hello, "c", workflow_id="same", id_reuse_policy=docket.IdReusePolicy.RETURN_EXISTING)
        assert existing.run_id == first.run_id
        second = await client.start(hello, "d", workflow_id="same")
        assert second.run_id != first.run_id
        assert await second.result(timeout=10) == "Hello, d!"


async def test_a_handle_describes_and_reads_its_own_run_after_the_id_is_started_again(tmp_path: Path) -> None:
    """A handle keeps its run: once the ID is started again, ``describe()`` of the first
    handle still tells the first run (as ``result()`` and ``history()`` do), not the new one."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        first = await client.start(hello, "a", workflow_id="again")
        await first.result(timeout=10)
        second = await client.start(sleeper, 30, workflow_id="again")
        described = await first.describe()
        assert (described.run_id, described.workflow_type, described.status) == (first.run_id, "hello", "completed")
        assert described.closed_at is not None and described.history_length == 4
        assert (await second.describe()).run_id == second.run_id
        assert (await client.describe("again")).status == "running"  # by ID alone: the latest run
        assert [e.type for e in await first.history()][-1] == "WorkflowCompleted"


async def test_a_run_that_does_not_exist_has_no_history(tmp_path: Path) -> None:
    """``history()`` and ``describe()`` of an unknown run say so, as ``result()`` does,
    instead of an empty history (a mistyped run ID looked like a run with no events)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        await (await engine.client.start(hello, "a", workflow_id="known")).result(timeout=10)
        for handle in (engine.client.get_handle("known", "no-such-run"), engine.client.get_handle("unknown", "r")):
            with pytest.raises(docket.errors.WorkflowNotFoundError, match=r"no run '(no-such-run|r)' of workflow_id="):
                await handle.history()
            with pytest.raises(docket.errors.WorkflowNotFoundError):
                await handle.describe()
            with pytest.raises(docket.errors.WorkflowNotFoundError):
                await handle.result(timeout=5)


async def test_an_empty_workflow_id_is_refused_not_replaced(tmp_path: Path) -> None:
    """``workflow_id=""`` (an unset variable, say) is refused: a fresh UUID in its place
    would start a second run for what the caller meant as one idempotent start."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        with pytest.raises(docket.errors.ClientError, match="workflow_id '' is invalid"):
            await engine.client.start(hello, "a", workflow_id="")
        assert await engine.client.list() == []


async def test_handler_and_workflow_arguments_may_use_the_parameter_names_of_the_client(tmp_path: Path) -> None:
    """A keyword argument named like the client method's own first parameter (``workflow``,
    ``signal``, ``query``, ``update``) goes to the workflow or handler, instead of a TypeError."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(NamedLikeTheClient, workflow="w")
        assert await handle.query("q", query="q") == "w/q"
        await handle.signal("s", signal="s")
        assert await handle.execute_update("u", update="u") == "w/q/s/u"
        assert await handle.result(timeout=10) == "w/q/s/u"


async def test_unknown_workflow_is_rejected_and_records_nothing(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        with pytest.raises(docket.errors.ClientError, match="unknown workflow type 'nope'"):
            await engine.client.start("nope", workflow_id="x")
        assert await engine.client.list() == []


async def test_list_filters(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        await (await engine.client.start(hello, "x")).result(timeout=10)
        slow = await engine.client.start(sleeper, 30)
        running = await engine.client.list(status="running")
        assert [d.workflow_id for d in running] == [slow.workflow_id]
        assert len(await engine.client.list(workflow_type="hello")) == 1


async def test_a_start_that_fails_partway_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processor had opened its stores when the timer service failed to take its
    partitions: nothing closed them, so the next engine in this process could not open
    them (RocksDB's lock)."""
    from docket.streams.timers import TimerService

    async def disk_full(self: TimerService, partition: int) -> None:
        raise OSError("No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(TimerService, "_assign", disk_full)
        with pytest.raises(OSError, match="No space left"):
            async with docket.Engine(app, data_dir=tmp_path):
                pass
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert await (await engine.client.start(hello, "again")).result(timeout=10)
