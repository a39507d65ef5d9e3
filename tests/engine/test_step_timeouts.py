"""Schedule-to-close and schedule-to-start timeouts, through the public API on a real engine.

Schedule-to-close bounds a whole step (every attempt and backoff) from its scheduling;
schedule-to-start bounds each attempt's wait in its task queue. Either fails the step, not
retried: the workflow sees a StepError caused by a TimeoutError of that kind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import docket
from docket.errors import DefinitionError, StepError, TimeoutError
from tests.kafka_broker import Broker

app = docket.App("step-timeouts")
EVERY_100_MS = docket.RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1)
calls: dict[str, int] = {}
cancelled: dict[str, asyncio.Event] = {}


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@app.step(retry=EVERY_100_MS)  # retries forever: only the schedule-to-close timeout stops it
def always_fails(key: str) -> None:
    _count(key)
    raise ValueError("the service is down")


@app.step(retry=docket.RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=1),
          schedule_to_close_timeout=timedelta(seconds=3))
def fails_with_a_long_backoff(key: str) -> None:
    _count(key)
    raise ValueError("the service is down")


@app.step(schedule_to_close_timeout=timedelta(seconds=1))
async def hangs(key: str) -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled[key].set()
        raise
    return "finished"


@app.step(task_queue="unserved", schedule_to_start_timeout=timedelta(milliseconds=500))
async def never_picked_up() -> str:
    return "a worker of 'unserved' ran it"


@app.step(schedule_to_start_timeout=timedelta(seconds=1))
async def slower_than_its_schedule_to_start() -> str:
    await asyncio.sleep(1.5)  # runs past the limit: only the wait for a worker counts
    return "ran to its end"


@app.step(schedule_to_close_timeout=timedelta(milliseconds=500))
async def local_hang() -> str:
    await asyncio.sleep(30)
    return "finished"


async def _outcome(call: Any) -> dict[str, Any]:
    try:
        return {"result": await call}
    except StepError as exc:
        timeout = exc.__cause__
        assert isinstance(timeout, TimeoutError), repr(timeout)
        return {"timeout": timeout.kind, "message": str(timeout)}


@app.workflow
async def keeps_failing(ctx: docket.WorkflowContext, key: str) -> dict[str, Any]:
    budget = always_fails.options(schedule_to_close_timeout=timedelta(seconds=1))
    return await _outcome(ctx.step(budget, key))


@app.workflow
async def long_backoff(ctx: docket.WorkflowContext, key: str) -> dict[str, Any]:
    return await _outcome(ctx.step(fails_with_a_long_backoff, key))


@app.workflow
async def hanging(ctx: docket.WorkflowContext, key: str) -> dict[str, Any]:
    return await _outcome(ctx.step(hangs, key))


@app.workflow
async def unserved(ctx: docket.WorkflowContext) -> dict[str, Any]:
    return await _outcome(ctx.step(never_picked_up))


@app.workflow
async def started_in_time(ctx: docket.WorkflowContext) -> dict[str, Any]:
    return await _outcome(ctx.step(slower_than_its_schedule_to_start))


@app.workflow
async def local_hanging(ctx: docket.WorkflowContext) -> dict[str, Any]:
    return await _outcome(ctx.local_step(local_hang))


def _step_failure(history: list[Any]) -> dict[str, Any]:
    (failed,) = [e for e in history if e.type == "StepFailed"]
    failure: dict[str, Any] = failed.attributes["failure"]
    assert failure["kind"] == "step"  # a StepError, caused by the timeout
    return failure


@pytest.fixture(params=[None, 0], ids=["cached", "always-replay"])
def cache_size(request: pytest.FixtureRequest) -> int | None:
    return request.param  # type: ignore[no-any-return]


async def test_schedule_to_close_stops_a_step_that_keeps_failing(
    tmp_path: Path, cache_size: int | None
) -> None:
    """Retried every 100 ms forever, the step is stopped by its 1 s schedule-to-close
    timeout (set with Step.options at the call site), and no attempt runs after that."""
    key = f"keeps-failing-{cache_size}"
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(keeps_failing, key)
        outcome = await handle.result(timeout=20)
        assert outcome["timeout"] == "schedule_to_close", outcome
        assert "schedule-to-close timeout of 1000 ms" in outcome["message"]
        history = await handle.history()
        assert _step_failure(history)["cause"]["kind"] == "timeout.schedule_to_close"
        scheduled = next(e for e in history if e.type == "StepScheduled")
        (failed,) = [e for e in history if e.type == "StepFailed"]
        elapsed = (failed.timestamp - scheduled.timestamp).total_seconds()
        assert 0.85 <= elapsed < 5, elapsed  # its last retry would have begun past 1 s
        attempts = failed.attributes["attempt"]
        assert attempts >= 3 and [e.type for e in history].count("StepRetried") == attempts - 1
        await asyncio.sleep(0.5)  # retries were every 100 ms: none is made any more
        # (the last attempt may have been queued still when the deadline came: it may run)
        assert attempts - 1 <= calls[key] <= attempts
        assert [e.type for e in await handle.history()] == [e.type for e in history]


async def test_a_retry_whose_backoff_ends_past_the_deadline_is_not_scheduled(
    tmp_path: Path,
) -> None:
    """3 s schedule-to-close, 2 s between attempts: attempt 2 fails at about 2 s, and its
    retry would begin at about 4 s, past the deadline. The step fails then, at about 2 s,
    without waiting for the deadline, with attempt 2's failure as the timeout's cause."""
    key = "long-backoff"
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(long_backoff, key)
        outcome = await handle.result(timeout=20)
        assert outcome["timeout"] == "schedule_to_close", outcome
        history = await handle.history()
        cause = _step_failure(history)["cause"]
        assert cause["kind"] == "timeout.schedule_to_close"
        assert cause["cause"]["message"] == "the service is down"
        assert [e.type for e in history].count("StepAttemptFailed") == 1
        scheduled = next(e for e in history if e.type == "StepScheduled")
        (failed,) = [e for e in history if e.type == "StepFailed"]
        assert (failed.timestamp - scheduled.timestamp).total_seconds() < 2.9
        assert calls[key] == 2


async def test_schedule_to_close_cancels_the_running_attempt(tmp_path: Path) -> None:
    key = "hanging"
    cancelled[key] = asyncio.Event()
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(hanging, key)
        outcome = await handle.result(timeout=10)
        assert outcome["timeout"] == "schedule_to_close", outcome
        await asyncio.wait_for(cancelled[key].wait(), 5)  # its worker was told to stop it
        assert "StepAttemptFailed" not in [e.type for e in await handle.history()]


async def test_schedule_to_start_fails_a_step_no_worker_takes(
    tmp_path: Path, cache_size: int | None
) -> None:
    """No worker serves the step's queue: after 0.5 s in it, the step fails, not retried."""
    async with docket.Engine(
        app, data_dir=tmp_path, task_queues=["default"], workflow_cache_size=cache_size
    ) as engine:
        handle = await engine.client.start(unserved)
        outcome = await handle.result(timeout=10)
        assert outcome["timeout"] == "schedule_to_start", outcome
        assert "no worker started it" in outcome["message"]
        history = await handle.history()
        assert _step_failure(history)["cause"]["kind"] == "timeout.schedule_to_start"
        kinds = [e.type for e in history]
        assert "StepStarted" not in kinds and "StepAttemptFailed" not in kinds
        assert "StepRetried" not in kinds


