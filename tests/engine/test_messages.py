"""Signals, queries and wait_until through the public API, on the real engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.errors import ClientError, WorkflowAlreadyStartedError, WorkflowNotFoundError

app = docket.App("messages")


@app.step
async def record(item: str) -> str:
    return item.upper()


@app.workflow
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked_out = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, owner: str) -> list[str]:
        await ctx.wait_until(lambda: self.checked_out)
        return [await ctx.step(record, item) for item in self.items]

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, item: str) -> None:
        self.items.append(item)

    @docket.signal
    async def checkout(self, ctx: docket.WorkflowContext) -> None:
        self.checked_out = True

    @docket.query
    def contents(self, ctx: docket.QueryContext) -> list[str]:
        return list(self.items)

    @docket.query
    def sneaky(self, ctx: docket.QueryContext) -> None:
        ctx.sleep(1)


@app.workflow
async def approvals(ctx: docket.WorkflowContext, needed: int) -> list[str]:
    approvers: list[str] = []
    ctx.set_query_handler("approvers", lambda qctx: list(approvers))
    while len(approvers) < needed:
        approvers.append(await ctx.wait_for_signal("approve"))
    return approvers


@app.workflow
async def deadline(ctx: docket.WorkflowContext) -> str:
    try:
        await ctx.wait_until(lambda: False, timeout=0.2)
    except TimeoutError:
        return "timed out"
    return "impossible"


@pytest.fixture(params=[None, 0], ids=["cached", "always-replay"])
def cache_size(request: pytest.FixtureRequest) -> int | None:
    return request.param  # type: ignore[no-any-return]


async def test_signals_in_order_and_query_sees_them(tmp_path: Path, cache_size: int | None) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(Cart, "ada", workflow_id="cart-1")
        for item in ["apple", "bread", "cheese"]:
            await handle.signal(Cart.add, item)
        assert await handle.query(Cart.contents) == ["apple", "bread", "cheese"]
        await handle.signal("checkout")
        assert await handle.result(timeout=10) == ["APPLE", "BREAD", "CHEESE"]
        history = [e for e in await handle.history() if e.type == "SignalReceived"]
        assert [e.attributes["signal_name"] for e in history] == ["add", "add", "add", "checkout"]
        # a closed workflow still answers, from its history
        assert await handle.query("contents") == ["apple", "bread", "cheese"]


async def test_signals_sent_at_once_are_delivered_once_each_in_order(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, "bob")
        await asyncio.gather(*(handle.signal(Cart.add, f"item-{i}") for i in range(20)))
        contents = await handle.query(Cart.contents)
        assert sorted(contents) == sorted(f"item-{i}" for i in range(20)) and len(contents) == 20
        recorded = [e.attributes["args"][0]["data"] for e in await handle.history() if e.type == "SignalReceived"]
        assert [f'"{c}"'.encode() for c in contents] == recorded  # delivered in recorded order


async def test_buffered_signals_for_function_workflows(tmp_path: Path, cache_size: int | None) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(approvals, 2)
        await handle.signal("approve", "alice")
        assert await handle.query("approvers") == ["alice"]
        await handle.signal("approve", "bob")
        assert await handle.result(timeout=10) == ["alice", "bob"]


async def test_keyword_arguments_to_wait_for_signal_are_refused(tmp_path: Path) -> None:
    """wait_for_signal returns positional arguments only: keyword arguments were accepted
    and dropped, and the workflow got None for a signal sent as signal("approve", who=...)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(approvals, 1)
        with pytest.raises(ClientError, match="positional arguments only: send who positionally"):
            await handle.signal("approve", who="alice")
        assert "SignalReceived" not in [e.type for e in await handle.history()]
        await handle.signal("approve", "alice")
        assert await handle.result(timeout=10) == ["alice"]


