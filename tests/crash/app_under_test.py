"""The app the crash tests kill: a 20-step sequential workflow and a sleep-then-step workflow.

Run as a script, it is the process under test::

    python tests/crash/app_under_test.py DATA_DIR

It runs a full `docket.Engine` (processor, timer service, worker) on ``DATA_DIR``, prints
``READY`` once started, and runs until it is killed, or until SIGTERM/SIGINT, which stop the
engine cleanly (exit code 0). The tests start workflows from their own process through a
client-only engine, so this process starts nothing itself.

Every step attempt appends one line ``<workflow_id> <seq> <attempt>`` to the file named by
``CRASH_STEP_LOG`` *before* doing its work, with one ``write`` on an ``O_APPEND`` descriptor:
the line reaches the kernel at once, so it survives ``kill -9`` of this process and the test
can count how many times every step began, across crashes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import docket

app = docket.App("crash")

STEP_SECONDS = 0.01
STEP_LOG_ENV = "CRASH_STEP_LOG"


def _record_attempt() -> None:
    ctx = docket.step_context()
    line = f"{ctx.workflow_id} {ctx.seq} {ctx.attempt}\n".encode()
    fd = os.open(os.environ[STEP_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.step
async def record_step(index: int) -> int:
    _record_attempt()
    await asyncio.sleep(STEP_SECONDS)
    return index * index


@app.step
async def slow_step(seconds: float) -> float:
    _record_attempt()
    await asyncio.sleep(seconds)
    return seconds


@app.workflow
async def twenty_steps(ctx: docket.WorkflowContext, n: int) -> int:
    """``n`` steps, one after the other; returns the sum of squares 1..n."""
    total = 0
    for index in range(1, n + 1):
        total += await ctx.step(record_step, index)
    return total


def draw_ticket() -> int:
    """A side effect: appends a line to ``$CRASH_STEP_LOG.side_effects`` (as steps do to the
    step log) and returns that file's line count, which tells each run of it apart."""
    path = os.environ[STEP_LOG_ENV] + ".side_effects"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"ran\n")
    finally:
        os.close(fd)
    with open(path, "rb") as lines:
        return len(lines.read().splitlines())


@app.workflow
async def tickets_and_steps(ctx: docket.WorkflowContext, n: int) -> list[int]:
    """``n`` times a side effect then a step (``record_step(i)``): the tickets drawn."""
    tickets = []
    for index in range(1, n + 1):
        tickets.append(await ctx.side_effect(draw_ticket))
        await ctx.step(record_step, index)
    return tickets


@app.workflow
async def sleep_then_step(ctx: docket.WorkflowContext, seconds: float) -> int:
    """A durable sleep, then one step (``record_step(7)``, so the result is 49)."""
    await ctx.sleep(seconds)
    return await ctx.step(record_step, 7)


@app.workflow
async def slow_then_fast(ctx: docket.WorkflowContext, seconds: float) -> float:
    """A step that takes ``seconds``, then ``record_step(3)``: returns ``seconds + 9``."""
    slow = await ctx.step(slow_step, seconds)
    return slow + await ctx.step(record_step, 3)


@app.workflow
async def chained_steps(ctx: docket.WorkflowContext, done: int, total: int) -> int:
    """Two steps per run, continuing as new until ``total`` steps ran; returns ``total``."""
    for _ in range(2):
        if done >= total:
            return done
        await ctx.step(record_step, done)
        done += 1
    ctx.continue_as_new(done, total)


@app.workflow
async def child_steps(ctx: docket.WorkflowContext, first: int, count: int) -> int:
    """A child: ``count`` steps from ``first``; tells its parent, returns the sum of squares."""
    total = 0
    for index in range(first, first + count):
        total += await ctx.step(record_step, index)
    assert ctx.parent is not None
    await ctx.parent.signal("child_done", ctx.workflow_id)
    return total


@app.workflow
async def parent_of_three(ctx: docket.WorkflowContext) -> list[int]:
    """Three children of four steps each, side by side; and their three signals."""
    children = [
        await ctx.start_child(child_steps, 4 * i + 1, 4, workflow_id=f"{ctx.workflow_id}-c{i}")
        for i in range(3)
    ]
    results = list(await asyncio.gather(*children))
    heard = {await ctx.wait_for_signal("child_done") for _ in range(3)}
    assert heard == {f"{ctx.workflow_id}-c{i}" for i in range(3)}
    return results


@app.workflow
class Tally:
    """Adds the signals it receives until it has ``expected`` of them; an update that awaits
    a slow step adds too (for the message crash tests)."""

    def __init__(self) -> None:
        self.received: list[int] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, expected: int) -> list[int]:
        await ctx.wait_until(lambda: len(self.received) >= expected)
        await ctx.wait_until(ctx.all_handlers_finished)
        return self.received

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, value: int) -> None:
        self.received.append(value)

    @docket.update
    async def add_slowly(self, ctx: docket.WorkflowContext, value: int, seconds: float) -> int:
        await ctx.step(slow_step, seconds)
        self.received.append(value)
        return len(self.received)


async def main(data_dir: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = docket.Engine(app, data_dir=data_dir)
    await engine.start()
    print("READY", flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(engine.wait_stopped())
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        failed.cancel()
        await engine.stop()
    if failed.done() and not failed.cancelled() and failed.exception() is not None:
        raise failed.exception()  # type: ignore[misc]
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
