"""An app for the CLI tests, loaded with -A cli_app:app (tests put this folder on the path)."""

import asyncio
import os
import time
from pathlib import Path

import docket

app = docket.App("cli")


@app.step
def shout(text: str) -> str:
    return text.upper() + "!"


@app.step
async def slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.workflow
async def greet(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(shout, f"hello {name}")


@app.workflow
async def wait_and_shout(ctx: docket.WorkflowContext, seconds: float) -> str:
    await ctx.step(slow, seconds)
    return await ctx.step(shout, "done")


@app.workflow
class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.done)
        return self.count

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, amount: int) -> None:
        self.count += amount

    @docket.signal
    def finish(self, ctx: docket.WorkflowContext) -> None:
        self.done = True

    @docket.query
    def value(self, ctx: docket.QueryContext) -> int:
        return self.count

    @docket.update
    def set_to(self, ctx: docket.WorkflowContext, value: int) -> int:
        previous, self.count = self.count, value
        return previous

    @set_to.validator
    def check_set_to(self, ctx: docket.QueryContext, value: int) -> None:
        if value < 0:
            raise ValueError(f"value must not be negative, got {value}")


@app.step
def needs_approval(token_file: str) -> str:
    """Hands its task token out (to a file the test reads) and completes asynchronously."""
    Path(token_file).write_text(docket.step_context().task_token)
    docket.step_context().complete_async()


@app.workflow
async def approve(ctx: docket.WorkflowContext, token_file: str) -> str:
    return await ctx.step(needs_approval, token_file)


@app.step
def journaled(journal: str, seconds: float) -> None:
    """Writes when each attempt begins and ends (with its pid) to the file it is given."""
    with Path(journal).open("a") as out:
        out.write(f"begin {os.getpid()}\n")
    time.sleep(seconds)
    with Path(journal).open("a") as out:
        out.write(f"end {os.getpid()}\n")


@app.workflow
async def journal_step(ctx: docket.WorkflowContext, journal: str, seconds: float) -> None:
    await ctx.step(journaled, journal, seconds)
