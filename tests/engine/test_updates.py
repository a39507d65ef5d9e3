"""Updates through the public API on the real embedded log: validated before anything is
recorded, handlers that await steps and timers, outcomes to every caller, retries by
update_id, update-with-start, and handlers that finish before the run ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.errors import (
    ClientError,
    UpdateFailedError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
)

app = docket.App("updates")


@app.step
async def reserve(item: str) -> str:
    await asyncio.sleep(0.01)
    return f"reserved {item}"


@app.workflow
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = asyncio.Lock()
        self.done = False
        self.calls = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> list[str]:
        await ctx.wait_until(lambda: self.done)
        await ctx.wait_until(ctx.all_handlers_finished)
        return self.items

    @docket.update
    async def add(self, ctx: docket.WorkflowContext, item: str) -> int:
        async with self.lock:  # concurrent handlers take turns around the step
            self.calls += 1
            note = await ctx.step(reserve, item)
            assert note == f"reserved {item}"
            self.items.append(item)
            return len(self.items)

    @add.validator
    def check_add(self, ctx: docket.QueryContext, item: str) -> None:
        if not item:
            raise ValueError("item must not be empty")
        if self.done:
            raise ValueError("the cart is checked out")

    @docket.update
    def fail(self, ctx: docket.WorkflowContext) -> None:
        raise RuntimeError("handler says no")

    @docket.update
    async def checkout(self, ctx: docket.WorkflowContext) -> list[str]:
        await ctx.sleep(0.05)
        self.done = True
        return list(self.items)

    @docket.query
    def count(self, ctx: docket.QueryContext) -> int:
        return len(self.items)


@app.workflow
async def counter(ctx: docket.WorkflowContext) -> int:
    total = 0

    def add(ctx: docket.WorkflowContext, n: int) -> int:
        nonlocal total
        total += n
        return total

    def positive(ctx: docket.QueryContext, n: int) -> None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")

    ctx.set_update_handler("add", add, validator=positive)
    await ctx.wait_until(lambda: total >= 10)
    return total


async def test_update_returns_its_handlers_value_and_is_recorded(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        assert await handle.execute_update(Cart.add, "apple") == 1
        assert await handle.execute_update("add", "pear") == 2
        assert await handle.query(Cart.count) == 2
        assert await handle.execute_update(Cart.checkout) == ["apple", "pear"]
        assert await handle.result(timeout=10) == ["apple", "pear"]
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("UpdateAccepted") == 3
        assert kinds.count("UpdateCompleted") == 3


async def test_rejected_updates_record_nothing(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        await handle.execute_update(Cart.add, "apple")
        before = [e.type for e in await handle.history()]
        with pytest.raises(ClientError, match="item must not be empty"):
            await handle.execute_update(Cart.add, "")
        with pytest.raises(ClientError, match="has no update 'nope'"):
            await handle.execute_update("nope")
        with pytest.raises(ClientError, match="arguments do not match"):
            await handle.execute_update(Cart.add, "a", "b")
        assert [e.type for e in await handle.history()] == before
        with pytest.raises(WorkflowNotFoundError):
            await engine.client.get_handle("no-such-cart").execute_update(Cart.add, "x")
        await handle.execute_update(Cart.checkout)
        await handle.result(timeout=10)
        with pytest.raises(ClientError, match="completed: it takes no more updates"):
            await handle.execute_update(Cart.add, "late")


async def test_a_failing_handler_fails_the_update_not_the_workflow(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        with pytest.raises(UpdateFailedError, match="handler says no") as caught:
            await handle.execute_update(Cart.fail)
        assert isinstance(caught.value.__cause__, docket.ApplicationError)
        assert await handle.execute_update(Cart.add, "apple") == 1
        assert (await handle.describe()).status == "running"


async def test_concurrent_updates_take_the_lock_in_turn(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        sizes = await asyncio.gather(
            *(handle.execute_update(Cart.add, f"item-{i}") for i in range(8))
        )
        assert sorted(sizes) == list(range(1, 9))  # each saw the list grow by exactly one
        items = await handle.execute_update(Cart.checkout)
        assert sorted(items) == sorted(f"item-{i}" for i in range(8))


async def test_a_retried_update_id_is_applied_once(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        first = await handle.start_update(Cart.add, "apple", update_id="add-apple")
        again = await handle.start_update(Cart.add, "apple", update_id="add-apple")
        assert await first.result(timeout=10) == 1
        assert await again.result(timeout=10) == 1
        late = await handle.execute_update(Cart.add, "apple", update_id="add-apple")
        assert late == 1  # answered from history
        assert await handle.query(Cart.count) == 1
        other = docket.Client.connect(data_dir=tmp_path)
        try:  # another client retrying the same update hears the same outcome
            retried = other.get_handle("cart")
            assert await retried.execute_update(Cart.add, "apple", update_id="add-apple") == 1
        finally:
            await other.close()
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("UpdateAccepted") == 1


async def test_update_with_start_returns_early(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        update = await engine.client.update_with_start(
            Cart, workflow_id="cart", update=Cart.add, update_args=("apple",)
        )
        assert await update.result(timeout=10) == 1
        assert (await update.workflow.describe()).status == "running"
        again = await engine.client.update_with_start(
            Cart, workflow_id="cart", update=Cart.add, update_args=("pear",)
        )
        assert again.workflow.run_id == update.workflow.run_id  # the running run took it
        assert await again.result(timeout=10) == 2
        with pytest.raises(ClientError, match="has no update 'nope'; nothing was started"):
            await engine.client.update_with_start(Cart, workflow_id="other", update="nope")
        assert [d.workflow_id for d in await engine.client.list()] == ["cart"]


@pytest.mark.parametrize("policy", ["allow_after_close", "reject_duplicate"])
async def test_update_with_start_under_a_policy_that_refuses_the_start(
    tmp_path: Path, policy: str
) -> None:
    """The running run takes the update, and its caller hears so. It used to raise
    WorkflowAlreadyStartedError, telling the caller nothing happened, while the update was
    applied all the same."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        update = await engine.client.update_with_start(
            Cart, workflow_id="cart", update=Cart.add, update_args=("apple",), id_reuse_policy=policy
        )
        assert update.workflow.run_id == handle.run_id
        assert await update.result(timeout=10) == 1
        assert await handle.query(Cart.count) == 1


async def test_update_with_start_refused_with_its_start(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        await handle.execute_update(Cart.checkout)
        await handle.result(timeout=10)
        with pytest.raises(WorkflowAlreadyStartedError):
            await engine.client.update_with_start(
                Cart, workflow_id="cart", update=Cart.add, update_args=("pear",),
                id_reuse_policy="reject_duplicate",
            )
        assert await handle.query(Cart.count) == 0
        assert [e.type for e in await handle.history()].count("UpdateAccepted") == 1


async def test_function_workflows_register_update_handlers(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(counter, workflow_id="counter")
        await asyncio.sleep(0.05)
        assert await handle.execute_update("add", 4) == 4
        with pytest.raises(ClientError, match="n must be positive"):
            await handle.execute_update("add", -1)
        assert await handle.execute_update("add", 6) == 10
        assert await handle.result(timeout=10) == 10


async def test_updates_replay_after_the_instance_is_evicted(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=0) as engine:
        handle = await engine.client.start(Cart, workflow_id="cart")
        assert await handle.execute_update(Cart.add, "apple") == 1
        assert await handle.execute_update(Cart.add, "pear") == 2
        assert await handle.execute_update(Cart.checkout) == ["apple", "pear"]
        assert await handle.result(timeout=10) == ["apple", "pear"]
