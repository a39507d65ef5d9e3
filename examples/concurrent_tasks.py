"""Concurrent tasks: several independent sequences of steps running side by side.

Why it matters: real workflows often run a few multi-step pipelines at once. In Docket a
branch is a plain ``asyncio.create_task`` on the workflow's deterministic event loop (no
special "workflow goroutine" API): tasks interleave in an order fixed by history, so the
code can be replayed. To prove it, this engine keeps no workflow in memory
(``workflow_cache_size=0``): every activation re-runs the code from its history.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("concurrent_tasks")


@app.step
async def step1(branch: int) -> str:
    await asyncio.sleep(0.05)
    return f"branch {branch}: step1"


@app.step
async def step2(previous: str) -> str:
    await asyncio.sleep(0.05)
    return f"{previous}, step2"


@app.workflow
async def concurrent_sequences(ctx: docket.WorkflowContext, parallelism: int) -> list[str]:
    async def sequence(branch: int) -> str:
        first = await ctx.step(step1, branch)
        return await ctx.step(step2, first)

    tasks = [asyncio.create_task(sequence(i)) for i in range(parallelism)]
    return list(await asyncio.gather(*tasks))  # wait for every branch


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    parallelism = 4
    async with docket.Engine(app, data_dir=data_dir, workflow_cache_size=0) as engine:
        handle = await engine.client.start(
            concurrent_sequences, parallelism, workflow_id="concurrent-tasks"
        )
        results = await handle.result()
        for line in results:
            print(f"  {line}")
        assert results == [f"branch {i}: step1, step2" for i in range(parallelism)]

        history = await handle.history()
        first_wave = [e for e in history if e.type == "StepScheduled" and e.activation == 1]
        print(f"{len(first_wave)} branches started together; history has {len(history)} events")
        assert [e.attributes["step_name"] for e in first_wave] == ["step1"] * parallelism


if __name__ == "__main__":
    asyncio.run(main())
