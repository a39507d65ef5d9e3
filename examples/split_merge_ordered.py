"""Split-merge with ordered futures: fan work out as chunks, then merge the results in the
order the chunks were submitted.

Why it matters: ``asyncio.create_task(ctx.step(...))`` returns at once, so all chunks run
in parallel; awaiting the tasks one by one afterwards then gives a merge whose order is
fixed by the code, not by which worker happened to finish first. That keeps the merge
simple (and the history deterministic) when the order of results matters.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass

import docket

app = docket.App("split_merge_ordered")


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
    # later chunks finish first, to show that the merge order does not depend on it
    await asyncio.sleep(0.05 * (chunk_count - chunk_id))
    items = chunk_id + 1
    return ChunkResult(chunk_id, items=items, total=sum(range(items)))


@app.workflow
async def split_merge(ctx: docket.WorkflowContext, chunk_count: int) -> MergedResult:
    futures = [
        asyncio.create_task(ctx.step(process_chunk, i, chunk_count)) for i in range(chunk_count)
    ]
    merged = MergedResult(chunks=0, items=0, total=0, merge_order=[])
    for future in futures:  # submission order, whatever order the steps finish in
        result = await future
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
            split_merge, chunk_count, workflow_id="split-merge-ordered"
        )
        merged = await handle.result()
        print(f"Merged {merged.chunks} chunks: {merged.items} items, total {merged.total}")
        print(f"Merge order:      {merged.merge_order}")

        history = await handle.history()
        scheduled = [e for e in history if e.type == "StepScheduled"]  # in chunk order
        seq_to_chunk = {e.attributes["seq"]: chunk for chunk, e in enumerate(scheduled)}
        finished = [seq_to_chunk[e.attributes["seq"]] for e in history if e.type == "StepCompleted"]
        print(f"Completion order: {finished}")

        assert isinstance(merged, MergedResult)
        assert merged.merge_order == list(range(chunk_count))
        assert merged.items == sum(i + 1 for i in range(chunk_count))
        assert merged.total == sum(sum(range(i + 1)) for i in range(chunk_count))


if __name__ == "__main__":
    asyncio.run(main())
