"""SIGTERM stops the engine process cleanly (exit 0) and a restart loses nothing.

The runner's handler calls ``engine.stop()``: the processor finishes its batch, the worker
finishes the steps in hand and reports them, partitions are released. So at the stop every
step that began has its report in the log, and after the restart no step runs twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from app_under_test import app, sleep_then_step, slow_then_fast, twenty_steps
from conftest import BACKENDS
from crash_harness import Runner, assert_history_sound, runs_per_seq

import docket

STEPS = 20
SUM_OF_SQUARES = sum(i * i for i in range(1, STEPS + 1))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigterm_mid_workflow_and_mid_sleep_then_restart(
    make_runner: Callable[[str], Runner], backend: str
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            client = client_engine.client
            await runner.spawn()
            steps = await client.start(twenty_steps, STEPS, workflow_id="wf")
            sleepy = await client.start(sleep_then_step, 1.0, workflow_id="sleepy")
            deadline = time.monotonic() + 20
            while len(runner.step_lines()) < 6:
                assert time.monotonic() < deadline, runner.output()
                await asyncio.sleep(0.005)
            assert await runner.terminate() == 0, runner.output()
            assert "STOPPED" in runner.output()

            stop = runner.snapshot("wf")
            assert not stop.closed() and 0 < len(stop.started_seqs()) < STEPS
            # the step in hand was finished and reported before the process exited
            # (handed to the processor and recorded, or appended to commands at shutdown)
            settled = stop.reported_seqs() | stop.completed_seqs()
            assert stop.started_seqs() == settled, (stop.lines, stop.commands)
            sleeping = runner.snapshot("sleepy")
            assert "TimerStarted" in sleeping.kinds() and not sleeping.lines

            await asyncio.sleep(1.0)  # the sleep comes due while the engine is stopped
            await runner.spawn()
            assert await steps.result(timeout=30) == SUM_OF_SQUARES
            assert await sleepy.result(timeout=30) == 49
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "wf", await steps.history())
            assert kinds.count("StepCompleted") == STEPS
            kinds = assert_history_sound(runner, "sleepy", await sleepy.history())
            assert kinds.count("TimerFired") == 1
            assert runs_per_seq(runner.snapshot("wf").lines) == {
                seq: 1 for seq in range(1, STEPS + 1)
            }
            assert runs_per_seq(runner.snapshot("sleepy").lines) == {2: 1}
    finally:
        runner.cleanup()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigterm_while_a_step_runs_finishes_and_reports_it(
    make_runner: Callable[[str], Runner], backend: str
) -> None:
    """SIGTERM 0.3 s into a 1.5 s step: the engine waits for the step, reports it, exits 0;
    after the restart the step is not run again and the workflow goes on."""
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(slow_then_fast, 1.5, workflow_id="slow")
            await runner.wait_step_lines(1)
            await asyncio.sleep(0.3)
            assert await runner.terminate() == 0, runner.output()

            stop = runner.snapshot("slow")
            assert stop.started_seqs() == stop.reported_seqs() == {1}, stop.summary()

            await runner.spawn()
            assert await handle.result(timeout=30) == 1.5 + 9
            assert await runner.terminate() == 0, runner.output()
            kinds = assert_history_sound(runner, "slow", await handle.history())
            assert kinds.count("StepCompleted") == 2 and "StepAttemptFailed" not in kinds
            assert runs_per_seq(runner.snapshot("slow").lines) == {1: 1, 2: 1}
    finally:
        runner.cleanup()
