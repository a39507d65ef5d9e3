"""Crashes while signals and updates are in flight, with real processes.

The engine runs in `app_under_test.py`; this process is only a client, so its requests and
its waits go through the log and survive the engine's death. A signal accepted by a client
call is delivered exactly once; an update's caller gets exactly one outcome, and the update
is applied once, whether the engine died at a processor fault point or by ``kill -9``
while the update's handler was waiting for its step.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import pytest
from app_under_test import Tally, app, chained_steps, parent_of_three
from conftest import BACKENDS
from crash_harness import KILLED, Runner

import docket

SIGNALS = 12
POINTS = ("before_append", "after_append_before_writebatch", "after_writebatch")


@pytest.mark.parametrize(
    ("backend", "point", "after"),
    [
        *(("embedded", point, after) for point in POINTS for after in (1, 3)),
        pytest.param("kafka", "after_append_before_writebatch", 3, marks=pytest.mark.kafka),
        # a transaction cut short: its SignalReceived is read back, the signal comes again
        pytest.param("kafka", "kafka_mid_transaction", 3, marks=pytest.mark.kafka),
        pytest.param("kafka", "kafka_before_commit", 3, marks=pytest.mark.kafka),
    ],
)
async def test_signals_are_delivered_once_across_a_processor_crash(
    make_runner: Callable[[str], Runner], backend: str, point: str, after: int
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn(fault=point, after=after)
            handle = await client_engine.client.start(Tally, SIGNALS, workflow_id="tally")

            async def send_all() -> None:  # one batch per signal, so the crash lands mid-way
                for value in range(SIGNALS):
                    await handle.signal(Tally.add, value)

            sending = asyncio.ensure_future(send_all())
            assert await runner.wait_exit() == KILLED, runner.output()
            await runner.spawn()
            await asyncio.wait_for(sending, 30)  # every call returned: each was acknowledged
            received = await handle.result(timeout=30)
            assert await runner.terminate() == 0, runner.output()

            assert sorted(received) == list(range(SIGNALS)), received  # none lost, none twice
            kinds = Counter(e.type for e in await handle.history())
            assert kinds["SignalReceived"] == SIGNALS
            ids = [e.event_id for e in await handle.history()]
            assert ids == list(range(1, len(ids) + 1))
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "point"),
    [
        *(("embedded", point) for point in POINTS),
        pytest.param("kafka", "after_append_before_writebatch", marks=pytest.mark.kafka),
    ],
)
async def test_an_update_has_one_outcome_across_a_processor_crash(
    make_runner: Callable[[str], Runner], backend: str, point: str
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(Tally, 2, workflow_id="tally")
            assert await runner.terminate() == 0
            await runner.spawn(fault=point, after=0)  # dies in the batch that takes the update
            updating = asyncio.ensure_future(
                handle.execute_update(Tally.add_slowly, 7, 0.05, update_id="u-7")
            )
            assert await runner.wait_exit() == KILLED, runner.output()
            await runner.spawn()
            assert await asyncio.wait_for(updating, 30) == 1
            await handle.signal(Tally.add, 8)
            assert await handle.result(timeout=30) == [7, 8]
            assert await runner.terminate() == 0, runner.output()
            kinds = Counter(e.type for e in await handle.history())
            assert kinds["UpdateAccepted"] == kinds["UpdateCompleted"] == 1
    finally:
        runner.cleanup()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill9_while_an_update_waits_for_its_step(
    make_runner: Callable[[str], Runner], backend: str
) -> None:
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(Tally, 2, workflow_id="tally")
            update = await handle.start_update(Tally.add_slowly, 7, 1.0, update_id="u-7")
            await runner.wait_step_lines(1)  # the update's step is running
            await runner.kill9()
            await runner.spawn()
            # the same update sent again after the crash joins the one in flight
            again = await handle.start_update(Tally.add_slowly, 7, 1.0, update_id="u-7")
            assert await update.result(timeout=30) == 1
            assert await again.result(timeout=30) == 1
            await handle.signal(Tally.add, 8)
            assert await handle.result(timeout=30) == [7, 8]
            assert await runner.terminate() == 0, runner.output()
            kinds = Counter(e.type for e in await handle.history())
            assert kinds["UpdateAccepted"] == kinds["UpdateCompleted"] == 1
            # the step was in flight at the kill: it ran at most once more
            assert 1 <= len(runner.snapshot("tally").lines) <= 2
    finally:
        runner.cleanup()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill9_during_continue_as_new(
    make_runner: Callable[[str], Runner], backend: str
) -> None:
    """A chain of runs that each run two steps and continue as new, killed at random moments:
    the chain completes, every run starts once, and no run is started twice or skipped."""
    total, runs = 16, 9  # two steps per run, and a last run that finds nothing left
    rng = random.Random(7)
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(chained_steps, 0, total, workflow_id="chain")
            for _ in range(3):
                lines = len(runner.step_lines())
                await runner.wait_step_lines(min(lines + rng.randint(1, 4), total - 2))
                await asyncio.sleep(rng.uniform(0.0, 0.02))
                await runner.kill9()
                await runner.spawn()
            assert await handle.result(timeout=30) == total
            assert await runner.terminate() == 0, runner.output()
            events = runner.snapshot("chain").events
            by_run: dict[str, list[str]] = {}
            for event in events:
                by_run.setdefault(event["run_id"], []).append(event["body"][0])
            assert len(by_run) == runs, f"{len(by_run)} runs: {by_run}"
            for run_id, kinds in by_run.items():
                assert kinds.count("WorkflowStarted") == 1 and kinds[0] == "WorkflowStarted", run_id
                assert kinds[-1] in ("WorkflowContinuedAsNew", "WorkflowCompleted"), kinds
            ends = Counter(kinds[-1] for kinds in by_run.values())
            assert ends == {"WorkflowContinuedAsNew": runs - 1, "WorkflowCompleted": 1}
            chain = (await handle.describe()).run_chain
            assert len(chain) == runs - 1 and len(set(chain)) == runs - 1
            # every step ran; a step ran twice only if a kill caught it in flight
            done = Counter(seq for _, seq, _ in runner.snapshot("chain").lines)
            assert sum(done.values()) >= total
    finally:
        runner.cleanup()


@pytest.mark.parametrize(
    ("backend", "seed"),
    [("embedded", 11), ("embedded", 12), pytest.param("kafka", 11, marks=pytest.mark.kafka)],
)
async def test_kill9_while_children_run(
    make_runner: Callable[[str], Runner], backend: str, seed: int
) -> None:
    """A parent with three children on other partitions, the engine killed at random
    moments: every child starts once (one run each), its result and its signal reach the
    parent once, and the parent completes with the right results."""
    rng = random.Random(seed)
    runner = make_runner(backend)
    try:
        async with docket.Engine(
            app, data_dir=runner.data_dir, processor=False, worker=False
        ) as client_engine:
            await runner.spawn()
            handle = await client_engine.client.start(parent_of_three, workflow_id="family")
            for _ in range(3):
                lines = len(runner.step_lines())
                await runner.wait_step_lines(min(lines + rng.randint(1, 3), 10))
                await asyncio.sleep(rng.uniform(0.0, 0.02))
                await runner.kill9()
                await runner.spawn()
            squares = [sum(i * i for i in range(4 * c + 1, 4 * c + 5)) for c in range(3)]
            assert await handle.result(timeout=30) == squares
            assert await runner.terminate() == 0, runner.output()
            parent = Counter(e["body"][0] for e in runner.snapshot("family").events)
            assert parent["ChildWorkflowScheduled"] == parent["ChildWorkflowStarted"] == 3
            assert parent["ChildWorkflowCompleted"] == 3 and parent["SignalReceived"] == 3
            for c in range(3):
                child = runner.snapshot(f"family-c{c}").events
                runs = {e["run_id"] for e in child}
                assert len(runs) == 1, f"child {c} started {len(runs)} runs"
                kinds = Counter(e["body"][0] for e in child)
                assert kinds["WorkflowStarted"] == kinds["WorkflowCompleted"] == 1
                assert kinds["ExternalSignalDelivered"] == 1
    finally:
        runner.cleanup()
