"""``kill -9`` of the engine process at random (seeded) moments, then restart.

Unlike the named fault points, the kill lands wherever the process happens to be: inside
a SQLite transaction, a RocksDB write, a running step, a restore. Nothing acknowledged may
be lost: the workflow finishes with the right result, history ids are 1..n without gap or
duplicate, completed steps never run again, an in-flight step runs at most once more per
crash, and a timer that came due while the engine was down fires after the restart.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest
from app_under_test import app, sleep_then_step, twenty_steps
from crash_harness import (
    PARTITIONS,
    Runner,
    Snapshot,
    assert_history_sound,
    assert_steps_ran_per_guarantees,
)

import docket
from docket.log.partitioner import partition as partition_of

STEPS = 20
SUM_OF_SQUARES = sum(i * i for i in range(1, STEPS + 1))
KILLS = 4
# spread over all four partitions, so batches span partitions and a kill can land between
# one partition's WriteBatch and the next
CONCURRENT = ("wf-0", "wf-1", "wf-2", "wf-3", "wf-6", "wf-9")


async def kill_at_random_moments(
    runner: Runner, rng: random.Random, workflow_ids: tuple[str, ...], max_lines: int
) -> dict[str, list[Snapshot]]:
    """Up to `KILLS` times: let the engine make a random amount of progress (0 to a few more
    step runs, so some kills land in the restore right after a restart), wait a random few
    milliseconds more, ``kill -9`` it, snapshot what is durable, and restart it.

    Progress is counted in step-log lines rather than wall time, so the kills land while
    the workflows run on a fast machine and a slow one alike; ``max_lines`` (fewer than the
    workflows need to finish) bounds the target. The first kill always comes mid-run.
    """
    crashes: dict[str, list[Snapshot]] = {w: [] for w in workflow_ids}
    per_kill = max(2, max_lines // KILLS)
    for number in range(KILLS):
        lines = len(runner.step_lines())
        low = 1 if number == 0 else 0
        target = min(lines + rng.randint(low, per_kill), max_lines)
        if lines >= max_lines:
            break
        await runner.wait_step_lines(target)
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        await runner.kill9()
        for w in workflow_ids:
            crashes[w].append(runner.snapshot(w))
        await runner.spawn()
    assert any(not c[0].closed() for c in crashes.values()), "no kill landed mid-run"
    return crashes


@pytest.mark.parametrize(
    ("backend", "seed"),
    [
        ("embedded", 1),
        ("embedded", 2),
        ("embedded", 3),
        pytest.param("kafka", 1, marks=pytest.mark.kafka),
    ],
)
async def test_kill9_at_random_moments_during_twenty_steps(
    make_runner: Callable[[str], Runner], backend: str, seed: int
) -> None:
    rng = random.Random(seed)
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(twenty_steps, STEPS, workflow_id="wf")
            crashes = await kill_at_random_moments(runner, rng, ("wf",), STEPS - 2)
            assert await handle.result(timeout=30) == SUM_OF_SQUARES
            assert await runner.terminate() == 0, runner.output()

            kinds = assert_history_sound(runner, "wf", await handle.history())
            assert kinds.count("StepCompleted") == STEPS
            assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
            assert_steps_ran_per_guarantees(runner, "wf", crashes["wf"], set(range(1, STEPS + 1)))
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "seed"),
    [("embedded", 5), ("embedded", 6), pytest.param("kafka", 5, marks=pytest.mark.kafka)],
)
async def test_kill9_at_random_moments_with_concurrent_workflows(
    make_runner: Callable[[str], Runner], backend: str, seed: int
) -> None:
    """On Kafka too: there a kill lands inside transactions, whose records readers see."""
    assert {partition_of(w, PARTITIONS) for w in CONCURRENT} == set(range(PARTITIONS))
    rng = random.Random(seed)
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handles = [
                await client_engine.client.start(twenty_steps, STEPS, workflow_id=w)
                for w in CONCURRENT
            ]
            crashes = await kill_at_random_moments(
                runner, rng, CONCURRENT, len(CONCURRENT) * STEPS - 10
            )
            for handle in handles:
                assert await handle.result(timeout=30) == SUM_OF_SQUARES
            assert await runner.terminate() == 0, runner.output()

            for handle in handles:
                w = handle.workflow_id
                kinds = assert_history_sound(runner, w, await handle.history())
                assert kinds.count("StepCompleted") == STEPS and kinds[-1] == "WorkflowCompleted"
                assert_steps_ran_per_guarantees(runner, w, crashes[w], set(range(1, STEPS + 1)))
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "seed"),
    [("embedded", 1), ("embedded", 2), pytest.param("kafka", 1, marks=pytest.mark.kafka)],
)
async def test_kill9_during_sleep_timer_fires_after_restart(
    make_runner: Callable[[str], Runner], backend: str, seed: int
) -> None:
    """Killed during the 2 s sleep; the engine stays down until the timer is overdue. After
    the restart the timer fires, exactly once in history. A second kill a few milliseconds
    after that restart lands while the timer fires or the step runs: the step then runs at
    most once more, and never again once its completion is recorded."""
    rng = random.Random(seed)
    runner = make_runner(backend)
    crashes: list[Snapshot] = []
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(sleep_then_step, 2.0, workflow_id="sleepy")
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            await runner.kill9()
            crash = runner.snapshot("sleepy")
            crashes.append(crash)
            assert "TimerStarted" in crash.kinds() and "TimerFired" not in crash.kinds()
            (started,) = [e for e in crash.events if e["body"][0] == "TimerStarted"]
            fire_at_us = started["body"][1]["fire_at_us"]
            while time.time_ns() // 1000 < fire_at_us + 200_000:  # due while nothing runs
                await asyncio.sleep(0.05)

            restarted_us = time.time_ns() // 1000
            await runner.spawn()
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            await runner.kill9()
            crashes.append(runner.snapshot("sleepy"))
            await runner.spawn()

            assert await handle.result(timeout=30) == 49
            assert await runner.terminate() == 0, runner.output()
            history = await handle.history()
            kinds = assert_history_sound(runner, "sleepy", history)
            assert kinds.count("TimerFired") == 1 and kinds.count("StepCompleted") == 1
            (fired,) = [e for e in history if e.type == "TimerFired"]
            assert fired.timestamp.timestamp() * 1e6 >= restarted_us > fire_at_us
            assert_steps_ran_per_guarantees(runner, "sleepy", crashes, {2})
    finally:
        runner.cleanup()
