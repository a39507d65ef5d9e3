"""The app the user-topic crash tests kill: a workflow that emits a record after each step,
and a signal source whose records add to per-key tallies.

Run as a script, like `app_under_test.py` (the harness's Runner starts it in its place)::

    python tests/crash/user_topics_under_test.py DATA_DIR
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import docket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_under_test import _record_attempt  # noqa: E402  # the step log the harness reads

app = docket.App("crash-user-topics")
PER_KEY = 10  # records each tally waits for


@app.step
async def square(index: int) -> int:
    _record_attempt()
    await asyncio.sleep(0.005)
    return index * index


@app.workflow
async def emit_per_step(ctx: docket.WorkflowContext, n: int) -> int:
    """``n`` steps, each followed by a record to topic ``crash-events``; returns the sum."""
    total = 0
    for index in range(1, n + 1):
        value = await ctx.step(square, index)
        ctx.emit("crash-events", {"index": index, "square": value}, key=f"k{index}")
        total += value
    return total


@app.workflow
class Tally:
    def __init__(self) -> None:
        self.values: list[int] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, expected: int) -> list[int]:
        await ctx.wait_until(lambda: len(self.values) >= expected)
        return self.values

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, value: int) -> None:
        self.values.append(value)


app.signal_source("crash-payments", workflow=Tally, signal=Tally.add, start_args=(PER_KEY,))


async def main(data_dir: str) -> None:
    """As `app_under_test.main`: an engine until killed or SIGTERM, READY once started."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with docket.Engine(app, data_dir=data_dir) as engine:
        print("READY", flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(engine.wait_stopped())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