@app.workflow
class Gauge:
    """Its wait_until predicate raises once a signal set a bad reading."""

    def __init__(self) -> None:
        self.readings: list[int] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        try:
            await ctx.wait_until(lambda: 100 // self.readings[-1] < 10 if self.readings else False)
        except ZeroDivisionError:
            return "the predicate raised where it was awaited"
        return "high enough"

    @docket.signal
    def read(self, ctx: docket.WorkflowContext, value: int) -> None:
        self.readings.append(value)


async def test_a_wait_until_predicate_that_raises_later_raises_in_the_workflow(
    tmp_path: Path,
) -> None:
    """On its first check (inside ctx.wait_until) a raising predicate raised in the code; on
    a later check, after a signal, its error escaped the activation and stopped the
    execution (commands deferred until fixed code) instead."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Gauge)
        await handle.signal(Gauge.read, 0)
        assert await handle.result(timeout=10) == "the predicate raised where it was awaited"


async def test_wait_until_timeout_is_a_durable_timer(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(deadline)
        assert await handle.result(timeout=10) == "timed out"
        assert "TimerFired" in [e.type for e in await handle.history()]


async def test_bad_signals_and_queries_are_refused_and_record_nothing(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        handle = await client.start(Cart, "eve")
        before = len(await handle.history())
        with pytest.raises(ClientError, match="has no signal 'nope'"):
            await handle.signal("nope")
        with pytest.raises(ClientError, match="arguments do not match signal 'add'"):
            await handle.signal(Cart.add, "a", "b")
        with pytest.raises(ClientError, match="has no query 'nope'"):
            await handle.query("nope")
        with pytest.raises(ClientError, match="queries only read state"):
            await handle.query(Cart.sneaky)
        with pytest.raises(WorkflowNotFoundError):
            await client.get_handle("missing").signal("add", "x")
        assert len(await handle.history()) == before
        await handle.signal(Cart.checkout)
        await handle.result(timeout=10)
        with pytest.raises(ClientError, match="is completed: it takes no more signals"):
            await handle.signal(Cart.add, "late")


async def test_signal_with_start(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        first = await client.start(Cart, "zoe", workflow_id="cart-sws", start_signal=Cart.add,
                                   start_signal_args=["apple"])
        again = await client.start(Cart, "zoe", workflow_id="cart-sws", start_signal="add",
                                   start_signal_args=["pear"])
        assert again.run_id == first.run_id  # the running run got the second signal
        assert await first.query(Cart.contents) == ["apple", "pear"]
        await first.signal(Cart.checkout)
        assert await first.result(timeout=10) == ["APPLE", "PEAR"]
        later = await client.start(Cart, "zoe", workflow_id="cart-sws", start_signal=Cart.add,
                                   start_signal_args=["plum"])
        assert later.run_id != first.run_id  # closed: a new run, which got the signal
        assert await later.query(Cart.contents) == ["plum"]
        with pytest.raises(ClientError, match="has no signal 'nope'; nothing was started"):
            await client.start(Cart, "zoe", workflow_id="cart-none", start_signal="nope")
        assert [d.workflow_id for d in await client.list()] == ["cart-sws"]


@pytest.mark.parametrize("policy", ["allow_after_close", "reject_duplicate"])
async def test_signal_with_start_under_a_policy_that_refuses_the_start(
    tmp_path: Path, policy: str
) -> None:
    """The running run takes the signal, as the docstring says, and the caller gets its
    handle. It used to raise WorkflowAlreadyStartedError although the signal was delivered."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        client = engine.client
        first = await client.start(Cart, "zoe", workflow_id="cart-sws")
        again = await client.start(Cart, "zoe", workflow_id="cart-sws", start_signal=Cart.add,
                                   start_signal_args=["apple"], id_reuse_policy=policy)
        assert again.run_id == first.run_id
        assert await first.query(Cart.contents) == ["apple"]
        await first.signal(Cart.checkout)
        await first.result(timeout=10)
        if policy == "reject_duplicate":  # closed: no new run, and no signal either
            with pytest.raises(WorkflowAlreadyStartedError):
                await client.start(Cart, "zoe", workflow_id="cart-sws", start_signal=Cart.add,
                                   start_signal_args=["pear"], id_reuse_policy=policy)
            assert await first.query(Cart.contents) == ["apple"]


async def test_terminate(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, "tom")
        await handle.signal(Cart.add, "x")
        await handle.terminate("changed my mind")
        with pytest.raises(docket.WorkflowFailedError, match="terminated: changed my mind"):
            await handle.result(timeout=10)
        assert (await handle.describe()).status == "terminated"
        assert (await handle.history())[-1].type == "WorkflowTerminated"
        with pytest.raises(ClientError, match="is already terminated"):
            await handle.terminate()
        with pytest.raises(ClientError, match="takes no more signals"):
            await handle.signal(Cart.add, "y")
        assert [d.status for d in await engine.client.list(status="terminated")] == ["terminated"]


@app.workflow
async def stubborn(ctx: docket.WorkflowContext) -> str:
    try:
        await ctx.wait_until(lambda: False)
    except asyncio.CancelledError:
        await ctx.sleep(0.3)  # cleanup takes a while; cancelling again changes nothing
        return "cleaned up and finished anyway"
    return "impossible"


async def test_cancel(tmp_path: Path, cache_size: int | None) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(Cart, "carl")
        await handle.cancel("not needed")
        with pytest.raises(docket.WorkflowFailedError, match="cancelled: not needed"):
            await handle.result(timeout=10)
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("CancelRequested") == 1 and kinds[-1] == "WorkflowCancelled"
        assert (await handle.describe()).status == "cancelled"
        with pytest.raises(ClientError, match="is already cancelled"):
            await handle.cancel()
        caught = await engine.client.start(stubborn)
        await caught.cancel()
        await caught.cancel("asked again while it cleans up: recorded once")
        assert await caught.result(timeout=10) == "cleaned up and finished anyway"
        assert [e.type for e in await caught.history()].count("CancelRequested") == 1
