"""Cancellation: stop a running workflow from outside and let it clean up first.

Why it matters: orders get withdrawn, jobs get aborted. ``handle.cancel()`` raises
``asyncio.CancelledError`` inside the workflow at its current await; the code catches it,
runs a cleanup step (steps awaited after the cancellation still run, durably), and lets
the cancellation finish. The history records who cancelled it and why.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("cancellation")
log: list[str] = []


@app.step
async def process_batch(n: int) -> str:
    log.append(f"processed batch {n}")
    return f"batch {n}"


@app.step
async def cleanup(reason: str) -> None:
    log.append(f"cleaned up ({reason})")


@app.workflow
async def long_job(ctx: docket.WorkflowContext) -> list[str]:
    done: list[str] = []
    try:
        for n in range(1000):
            done.append(await ctx.step(process_batch, n))
            await ctx.sleep(0.05)
    except asyncio.CancelledError:
        await ctx.step(cleanup, f"stopped after {len(done)} batches")  # still runs, durably
        raise  # end as cancelled
    return done


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(long_job, workflow_id="long-job")
        while len(log) < 3:
            await asyncio.sleep(0.02)
        await handle.cancel("operator pressed stop")
        try:
            await handle.result()
            raise AssertionError("the job should have been cancelled")
        except docket.WorkflowFailedError as failed:
            print(f"Cancelled: {failed.__cause__}")
            assert isinstance(failed.__cause__, docket.errors.CancelledError)
        print("\n".join(log))
        assert log[-1].startswith("cleaned up (stopped after")
        description = await handle.describe()
        kinds = [event.type for event in await handle.history()]
        print(f"Status: {description.status}; history ends with {kinds[-3:]}")
        assert description.status == "cancelled" and "CancelRequested" in kinds


if __name__ == "__main__":
    asyncio.run(main())