async def test_schedule_to_start_does_not_fire_once_a_worker_started_the_step(
    tmp_path: Path,
) -> None:
    """The step runs 1.5 s, past its 1 s schedule-to-start timeout: its worker reported
    the start (StepStarted), which meets it."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(started_in_time)
        assert await handle.result(timeout=10) == {"result": "ran to its end"}
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("StepStarted") == 1 and "StepFailed" not in kinds
        await asyncio.sleep(0.2)  # the timer fired 0.5 s ago, and changed nothing
        assert [e.type for e in await handle.history()] == kinds


async def test_schedule_to_close_bounds_a_local_step(tmp_path: Path) -> None:
    """A local attempt runs inline, cut at the step's deadline: the step fails then."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(local_hanging)
        outcome = await handle.result(timeout=10)
        assert outcome["timeout"] == "schedule_to_close", outcome
        cause = _step_failure(await handle.history())["cause"]
        assert cause["kind"] == "timeout.schedule_to_close"


@pytest.mark.parametrize("option", ["schedule_to_close_timeout", "schedule_to_start_timeout",
                                    "start_to_close_timeout", "heartbeat_timeout"])
@pytest.mark.parametrize(
    "value", [timedelta(0), timedelta(seconds=-1), 5, "5s", timedelta(days=10**8)]
)  # 10**8 days: a deadline no record holds, which stopped the execution in the processor
def test_bad_timeouts_fail_at_definition(option: str, value: Any) -> None:
    other = docket.App("bad-timeouts")
    with pytest.raises(DefinitionError, match=f"step 'f': {option} must be a timedelta"):
        @other.step(**{option: value})
        def f() -> None: ...
    with pytest.raises(DefinitionError, match=f"step 'always_fails': {option} must be"):
        always_fails.options(**{option: value})


@pytest.mark.kafka
async def test_on_kafka_the_start_report_takes_the_log(kafka: Broker, tmp_path: Path) -> None:
    """On Kafka a worker's reports, its start among them, go through ``commands`` (see
    streams/handoff.py): the start still meets the schedule-to-start timeout, and an
    attempt no worker takes still fails on it."""
    async with docket.Engine(app, data_dir=tmp_path, task_queues=["default"]) as engine:
        assert engine.worker is not None and engine.worker.reports_to is None
        handle = await engine.client.start(started_in_time)
        assert await handle.result(timeout=30) == {"result": "ran to its end"}
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("StepStarted") == 1 and "StepFailed" not in kinds
        outcome = await (await engine.client.start(unserved)).result(timeout=30)
        assert outcome["timeout"] == "schedule_to_start", outcome
