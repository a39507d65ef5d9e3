"""Shopping cart: a long-lived workflow per cart, changed by updates, bounded by continue-as-new.

Why it matters: a cart lives as long as the customer shops, perhaps for weeks, and every
click must get an answer at once. Each request is an update-with-start: the first click
creates the cart workflow (policy USE_RUNNING), later clicks reach the same run. Updates
answer synchronously, a validator refuses bad requests before anything is recorded, and a
checkout signal ends the cart. So that history never grows without bound, the cart
continues as new every few changes, once no handler is running: its state moves to a
fresh run with an empty history, and handles keep working across the switch.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass, field

import docket

app = docket.App("shopping_cart")

CHANGES_PER_RUN = 4  # small to show the switch; real carts would use hundreds


@dataclass
class CartState:
    items: dict[str, int] = field(default_factory=dict)  # sku -> quantity
    changes: int = 0  # since this run started


@app.step
async def charge(cart_id: str, items: dict[str, int]) -> str:
    total = sum(items.values())
    return f"order for {cart_id}: {total} items"


@app.workflow
class Cart:
    def __init__(self) -> None:
        self.state = CartState()
        self.checked_out = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, cart_id: str, state: CartState | None = None) -> str:
        self.state = state or CartState()
        self.state.changes = 0
        await ctx.wait_until(lambda: self.checked_out or self.state.changes >= CHANGES_PER_RUN)
        await ctx.wait_until(ctx.all_handlers_finished)  # never cut an update off
        if not self.checked_out:
            ctx.continue_as_new(cart_id, self.state)
        return await ctx.step(charge, cart_id, self.state.items)

    @docket.update
    def add_item(self, ctx: docket.WorkflowContext, sku: str, quantity: int) -> dict[str, int]:
        self.state.items[sku] = self.state.items.get(sku, 0) + quantity
        self.state.changes += 1
        return dict(self.state.items)

    @add_item.validator
    def check_add(self, ctx: docket.QueryContext, sku: str, quantity: int) -> None:
        if self.checked_out:
            raise ValueError("the cart is checked out")
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")

    @docket.update
    def remove_item(self, ctx: docket.WorkflowContext, sku: str, quantity: int) -> dict[str, int]:
        left = self.state.items.get(sku, 0) - quantity
        if left > 0:
            self.state.items[sku] = left
        else:
            self.state.items.pop(sku, None)
        self.state.changes += 1
        return dict(self.state.items)

    @remove_item.validator
    def check_remove(self, ctx: docket.QueryContext, sku: str, quantity: int) -> None:
        if sku not in self.state.items:
            raise ValueError(f"{sku} is not in the cart")

    @docket.query
    def contents(self, ctx: docket.QueryContext) -> dict[str, int]:
        return dict(self.state.items)

    @docket.signal
    def checkout(self, ctx: docket.WorkflowContext) -> None:
        self.checked_out = True


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        client = engine.client
        cart_id = "cart-42"

        async def click(update: object, *args: object) -> dict[str, int]:
            """What the web handler does on each click: update-with-start, lazily."""
            request = await client.update_with_start(
                Cart, cart_id, workflow_id=cart_id, update=update, update_args=args
            )
            result: dict[str, int] = await request.result()
            return result

        print(await click(Cart.add_item, "apple", 2))
        print(await click(Cart.add_item, "pear", 1))
        try:
            await click(Cart.remove_item, "banana", 1)
        except docket.errors.ClientError as exc:
            print(f"Refused: {exc}")
        for _ in range(5):  # enough changes to continue as new once
            await click(Cart.add_item, "plum", 1)
        print(await click(Cart.remove_item, "plum", 2))

        handle = client.get_handle(cart_id)
        assert await handle.query(Cart.contents) == {"apple": 2, "pear": 1, "plum": 3}
        description = await handle.describe()
        print(f"Runs so far: {len(description.run_chain) + 1}; this run's history: "
              f"{description.history_length} events")
        assert len(description.run_chain) == 2, "the cart continued as new twice"

        await handle.signal(Cart.checkout)
        order = await handle.result()
        print(f"Checked out: {order}")
        assert order == "order for cart-42: 6 items"


if __name__ == "__main__":
    asyncio.run(main())
