"""Periodic polling through a child workflow that continues as new.

Why it matters: when one poll is a sequence of steps, or its arguments change between
attempts, a retry policy is not enough. Here a child workflow runs the poll sequence,
sleeps durably between attempts, and continues as new every few attempts so its history
stays small however long the polling lasts. The parent just waits for the child's
result: it never sees the child's runs come and go.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("polling_periodic")

ATTEMPTS_PER_RUN = 3
calls = {"count": 0}  # the "service" is ready on its 7th call (same process, for the demo)


@app.step
async def check_service(attempt: int) -> bool:
    calls["count"] += 1
    return calls["count"] >= 7


@app.step
async def fetch_report(attempt: int) -> str:
    return f"report ready after {attempt} attempts"


@app.workflow
async def poll_child(ctx: docket.WorkflowContext, attempt: int, interval_s: float) -> str:
    for _ in range(ATTEMPTS_PER_RUN):
        attempt += 1
        if await ctx.step(check_service, attempt):  # a poll is a sequence of steps
            return await ctx.step(fetch_report, attempt)
        await ctx.sleep(interval_s)
    ctx.continue_as_new(attempt, interval_s)  # fresh history; the parent keeps waiting


@app.workflow
async def poll_parent(ctx: docket.WorkflowContext) -> str:
    return await ctx.child(poll_child, 0, 0.05, workflow_id="report-poller")


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(poll_parent, workflow_id="poll-parent")
        result = await handle.result(timeout=20)
        print(f"Result: {result}")
        assert result == "report ready after 7 attempts"
        child = await engine.client.describe("report-poller")
        print(f"The poller ran {len(child.run_chain) + 1} runs; the last has {child.history_length} events")
        assert len(child.run_chain) == 2


if __name__ == "__main__":
    asyncio.run(main())
