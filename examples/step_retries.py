"""Step retries: a failing step is retried by policy and resumes from its last progress.

Why it matters: transient failures (a dropped connection, a restarted dependency) should
not need error handling in the workflow. The step's ``RetryPolicy`` decides when to try
again (initial interval, backoff, cap, attempts), and retries are durable timers, so they
survive restarts. A long step reports progress with ``heartbeat(details)``; the next
attempt reads it back as ``heartbeat_details`` and skips the work already done.
Heartbeats are throttled (about twice per heartbeat timeout), so the recorded progress can
lag the real one by an item or so: work per item must be safe to repeat.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("step_retries")

ITEMS = 10
CRASH_AT = {1: 5, 2: 8}  # attempt -> the item at which that attempt fails
starts: list[tuple[int, int]] = []  # (attempt, first item), for the demo's output
processed: set[int] = set()


@app.step(
    retry=docket.RetryPolicy(
        initial_interval=timedelta(milliseconds=50),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(milliseconds=200),
        maximum_attempts=5,
    ),
    heartbeat_timeout=timedelta(seconds=0.5),
)
async def batch_process(total: int) -> int:
    ctx = docket.step_context()
    first = ctx.heartbeat_details or 0  # progress the previous attempt reported
    starts.append((ctx.attempt, first))
    print(f"  attempt {ctx.attempt}: starting at item {first}")
    for item in range(first, total):
        if CRASH_AT.get(ctx.attempt) == item:
            raise ConnectionError(f"lost the connection at item {item}")
        await asyncio.sleep(0.15)  # process the item (idempotently)
        processed.add(item)
        ctx.heartbeat(item + 1)  # "items before this one are done"
    return ctx.attempt


@app.workflow
async def retrying_batch(ctx: docket.WorkflowContext, total: int) -> int:
    return await ctx.step(batch_process, total)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(retrying_batch, ITEMS, workflow_id="step-retries")
        attempts = await handle.result()
        print(f"Succeeded on attempt {attempts}")

        history = await handle.history()
        for event in history:
            if event.type == "StepAttemptFailed":
                print(f"  recorded failure: {event.attributes['failure']['message']}")
        assert attempts == 3
        assert [a for a, _ in starts] == [1, 2, 3]
        firsts = [f for _, f in starts]
        assert firsts[0] == 0 and firsts[0] < firsts[1] < firsts[2], "did not resume from progress"
        assert processed == set(range(ITEMS))


if __name__ == "__main__":
    asyncio.run(main())
