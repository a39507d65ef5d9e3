"""A crash between a side effect's run and the append of its batch: the side effect ran,
its SideEffectRecorded did not reach the log. After the restart the activation runs again,
so does the side effect, and the workflow completes with the outcome recorded then; one
that reached the log before the crash never runs again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from app_under_test import app, tickets_and_steps
from crash_harness import KILLED, Runner, assert_history_sound

import docket
from docket.codec.payload import from_payload

ROUNDS = 5


def side_effect_runs(runner: Runner) -> int:
    path = runner.step_log.with_name(runner.step_log.name + ".side_effects")
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("point", ["before_append", "after_append_before_writebatch"])
async def test_a_side_effect_cut_off_by_a_crash_runs_again(
    make_runner: Callable[[str], Runner], point: str
) -> None:
    runner = make_runner("embedded")
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            # batch 4 handles step 3's completion: it runs the 4th side effect, and dies
            await runner.spawn(fault=point, after=3)
            handle = await client_engine.client.start(tickets_and_steps, ROUNDS, workflow_id="wf")
            assert await runner.wait_exit() == KILLED, runner.output()
            crash = runner.snapshot("wf")
            recorded = [e for e in crash.events if e["body"][0] == "SideEffectRecorded"]
            assert side_effect_runs(runner) == 4
            in_log = 4 if point == "after_append_before_writebatch" else 3
            assert len(recorded) == in_log

            await runner.spawn()
            tickets = await handle.result(timeout=30)
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "wf", await handle.history())
            assert kinds.count("SideEffectRecorded") == ROUNDS
            final = runner.snapshot("wf")
            drawn = [
                from_payload(e["body"][1]["result"])
                for e in final.events
                if e["body"][0] == "SideEffectRecorded"
            ]
            assert tickets == drawn  # the code got what history holds
            reran = 1 if in_log == 3 else 0  # the 4th ran again only if it was not recorded
            assert side_effect_runs(runner) == ROUNDS + reran
            assert tickets == [1, 2, 3, 4 + reran, 5 + reran]
    finally:
        runner.cleanup()
