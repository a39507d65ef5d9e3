"""Checked by mypy (tests/typing/test_static.py): the public API keeps its types."""

from __future__ import annotations

from typing import Any, assert_type

import docket

app = docket.App("typing")


@app.step
async def greet(name: str) -> str:
    return name


@app.step
def count(items: list[int]) -> int:
    return len(items)


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    assert_type(await ctx.step(greet, name), str)
    assert_type(await ctx.step(count, [1, 2]), int)
    assert_type(await ctx.local_step(count, [1]), int)
    assert_type(ctx.emit("greetings", {"name": name}, key=name, headers={"h": b"v"}), str)
    return name


async def use(client: docket.Client) -> None:
    assert_type(await client.emit("greetings", b"raw", key="k"), None)
    handle = await client.start(hello, "x", workflow_id="t")
    assert_type(handle, docket.WorkflowHandle[str])
    assert_type(await handle.result(), str)


@app.workflow
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> list[str]:
        return self.items

    @docket.update
    def add(self, ctx: docket.WorkflowContext, item: str) -> int:
        self.items.append(item)
        return len(self.items)


async def use_class_workflow(client: docket.Client) -> None:
    handle = await client.start(Cart, workflow_id="cart")
    assert_type(handle, docket.WorkflowHandle[Any])
    count = await handle.execute_update(Cart.add, "apple")
    update = await client.update_with_start(Cart, workflow_id="cart", update=Cart.add, update_args=("x",))
    assert_type(update, docket.UpdateHandle)
    assert count is not None


source = app.signal_source("names", workflow=hello, signal="name", key_to_id=str.upper)
assert_type(source.topic, str)
