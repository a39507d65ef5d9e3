"""Pick first: race two ways of getting an answer and go on with whichever finishes first.

Why it matters: when several sources can answer (replicas, vendors, algorithms), racing
them bounds latency by the fastest one. ``asyncio.wait(..., return_when=FIRST_COMPLETED)``
works in workflow code, and what it decides is recorded: a replay picks the same winner.

Limitation, shown honestly here: Docket does not yet deliver cancellation to a step that is
already running. Cancelling the losing task releases the workflow at once (it completes
with the winner's answer), but the losing step runs to its end on the worker and its late
result is discarded.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("pick_first")

finished: list[str] = []  # which steps ran to the end, in order (same process, for the demo)


@app.step(heartbeat_timeout=timedelta(seconds=2))
async def search(source: str, seconds: float) -> str:
    """Pretend to look something up in ``source``, taking ``seconds``."""
    steps = max(1, round(seconds / 0.05))
    for done in range(steps):
        await asyncio.sleep(seconds / steps)
        docket.step_context().heartbeat(done + 1)  # progress, and proof of life
    finished.append(source)
    return f"answer from {source}"


@app.workflow
async def pick_first(ctx: docket.WorkflowContext) -> str:
    racers = [
        asyncio.create_task(ctx.step(search, "fast-replica", 0.1)),
        asyncio.create_task(ctx.step(search, "slow-replica", 1.0)),
    ]
    done, pending = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()  # the workflow stops waiting; the step itself keeps running (see above)
    # iterate the list, not the set, so that a tie is broken the same way on every replay
    winner = next(task for task in racers if task in done)
    return winner.result()


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(pick_first, workflow_id="pick-first")
        result = await handle.result()
        print(f"Result: {result}")
        print(f"Steps finished when the workflow completed: {finished}")
        assert result == "answer from fast-replica"
        assert finished == ["fast-replica"], "the workflow should not wait for the slow replica"

        # The loser is still running on the worker; when it reports, nothing is recorded.
        while len(finished) < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # time for its late report to reach the processor
        print(f"Steps finished a moment later:              {finished}")
        history = await handle.history()
        print(f"History: {', '.join(e.type for e in history)}")
        assert [e.type for e in history].count("StepCompleted") == 1
        assert history[-1].type == "WorkflowCompleted"


if __name__ == "__main__":
    asyncio.run(main())
