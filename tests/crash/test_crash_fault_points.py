"""Crash at every named fault point in a real engine process, restart it, check the guarantees.

The runner (`app_under_test.py`) is a separate process with ``DOCKET_FAULT=<point>``; it
``os._exit(137)``s at that point after ``DOCKET_FAULT_AFTER`` passes, i.e. mid-workflow. The
test process is only a client (``Engine(processor=False, worker=False)``): its start command
and its wait for the result go through the log and survive the crash. After a restart
without the fault the workflow must finish with the right result, the history must have
event ids 1..n with no gap or duplicate (in the store and in the history topic), and:

- a step whose StepCompleted was in history at the crash never runs again;
- the only step that may run one extra time is the one the worker had run but not yet
  reported (``worker_after_step``): steps run at least once, never twice otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from app_under_test import app, sleep_then_step, twenty_steps
from conftest import KAFKA
from crash_harness import KILLED, Runner, assert_history_sound, runs_per_seq

import docket
from docket.errors import ReplyTimeoutError

STEPS = 20
SUM_OF_SQUARES = sum(i * i for i in range(1, STEPS + 1))


PROCESSOR_POINTS = ("before_append", "after_append_before_writebatch", "after_writebatch")


def completed_when_processor_crashes(point: str, after: int) -> set[int]:
    """One processor batch per command: the start, then each step's CompleteStep, so the
    batch that crashes (number ``after + 1``) handles step ``after``'s completion (or the
    start when ``after`` is 0)."""
    if point == "before_append":  # processed in memory only: not in history yet
        return set(range(1, after))
    return set(range(1, after + 1))  # in the log (the store may be behind: restore catches up)


@pytest.mark.parametrize(
    ("backend", "point", "after"),
    [
        *(
            ("embedded", point, after)
            for point in PROCESSOR_POINTS
            for after in (
                0,  # the batch with the client's StartWorkflow: the client waits across the restart
                8,  # mid-workflow
                STEPS,  # the batch that completes the workflow and sends the result
            )
        ),
        *(pytest.param("kafka", point, 8, marks=pytest.mark.kafka) for point in PROCESSOR_POINTS),
    ],
)
async def test_processor_fault_point(
    make_runner: Callable[[str], Runner], backend: str, point: str, after: int
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault=point, after=after)
            starting = asyncio.ensure_future(
                client_engine.client.start(twenty_steps, STEPS, workflow_id="wf")
            )
            assert await runner.wait_exit() == KILLED, runner.output()

            crash = runner.snapshot("wf")
            assert crash.completed_seqs() == completed_when_processor_crashes(point, after)
            if after == 0 and point == "before_append":
                assert crash.events == [] and not starting.done()
            assert crash.started_seqs() == set(range(1, after + 1))
            # on the embedded log the worker handed step ``after``'s report to the processor
            # (streams/handoff.py): a crash before the batch's append loses it with the task
            # offset, and the step runs once more; from the append on, its completion is in
            # history. On Kafka reports take the log (Log.reads_whole_appends): none is lost
            handed = backend == "embedded"
            unsettled = crash.started_seqs() - crash.completed_seqs() - crash.reported_seqs()
            lost = handed and point == "before_append" and after > 0
            assert unsettled == ({after} if lost else set())

            await runner.spawn()
            handle = await asyncio.wait_for(starting, 30)
            assert await handle.result(timeout=30) == SUM_OF_SQUARES
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "wf", await handle.history())
            assert kinds.count("WorkflowStarted") == 1
            assert kinds.count("StepScheduled") == kinds.count("StepCompleted") == STEPS
            assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
            lines = runner.snapshot("wf").lines
            rerun = {seq for _, seq, _ in lines[len(crash.lines) :]} & crash.completed_seqs()
            assert not rerun, f"completed steps ran again after the restart: {sorted(rerun)}"
            # every step ran exactly once, but the unsettled one: at least once, once more
            expected = {seq: 1 for seq in range(1, STEPS + 1)}
            expected.update({seq: 2 for seq in unsettled})
            assert runs_per_seq(lines) == expected
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "after"),
    [
        ("embedded", 0),
        ("embedded", 7),
        ("embedded", STEPS - 1),
        pytest.param("kafka", 7, marks=pytest.mark.kafka),
    ],
)
async def test_worker_after_step_reruns_only_the_unreported_step(
    make_runner: Callable[[str], Runner], backend: str, after: int
) -> None:
    """Step ``after + 1`` ran, the crash came before its completion was appended: it runs
    once more (same attempt, same idempotency key); the steps before it never run again."""
    in_flight = after + 1
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault="worker_after_step", after=after)
            handle = await client_engine.client.start(twenty_steps, STEPS, workflow_id="wf")
            assert await runner.wait_exit() == KILLED, runner.output()

            crash = runner.snapshot("wf")
            assert crash.completed_seqs() == set(range(1, in_flight))
            assert crash.reported_seqs() <= crash.completed_seqs()  # most were handed over
            assert crash.started_seqs() == set(range(1, in_flight + 1))

            await runner.spawn()
            assert await handle.result(timeout=30) == SUM_OF_SQUARES
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "wf", await handle.history())
            assert kinds.count("StepScheduled") == kinds.count("StepCompleted") == STEPS
            assert "StepAttemptFailed" not in kinds
            lines = runner.snapshot("wf").lines
            rerun = {seq for _, seq, _ in lines[len(crash.lines) :]} & crash.completed_seqs()
            assert not rerun, f"completed steps ran again after the restart: {sorted(rerun)}"
            expected = {seq: 1 for seq in range(1, STEPS + 1)}
            expected[in_flight] = 2  # at least once: the unreported step, exactly one extra run
            assert runs_per_seq(lines) == expected
            # the re-run is the same attempt (the re-delivered task, same idempotency key)
            assert [a for _, s, a in lines if s == in_flight] == [1, 1]
    finally:
        runner.cleanup()


@pytest.mark.parametrize("backend", ["embedded", KAFKA])
async def test_timer_after_fire_append_fires_once_in_history(
    make_runner: Callable[[str], Runner], backend: str
) -> None:
    """The FireTimer command is in the log, the due index still has the timer: after the
    restart the timer service fires it again; the processor records TimerFired once."""
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault="timer_after_fire_append", after=0)
            handle = await client_engine.client.start(sleep_then_step, 2.0, workflow_id="sleepy")
            assert await runner.wait_exit() == KILLED, runner.output()

            crash = runner.snapshot("sleepy")
            fires = [c for c in crash.commands if c["body"][0] == "FireTimer"]
            assert len(fires) == 1
            assert "TimerStarted" in crash.kinds() and "TimerFired" not in crash.kinds()
            assert crash.lines == []

            await runner.spawn()
            assert await handle.result(timeout=30) == 49
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "sleepy", await handle.history())
            assert kinds.count("TimerFired") == 1
            assert kinds.count("StepCompleted") == 1
            final = runner.snapshot("sleepy")
            refired = [c for c in final.commands if c["body"][0] == "FireTimer"]
            # fired again after the restart (same command id), and ignored the second time
            assert len(refired) == 2 and len({c["command_id"] for c in refired}) == 1
            assert runs_per_seq(final.lines) == {2: 1}  # seq 1 is the timer, 2 the step
    finally:
        runner.cleanup()


@pytest.mark.kafka
@pytest.mark.parametrize("point", ["kafka_mid_transaction", "kafka_before_commit"])
async def test_kill_in_a_kafka_transaction(make_runner: Callable[[str], Runner], point: str) -> None:
    """The processor's 9th transaction is cut short by a kill. ``kafka_mid_transaction``:
    only its history records reached the broker, its task and offsets are lost.
    ``kafka_before_commit``: all its records reached the broker, its offsets did not
    commit. Readers see those records (read_uncommitted), so the restarted processor folds
    that history and the batch's input (a step's report, back because its command offset
    did not commit) is a duplicate. The next step's task must come from the restore when it
    is missing (streams/unconfirmed.py), and must not be written twice when it is there."""
    runner = make_runner("kafka")
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault=point, after=8)
            starting = asyncio.ensure_future(
                client_engine.client.start(twenty_steps, STEPS, workflow_id="wf")
            )
            assert await runner.wait_exit() == KILLED, runner.output()
            await runner.spawn()
            handle = await asyncio.wait_for(starting, 30)
            try:
                result = await handle.result(timeout=20)
            except ReplyTimeoutError:
                snap = runner.snapshot("wf")
                last = [(e["event_id"], e["body"][0]) for e in snap.events[-2:]]
                pytest.fail(
                    f"the workflow stalled after the restart: its history ends {last}, and "
                    f"the steps that began are {sorted(snap.started_seqs())}"
                )
            assert result == SUM_OF_SQUARES
            kinds = assert_history_sound(runner, "wf", await handle.history())
            assert kinds.count("StepCompleted") == STEPS
            appended = 0 if point == "kafka_before_commit" else 1  # step 9's task
            assert f"did not commit; {appended} of the records" in runner.output()
            # on Kafka the worker commits its own task offsets (no hand-over): no step ran
            # twice; and the restored task was not written a second time by the re-run batch
            runs = runs_per_seq(runner.snapshot("wf").lines)
            assert runs == dict.fromkeys(range(1, STEPS + 1), 1), runs
            assert await runner.terminate() == 0, runner.output()
    finally:
        runner.cleanup()
