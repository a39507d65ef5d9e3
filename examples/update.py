"""Update: change a running workflow's state and get an answer back, in one call.

Why it matters: a signal is fire-and-forget and a query only reads; an update does both: it
changes the workflow and returns a value (or an error) to the caller. A validator runs
first, on the live state: a rejected update is refused before anything is recorded, so bad
requests leave no trace in history. Concurrent updates are serialised by the workflow's
single-threaded event loop; here a counter is incremented atomically, and a signal ends it.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("update")


@app.workflow
class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.done)
        await ctx.wait_until(ctx.all_handlers_finished)  # no update is cut off
        return self.count

    @docket.update
    def fetch_and_add(self, ctx: docket.WorkflowContext, delta: int) -> int:
        """Add ``delta`` and return the value before it."""
        previous = self.count
        self.count += delta
        return previous

    @fetch_and_add.validator
    def check_delta(self, ctx: docket.QueryContext, delta: int) -> None:
        if delta < 0:
            raise ValueError(f"delta must not be negative, got {delta}")

    @docket.signal
    def done_signal(self, ctx: docket.WorkflowContext) -> None:
        self.done = True


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(Counter, workflow_id="update-example")
        # concurrent callers each get the value before their own increment: 0, 1, ..., 4
        before = await asyncio.gather(
            *(handle.execute_update(Counter.fetch_and_add, 1) for _ in range(5))
        )
        print(f"Values seen by five concurrent increments: {sorted(before)}")
        assert sorted(before) == [0, 1, 2, 3, 4]

        try:
            await handle.execute_update(Counter.fetch_and_add, -3)
        except docket.errors.ClientError as exc:
            print(f"Rejected by the validator: {exc}")
        else:
            raise AssertionError("a negative delta must be rejected")

        await handle.signal(Counter.done_signal)
        result = await handle.result()
        print(f"Final count: {result}")
        assert result == 5
        kinds = [event.type for event in await handle.history()]
        assert kinds.count("UpdateAccepted") == 5, "the rejected update left no trace"


if __name__ == "__main__":
    asyncio.run(main())
