"""Batch sliding window: process many records with a bounded number of child workflows.

Why it matters: a batch of thousands of records should not start thousands of workflows
at once, nor wait for slow stragglers in fixed chunks. The parent keeps a window of at
most ``WINDOW`` record-processor children running; each child signals the parent when it
is done (child to parent), and the parent starts the next one as soon as a slot frees up.
Children are started with ``ParentClosePolicy.ABANDON``, so they finish even while the
parent switches runs: every ``RECORDS_PER_RUN`` records the parent continues as new,
carrying the records still in flight, so its history stays bounded however big the batch.
A query shows progress at any moment.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass, field

import docket

app = docket.App("batch_sliding_window")

WINDOW = 3
RECORDS_PER_RUN = 5


@dataclass
class Progress:
    next_record: int = 0
    in_flight: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)


@app.step
async def process_record(record: int) -> None:
    await asyncio.sleep(0.01 * (record % 4))  # records take different times


@app.workflow
async def record_processor(ctx: docket.WorkflowContext, record: int) -> None:
    await ctx.step(process_record, record)
    assert ctx.parent is not None
    await ctx.parent.signal("record_done", record)  # child to parent


@app.workflow
class SlidingWindow:
    def __init__(self) -> None:
        self.progress = Progress()

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, total: int, progress: Progress | None = None) -> int:
        self.progress = progress or Progress()
        started_this_run = 0
        def slot_free() -> bool:
            return len(self.progress.in_flight) < WINDOW and self.progress.next_record < total

        while len(self.progress.done) < total:
            await ctx.wait_until(lambda: slot_free() or len(self.progress.done) >= total)
            if slot_free():
                if started_this_run == RECORDS_PER_RUN:
                    await ctx.wait_until(ctx.all_handlers_finished)
                    ctx.continue_as_new(total, self.progress)  # in-flight children keep going
                record = self.progress.next_record
                self.progress.next_record += 1
                self.progress.in_flight.append(record)
                await ctx.start_child(
                    record_processor,
                    record,
                    workflow_id=f"{ctx.workflow_id}/record-{record}",
                    parent_close_policy=docket.ParentClosePolicy.ABANDON,
                )
                started_this_run += 1
        return len(self.progress.done)

    @docket.signal
    def record_done(self, ctx: docket.WorkflowContext, record: int) -> None:
        if record in self.progress.in_flight:
            self.progress.in_flight.remove(record)
            self.progress.done.append(record)

    @docket.query
    def state(self, ctx: docket.QueryContext) -> dict[str, int]:
        return {"done": len(self.progress.done), "in_flight": len(self.progress.in_flight)}


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        total = 14
        handle = await engine.client.start(SlidingWindow, total, workflow_id="batch")
        await asyncio.sleep(0.1)
        print(f"Progress meanwhile: {await handle.query(SlidingWindow.state)}")
        processed = await handle.result(timeout=30)
        runs = len((await handle.describe()).run_chain) + 1
        print(f"Processed {processed} records over {runs} runs of the parent")
        assert processed == total and runs >= 2
        children = [d for d in await engine.client.list(workflow_type="record_processor")]
        assert len(children) == total and {d.status for d in children} == {"completed"}


if __name__ == "__main__":
    asyncio.run(main())
