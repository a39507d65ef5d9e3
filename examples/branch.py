"""Branch: run a number of steps in parallel, chosen at run time, and wait for all of them.

Why it matters: independent work should not queue behind itself. Inside a workflow,
``asyncio.gather`` over ``ctx.step`` calls schedules every branch in one go (one activation)
and resumes the workflow once all of them have finished, durably: a crash in the middle
only re-runs the branches that had not reported yet.
"""

import asyncio
import os
import tempfile
import time

import docket

app = docket.App("branch")

STEP_SECONDS = 0.3


@app.step
async def process_branch(branch: int) -> str:
    await asyncio.sleep(STEP_SECONDS)  # stand-in for real work
    return f"branch {branch} done"


@app.workflow
async def fan_out(ctx: docket.WorkflowContext, total_branches: int) -> list[str]:
    branches = [ctx.step(process_branch, i) for i in range(total_branches)]
    return list(await asyncio.gather(*branches))


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    total = 5
    async with docket.Engine(app, data_dir=data_dir) as engine:
        began = time.monotonic()
        handle = await engine.client.start(fan_out, total, workflow_id="branch")
        results = await handle.result()
        elapsed = time.monotonic() - began
        for line in results:
            print(f"  {line}")
        print(f"{total} branches of {STEP_SECONDS} s each finished in {elapsed:.2f} s")
        assert results == [f"branch {i} done" for i in range(total)]

        # every branch was scheduled by the same activation, before any had finished
        history = await handle.history()
        scheduled = [e for e in history if e.type == "StepScheduled"]
        assert len(scheduled) == total
        assert len({e.activation for e in scheduled}) == 1, "branches were not scheduled together"
        first_done = min(e.event_id for e in history if e.type == "StepCompleted")
        assert all(e.event_id < first_done for e in scheduled)


if __name__ == "__main__":
    asyncio.run(main())
