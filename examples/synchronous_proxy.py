"""Synchronous proxy: a conversation with a long-running workflow, one answer at a time.

Why it matters: a UI walks a user through steps ("which size?", "which colour?") and
needs the long-running order workflow's answer to each before asking the next. Each UI
request starts a short-lived proxy workflow; the proxy signals the order workflow with
the request and its own ID, waits for the order's response signal, and returns it as its
result, which the UI awaits. Every message is a durable signal between workflows.
(Updates, see update.py, do the same in one call; the proxy shows the signal-only way.)
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("synchronous_proxy")

CHOICES = {"size": ["S", "M", "L"], "colour": ["red", "blue"]}


@app.step
async def confirm_order(order: dict[str, str]) -> str:
    return f"order confirmed: {order['size']} in {order['colour']}"


@app.workflow
class Order:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (proxy ID, field, value)
        self.order: dict[str, str] = {}

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        while set(self.order) != set(CHOICES):
            await ctx.wait_until(lambda: bool(self.requests))
            proxy, field, value = self.requests.pop(0)
            if value in CHOICES.get(field, []):
                self.order[field] = value
                answer = f"{field} set to {value}"
            else:
                answer = f"sorry, {value!r} is not a {field}; choose from {CHOICES.get(field)}"
            await ctx.external_workflow(proxy).signal("response", answer)
        return await ctx.step(confirm_order, self.order)

    @docket.signal
    def request(self, ctx: docket.WorkflowContext, proxy: str, field: str, value: str) -> None:
        self.requests.append((proxy, field, value))


@app.workflow
async def order_proxy(ctx: docket.WorkflowContext, order_id: str, field: str, value: str) -> str:
    """Short-lived: forwards one request and waits for the order's answer."""
    await ctx.external_workflow(order_id).signal(Order.request, ctx.workflow_id, field, value)
    answer: str = await ctx.wait_for_signal("response")
    return answer


async def ask(client: docket.Client, order_id: str, field: str, value: str) -> str:
    """What the UI does for each user action: one proxy, one answer."""
    proxy = await client.start(order_proxy, order_id, field, value)
    answer: str = await proxy.result(timeout=10)
    print(f"ui: {field}={value!r} -> {answer}")
    return answer


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        order = await engine.client.start(Order, workflow_id="order-7")
        assert (await ask(engine.client, "order-7", "size", "XL")).startswith("sorry")
        assert await ask(engine.client, "order-7", "size", "M") == "size set to M"
        assert await ask(engine.client, "order-7", "colour", "blue") == "colour set to blue"
        result = await order.result(timeout=10)
        print(result)
        assert result == "order confirmed: M in blue"


if __name__ == "__main__":
    asyncio.run(main())
