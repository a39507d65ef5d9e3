"""A worker commits a task partition's offset up to its first unfinished task only, so a
step that finished behind a step still running is recorded as completed while its task
is not committed. docs/guarantees.md promises that on the embedded log "a step whose
completion is recorded never runs again": after a ``kill -9``, the worker that takes the
partition skips each task read again whose attempt the history records as over
(`Worker._recorded_over`; found by helper-34, each such step ran again before)."""

from __future__ import annotations

from pathlib import Path

from app_under_test import app, slow_then_fast, twenty_steps
from crash_harness import PARTITIONS, Runner, runs_per_seq

import docket
from docket.log.partitioner import partition as partition_of

SLOW_S = 4.0
STEPS = 5


async def test_a_step_completed_behind_a_running_one_does_not_run_again_after_kill9(
    tmp_path: Path,
) -> None:
    runner = Runner(tmp_path)
    quick = next(
        f"quick-{i}"
        for i in range(1000)
        if partition_of(f"quick-{i}", PARTITIONS) == partition_of("slow", PARTITIONS)
    )  # its tasks queue behind the slow step's, on one task partition
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            client = client_engine.client
            await runner.spawn()
            slow = await client.start(slow_then_fast, SLOW_S, workflow_id="slow")
            await runner.wait_step_lines(1)
            done = await client.start(twenty_steps, STEPS, workflow_id=quick)
            assert await done.result(timeout=20) == sum(i * i for i in range(1, STEPS + 1))
            await runner.kill9()
            completed = runner.snapshot(quick).completed_seqs()
            assert completed == set(range(1, STEPS + 1))

            await runner.spawn()
            assert await slow.result(timeout=20) == SLOW_S + 9  # the tasks before it are done
            assert await runner.terminate() == 0, runner.output()
            ran = runs_per_seq([line for line in runner.step_lines() if line[0] == quick])
            assert ran == dict.fromkeys(completed, 1), f"steps begun per seq: {ran}"
    finally:
        runner.cleanup()
