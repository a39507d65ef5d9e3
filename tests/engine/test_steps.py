"""Step features through the public API: timeouts, heartbeats, class workflows, local steps."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import docket

app = docket.App("steps")
FAST = docket.RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=3)


@app.step(start_to_close_timeout=timedelta(milliseconds=200), retry=FAST)
async def too_slow() -> str:
    if docket.step_context().attempt < 2:
        await asyncio.sleep(5)
    return "second attempt in time"


@app.step(heartbeat_timeout=timedelta(milliseconds=300), retry=FAST)
def resumable(total: int) -> list[int]:
    """Processes items, heartbeating progress; attempt 1 stalls after item 2 (a hung host)."""
    ctx = docket.step_context()
    start = ctx.heartbeat_details or 0
    seen = []
    for item in range(start, total):
        seen.append(item)
        ctx.heartbeat(item + 1)
        time.sleep(0.2)  # heartbeats are throttled to half the timeout: this reports each item
        if ctx.attempt == 1 and item == 2:
            time.sleep(1.5)  # stop heartbeating: the processor times this attempt out
            return []
    return seen


@app.step(start_to_close_timeout=timedelta(milliseconds=600), retry=docket.RetryPolicy(maximum_attempts=1))
async def steady() -> float:
    await asyncio.sleep(0.4)
    return time.time()


@app.workflow
async def three_steady(ctx: docket.WorkflowContext) -> list[float]:
    return list(await asyncio.gather(ctx.step(steady), ctx.step(steady), ctx.step(steady)))


@app.step(task_queue="unserved", start_to_close_timeout=timedelta(seconds=1))
async def never_picked_up() -> str:
    return "a worker of 'unserved' ran it"


@app.workflow
async def bounded_wait(ctx: docket.WorkflowContext) -> str:
    try:
        async with asyncio.timeout(0.5):
            return await ctx.step(never_picked_up)
    except TimeoutError:
        return "gave up waiting"


@app.step(start_to_close_timeout=timedelta(seconds=5), retry=docket.RetryPolicy(maximum_attempts=1))
async def service_times_out() -> str:
    raise TimeoutError("the payment service did not answer")  # the step's own, not Docket's


@app.workflow
async def own_timeout(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(service_times_out)


@app.step
def whoami() -> dict[str, object]:
    ctx = docket.step_context()
    return {"key": ctx.idempotency_key, "attempt": ctx.attempt, "thread": threading.current_thread().name}


@app.workflow
async def timeouts(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(too_slow)


@app.workflow
async def heartbeats(ctx: docket.WorkflowContext, total: int) -> list[int]:
    return await ctx.step(resumable, total)


@app.workflow
async def identity(ctx: docket.WorkflowContext) -> dict[str, object]:
    return await ctx.step(whoami)


@app.workflow
class Counter:
    def __init__(self) -> None:
        self.total = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, values: list[int]) -> int:
        for value in values:
            self.total += await ctx.local_step(double, value)
        return self.total


@app.step
def double(x: int) -> int:
    return 2 * x


@app.workflow
async def deterministic_helpers(ctx: docket.WorkflowContext) -> list[str]:
    first = [str(ctx.uuid4()), str(ctx.random().random()), ctx.now().isoformat()]
    await ctx.sleep(0.05)
    drawn = await ctx.side_effect(lambda: "drawn once")
    return [*first, drawn]


async def never_awaited() -> str:
    return "never awaited"


@app.workflow
async def leaves_a_local_step(ctx: docket.WorkflowContext) -> str:
    asyncio.get_running_loop().create_task(ctx.local_step(double, 1))  # never awaited
    asyncio.ensure_future(ctx.side_effect(never_awaited))  # async: a local step too
    await asyncio.sleep(0)
    return "returned"


@app.step(start_to_close_timeout=timedelta(seconds=1.8), retry=docket.RetryPolicy(maximum_attempts=1))
def one_second(i: int) -> int:
    time.sleep(1.0)
    return i


@app.workflow
async def fan_out(ctx: docket.WorkflowContext, n: int) -> list[int]:
    return list(await asyncio.gather(*(ctx.step(one_second, i) for i in range(n))))


class Receipt:  # not JSON: a failure's details that cannot be recorded
    pass


@app.step(retry=docket.RetryPolicy(maximum_attempts=1))
async def declined() -> str:
    raise docket.ApplicationError("card declined", type="Declined", details=Receipt())


@app.step(retry=docket.RetryPolicy(maximum_attempts=1))
async def receipt_heartbeat() -> str:
    ctx = docket.step_context()
    ctx.heartbeat("first")
    ctx.heartbeat(Receipt())  # throttled: it would go out just before the failure
    raise docket.ApplicationError("card declined", type="Declined")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


@app.step(retry=docket.RetryPolicy(maximum_attempts=1))
async def raises_unprintable() -> str:
    raise Unprintable()


@app.workflow
async def pay(ctx: docket.WorkflowContext, step: str = "declined") -> str:
    try:
        return await ctx.step(step)
    except docket.errors.StepError as exc:
        cause = exc.__cause__
        assert isinstance(cause, docket.errors.ExecutionFailure)
        return f"{cause.type_name}: {cause}"


@pytest.fixture(params=[None, 0], ids=["cached", "always-replay"])
def cache_size(request: pytest.FixtureRequest) -> int | None:
    return request.param  # type: ignore[no-any-return]


async def test_start_to_close_timeout_retries(tmp_path: Path, cache_size: int | None) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(timeouts)
        assert await handle.result(timeout=20) == "second attempt in time"
        failed = [e for e in await handle.history() if e.type == "StepAttemptFailed"]
        assert len(failed) == 1
        assert failed[0].attributes["failure"]["kind"] == "timeout.start_to_close"


async def test_time_queued_for_a_worker_does_not_count_against_start_to_close(
    tmp_path: Path,
) -> None:
    """One step at a time: the third waits 0.8 s for the worker, then runs 0.4 s. That is
    1.2 s after dispatch, past its 0.6 s start-to-close timeout, but 0.4 s after its start."""
    async with docket.Engine(app, data_dir=tmp_path, max_concurrency=1) as engine:
        handle = await engine.client.start(three_steady)
        ends = await handle.result(timeout=20)
        assert max(ends) - min(ends) >= 0.7  # they did queue
        kinds = [e.type for e in await handle.history()]
        assert "StepAttemptFailed" not in kinds and kinds.count("StepStarted") == 3


async def test_describe_tells_a_started_attempt_from_a_queued_one(tmp_path: Path) -> None:
    """One step at a time, each with a start-to-close timeout: describe() shows when the
    running one began, and no start for the two still queued behind it."""
    async with docket.Engine(app, data_dir=tmp_path, max_concurrency=1) as engine:
        before = datetime.now(UTC)
        handle = await engine.client.start(three_steady)
        for _ in range(200):
            pending = (await handle.describe()).pending_steps
            if len(pending) == 3 and any(s.started_at for s in pending):
                break
            await asyncio.sleep(0.01)
        assert len(pending) == 3, "never saw all three steps pending"
        started = [s for s in pending if s.started_at is not None]
        assert len(started) == 1 and before <= started[0].started_at <= datetime.now(UTC)
        assert [s.started_at for s in pending if s is not started[0]] == [None, None]
        assert all(s.retry_at is None for s in pending)
        await handle.result(timeout=20)


async def test_a_workflow_bounds_the_wait_for_a_queued_step_itself(tmp_path: Path) -> None:
    """Without a schedule-to-start or schedule-to-close timeout nothing bounds a task's time
    in its queue (guarantees.md): with no worker for the step's queue, start-to-close never
    starts, and asyncio.timeout in the workflow is a way to give up."""
    async with docket.Engine(app, data_dir=tmp_path, task_queues=["default"]) as engine:
        handle = await engine.client.start(bounded_wait)
        assert await handle.result(timeout=20) == "gave up waiting"
        kinds = [e.type for e in await handle.history()]
        assert "StepCancelRequested" in kinds
        assert "StepStarted" not in kinds and "StepAttemptFailed" not in kinds


async def test_a_steps_own_timeout_error_is_an_ordinary_failure(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(own_timeout)
        with pytest.raises(docket.errors.WorkflowFailedError):
            await handle.result(timeout=20)
        (failed,) = [e for e in await handle.history() if e.type == "StepFailed"]
        cause = failed.attributes["failure"]["cause"]  # StepError, caused by the last attempt
        assert cause["kind"] == "application" and cause["type"] == "TimeoutError"
        assert cause["message"] == "the payment service did not answer"


async def test_heartbeat_timeout_resumes_from_details(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(heartbeats, 5)
        assert await handle.result(timeout=30) == [3, 4]  # attempt 2 resumed after item 2
        history = await handle.history()
        failed = [e for e in history if e.type == "StepAttemptFailed"]
        assert [f.attributes["failure"]["kind"] for f in failed] == ["timeout.heartbeat"]


async def test_sync_steps_run_in_threads_with_idempotency_keys(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(identity, workflow_id="who")
        info = await handle.result(timeout=10)
        assert info["key"] == f"who/{handle.run_id}/1/1" and info["attempt"] == 1
        assert str(info["thread"]).startswith("docket-step")


async def test_class_workflow_with_local_steps(tmp_path: Path, cache_size: int | None) -> None:
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(Counter, [1, 2, 3])
        assert await handle.result(timeout=10) == 12
        scheduled = [e for e in await handle.history() if e.type == "StepScheduled"]
        assert all(e.attributes["local"] for e in scheduled) and len(scheduled) == 3


async def test_a_run_that_returns_with_local_steps_pending_completes(
    tmp_path: Path, cache_size: int | None
) -> None:
    """The local steps were recorded, then the run closed in the same activation (which drops
    its pending steps): running them afterwards looked for them in the closed run's state, a
    KeyError that stopped the execution and refused its start."""
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=cache_size) as engine:
        handle = await engine.client.start(leaves_a_local_step)
        assert await handle.result(timeout=10) == "returned"
        kinds = [e.type for e in await handle.history()]
        assert kinds == ["WorkflowStarted", "StepScheduled", "StepScheduled", "WorkflowCompleted"]


async def test_deterministic_helpers_are_stable_under_replay(tmp_path: Path) -> None:
    """Always-replay re-runs the code from history at every activation: values must not drift."""
    async with docket.Engine(app, data_dir=tmp_path, workflow_cache_size=0) as engine:
        handle = await engine.client.start(deterministic_helpers)
        uuid_, rand, now, drawn = await handle.result(timeout=10)
        started = (await handle.history())[0].timestamp
        assert now == started.isoformat() and drawn == "drawn once"
        assert len(uuid_) == 36 and 0 <= float(rand) < 1


def test_calling_a_step_directly_outside_workflows_runs_it() -> None:
    assert double(21) == 42


def test_bad_definitions_fail_at_registration() -> None:
    other = docket.App("bad")
    with pytest.raises(docket.errors.DefinitionError, match="must be an 'async def'"):
        @other.workflow
        def not_async(ctx: docket.WorkflowContext) -> None: ...
    with pytest.raises(docket.errors.DefinitionError, match="registered twice"):
        @other.step(name="x")
        def a() -> None: ...

        @other.step(name="x")
        def b() -> None: ...


async def test_a_failure_whose_details_cannot_be_encoded_still_reaches_the_workflow(
    tmp_path: Path,
) -> None:
    """The worker used to die on encoding the failure: the attempt was never reported, its
    task never settled, and the workflow waited for ever. Now the failure is recorded
    without its details, and says so."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(pay)
        outcome = await handle.result(timeout=10)
        assert outcome.startswith("Declined: card declined [details not recorded: ")
        assert "Receipt is not JSON-encodable" in outcome


