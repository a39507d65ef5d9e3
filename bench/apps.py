"""The workflows and steps every workload runs: one App, registered at import."""

from __future__ import annotations

import time

import docket

app = docket.App("bench")


@app.step
async def greet(name: str) -> str:
    return f"Hello, {name}"


@app.step
async def inc(x: int) -> int:
    return x + 1


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(greet, name)


@app.workflow
async def chain(ctx: docket.WorkflowContext, steps: int) -> int:
    x = 0
    for _ in range(steps):
        x = await ctx.step(inc, x)
    return x


@app.workflow
async def sleeper(ctx: docket.WorkflowContext, seconds: float) -> list[float]:
    """Sleep durably and report, in epoch seconds, [due, woke, observed]:

    - ``due``: when the timer is due. The engine computes the timer's fire time from the
      activation's clock (``loop.time()``, which ``ctx.now()`` reads) plus the duration, so
      this is exactly the ``fire_at`` recorded in the TimerStarted event.
    - ``woke``: ``ctx.now()`` right after the sleep returns: the processor's clock reading
      at the start of the poll batch that handled the TimerFired command.
    - ``observed``: the wall clock read by a recorded side effect right after the wake-up,
      i.e. when the workflow code actually ran again (``time.time`` through
      ``ctx.side_effect`` keeps the workflow deterministic: replays return the recorded
      value).
    """
    due = ctx.now().timestamp() + seconds
    await ctx.sleep(seconds)
    woke = ctx.now().timestamp()
    observed = await ctx.side_effect(time.time)
    return [due, woke, observed]


@app.workflow
class SignalSink:
    """W4 signals: one execution that takes ``add`` signals until ``close``, then returns
    what arrived (in arrival order, so the bench can check exactly-once and, when sent one
    at a time, the order). It stays open until told, so the count is read from the live
    instance, not by replaying a closed run's history."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.closed = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> list[int]:
        await ctx.wait_until(lambda: self.closed)
        return self.items

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, item: int) -> None:
        self.items.append(item)

    @docket.signal
    def close(self, ctx: docket.WorkflowContext) -> None:
        self.closed = True

    @docket.query
    def count(self, ctx: docket.QueryContext) -> int:
        return len(self.items)


@app.workflow
class Progress:
    """Query target: runs ``steps`` steps (so the execution has a real history and a live
    instance), then stays open until ``finish``; ``progress`` reads how far it got."""

    def __init__(self) -> None:
        self.done = 0
        self.finished = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, steps: int) -> int:
        for _ in range(steps):
            self.done = await ctx.step(inc, self.done)
        await ctx.wait_until(lambda: self.finished)
        return self.done

    @docket.signal
    def finish(self, ctx: docket.WorkflowContext) -> None:
        self.finished = True

    @docket.query
    def progress(self, ctx: docket.QueryContext) -> int:
        return self.done
