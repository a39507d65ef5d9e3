"""Split-merge out of order: fan work out as chunks and merge each result the moment its
chunk finishes.

Why it matters: when chunks take uneven time, merging in submission order leaves finished
results waiting behind slow ones. ``asyncio.as_completed`` (Temporal's Selector) hands the
workflow each result as it arrives. It stays deterministic: the arrival order is what the
history recorded, so a replay merges in exactly the same order.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass

import docket

app = docket.App("split_merge_as_completed")


@dataclass
class ChunkResult:
    chunk_id: int
    items: int
    total: int


@dataclass
class MergedResult:
    chunks: int
    items: int
    total: int
    merge_order: list[int]


@app.step
async def process_chunk(chunk_id: int, chunk_count: int) -> ChunkResult:
    # later chunks finish first, so completion order differs from submission order
    await asyncio.sleep(0.1 * (chunk_count - chunk_id))
    items = chunk_id + 1
    return ChunkResult(chunk_id, items=items, total=sum(range(items)))


@app.workflow
async def split_merge(ctx: docket.WorkflowContext, chunk_count: int) -> MergedResult:
    # Start the steps as tasks first: as_completed() puts what it is given in a set, so bare
    # coroutines would be started (and numbered in history) in an arbitrary order.
    pending = [
        asyncio.create_task(ctx.step(process_chunk, i, chunk_count)) for i in range(chunk_count)
    ]
    merged = MergedResult(chunks=0, items=0, total=0, merge_order=[])
    for next_done in asyncio.as_completed(pending):  # whichever chunk finishes next
        result = await next_done
        merged.chunks += 1
        merged.items += result.items
        merged.total += result.total
        merged.merge_order.append(result.chunk_id)
    return merged


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    chunk_count = 5
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(
            split_merge, chunk_count, workflow_id="split-merge-as-completed"
        )
        merged = await handle.result()
        print(f"Merged {merged.chunks} chunks: {merged.items} items, total {merged.total}")
        print(f"Merge order:      {merged.merge_order}")

        history = await handle.history()
        scheduled = [e for e in history if e.type == "StepScheduled"]  # in chunk order
        chunk_of = {e.attributes["seq"]: chunk for chunk, e in enumerate(scheduled)}
        finished = [chunk_of[e.attributes["seq"]] for e in history if e.type == "StepCompleted"]
        print(f"Completion order: {finished} (as recorded in history)")

        assert merged.merge_order == finished, "results were not merged as they completed"
        assert sorted(merged.merge_order) == list(range(chunk_count))
        assert merged.items == sum(i + 1 for i in range(chunk_count))
        assert merged.total == sum(sum(range(i + 1)) for i in range(chunk_count))


if __name__ == "__main__":
    asyncio.run(main())