async def test_an_exception_whose_str_raises_still_fails_the_step(tmp_path: Path) -> None:
    """Its message is taken with str(): that raised inside the worker, which then never
    reported the attempt (the workflow waited for ever)."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        outcome = await (await engine.client.start(pay, "raises_unprintable")).result(timeout=10)
        assert outcome.endswith("Unprintable: <str() of Unprintable raised RuntimeError: no words>")


async def test_heartbeat_details_that_cannot_be_encoded_are_refused_by_heartbeat(
    tmp_path: Path,
) -> None:
    """A throttled heartbeat goes out later, or before the attempt's failure: its encoding
    error used to kill the report of the failure (the step hung), or go to the event loop's
    log unseen. heartbeat() now encodes at once and raises to the step."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(pay, "receipt_heartbeat")
        outcome = await handle.result(timeout=10)
        assert outcome.startswith("docket.errors.SerializationError: cannot encode heartbeat details")
        assert "Receipt is not JSON-encodable" in outcome


async def test_sync_steps_up_to_max_concurrency_run_at_once(tmp_path: Path) -> None:
    """66 one-second sync steps with a 1.8 s start-to-close timeout, under the default
    max_concurrency of 200. The worker used to run sync steps in at most 64 threads while
    it started (and timed) every attempt at once: the last two waited 1 s for a thread, and
    timed out in it."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(fan_out, 66)
        assert await handle.result(timeout=30) == list(range(66))


async def raises_cancelled_itself() -> str:
    raise asyncio.CancelledError("raised by the code, not a cancellation of its task")


@app.step(retry=docket.RetryPolicy(maximum_attempts=1))
async def cancels_itself() -> str:
    return await raises_cancelled_itself()


@app.workflow
async def code_raising_cancelled(ctx: docket.WorkflowContext) -> list[str]:
    outcomes = []
    for call in (
        lambda: ctx.side_effect(raises_cancelled_itself),  # async: a local step
        lambda: ctx.local_step(cancels_itself),
        lambda: ctx.step(cancels_itself),  # on the worker
    ):
        try:
            await call()
        except docket.StepError as err:
            assert err.__cause__ is not None
            outcomes.append(err.__cause__.type_name)
    return outcomes


async def test_code_that_raises_cancelled_error_itself_fails_that_step_only(
    tmp_path: Path,
) -> None:
    """CancelledError from a step's own code (not a cancellation of the task running it)
    escaped the processor's loop from a local step, ending it, and left a worker's step
    unreported for good: it is that step's failure, like any other exception."""
    async with docket.Engine(app, data_dir=tmp_path) as engine:
        handle = await engine.client.start(code_raising_cancelled)
        assert await handle.result(timeout=10) == ["asyncio.exceptions.CancelledError"] * 3
        # the processor goes on with other workflows
        assert await (await engine.client.start(identity)).result(timeout=10)
