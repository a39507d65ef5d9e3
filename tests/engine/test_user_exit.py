"""sys.exit() in user code fails that code, never the engine (docket/user_code.py).

SystemExit escapes ``except Exception`` and, from an asyncio task, the event loop itself:
from a step (argparse on bad input, say) it ended the engine's process, and every
restart's, since the task was delivered again. Workflow code itself is covered by
``test_stopped_executions.py::test_sys_exit_in_workflow_code_stops_that_execution_not_the_engine``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import docket
from docket.errors import ClientError, StepError

app = docket.App("user-exit")
ONCE = docket.RetryPolicy(maximum_attempts=1)


@app.step(retry=ONCE)
async def exits_async() -> str:
    sys.exit(4)


@app.step(retry=ONCE, start_to_close_timeout=timedelta(seconds=10))
async def exits_async_timed() -> str:  # runs in a task of its own (for its deadline)
    sys.exit(5)


@app.step(retry=ONCE)
def parses_bad_flags() -> str:  # in the worker's thread pool
    argparse.ArgumentParser(prog="tool").parse_args(["--no-such-flag"])
    return "parsed"


@app.step(retry=docket.RetryPolicy(maximum_attempts=2, initial_interval=timedelta(milliseconds=10)))
def exits_then_works(ctx_marker: str) -> str:
    if docket.step_context().attempt == 1:
        raise SystemExit("first attempt")
    return f"attempt 2 of {ctx_marker}"


@app.workflow
async def calls(ctx: docket.WorkflowContext, step: str, local: bool = False) -> str:
    try:
        if local:
            return await ctx.local_step(step)
        return await ctx.step(step)
    except StepError as exc:
        cause = exc.__cause__
        assert isinstance(cause, docket.errors.ExecutionFailure)
        return f"{cause.type_name}: {cause}"


@app.workflow
async def retried(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(exits_then_works, "x")


@app.workflow
class Quitter:
    def __init__(self) -> None:
        self.value = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: self.value > 0)
        return self.value

    @docket.signal
    def set(self, ctx: docket.WorkflowContext, value: int) -> None:
        self.value = value

    @docket.query
    def quit(self, ctx: docket.QueryContext) -> int:
        sys.exit(6)

    @docket.update
    def bump(self, ctx: docket.WorkflowContext, by: int) -> int:
        self.value += by
        return self.value

    @bump.validator
    def _check(self, ctx: docket.QueryContext, by: int) -> None:
        sys.exit(7)


@app.workflow
class Gate:
    def __init__(self) -> None:
        self.value = 0

    def _open(self) -> bool:
        if self.value == 99:
            sys.exit(9)
        return self.value > 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(self._open)
        return self.value

    @docket.signal
    def set(self, ctx: docket.WorkflowContext, value: int) -> None:
        self.value = value


async def test_a_wait_until_predicate_calling_sys_exit_on_a_later_check_stops_that_execution(
    tmp_path: Path,
) -> None:
    """Later checks run outside the workflow's loop, where SystemExit was not converted:
    it ended the engine's process (found by helper-32's review)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Gate)
        with pytest.raises(ClientError, match=r"is stopped .*predicate raised SystemExit\(9\)"):
            await handle.signal("set", 99)
        assert await (await engine.client.start(hello)).result(timeout=10) == "hello"


EXIT_IN_INIT = []  # set once registered: registration constructs the class once, to check it


@app.workflow
class BadInit:
    def __init__(self) -> None:
        if EXIT_IN_INIT:
            sys.exit(8)

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        return "never"


@app.workflow
async def hello(ctx: docket.WorkflowContext) -> str:
    return "hello"


@pytest.mark.parametrize(
    ("step", "local", "code"),
    [
        ("exits_async", False, "4"),
        ("exits_async_timed", False, "5"),
        ("parses_bad_flags", False, "2"),
        ("exits_async", True, "4"),
        ("parses_bad_flags", True, "2"),
    ],
)
async def test_a_step_calling_sys_exit_fails_that_attempt(
    tmp_path: Path, step: str, local: bool, code: str
) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(calls, step, local)
        outcome = await handle.result(timeout=20)
        assert outcome.startswith(f"SystemExit: {'local ' if local else ''}step {step!r} raised SystemExit({code})")
        assert await (await engine.client.start(hello)).result(timeout=10) == "hello"


async def test_a_step_calling_sys_exit_is_retried_by_its_policy(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        assert await (await engine.client.start(retried)).result(timeout=20) == "attempt 2 of x"


async def test_query_handlers_and_update_validators_calling_sys_exit_fail_the_request(
    tmp_path: Path,
) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(Quitter, workflow_id="q-1")
        with pytest.raises(ClientError, match=r"query 'quit' raised SystemExit\(6\)"):
            await handle.query("quit")
        with pytest.raises(ClientError, match=r"the validator of update 'bump' raised SystemExit\(7\)"):
            await handle.execute_update("bump", 1)
        await handle.signal("set", 3)
        assert await handle.result(timeout=10) == 3  # the run went on untouched


async def test_a_workflow_class_whose_init_calls_sys_exit_stops_that_execution(
    tmp_path: Path,
) -> None:
    EXIT_IN_INIT.append(True)
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        with pytest.raises(ClientError, match=r"is stopped .*workflow 'BadInit' raised SystemExit\(8\)"):
            await engine.client.start(BadInit, workflow_id="bad-init")
        assert await (await engine.client.start(hello)).result(timeout=10) == "hello"
