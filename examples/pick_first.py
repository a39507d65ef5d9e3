"""Pick first: race two ways of getting an answer and go on with whichever finishes first.

Why it matters: when several sources can answer (replicas, vendors, algorithms), racing
them bounds latency by the fastest one. ``asyncio.wait(..., return_when=FIRST_COMPLETED)``
works in workflow code, and what it decides is recorded: a replay picks the same winner.

Cancelling the losing task releases the workflow at once, records ``StepCancelRequested``
in history and tells the worker running the loser to stop: an async step is cancelled at its
current ``await``, a sync step sees `docket.errors.CancelledError` at its next heartbeat.
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
        task.cancel()  # the workflow stops waiting, and the worker stops the step
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

        # The loser was told to stop: it never reaches its end, and its history says why.
        await asyncio.sleep(1.2)  # longer than the slow replica would have taken
        print(f"Steps finished after the slow one's time:   {finished}")
        assert finished == ["fast-replica"], "the losing step should have been cancelled"
        history = await handle.history()
        print(f"History: {', '.join(e.type for e in history)}")
        assert [e.type for e in history].count("StepCompleted") == 1
        assert "StepCancelRequested" in [e.type for e in history]
        assert history[-1].type == "WorkflowCompleted"

if __name__ == "__main__":
    asyncio.run(main())
