"""Side effects in the workflow runtime: a synchronous one runs within its activation and is
recorded as one SideEffectRecorded event; replays hand back the record without running it;
histories from before (a side effect as a local step) still replay."""

from __future__ import annotations

from typing import Any

import pytest

import docket
from docket.codec.payload import to_payload
from docket.errors import NondeterminismError
from docket.retry import RetryPolicy
from docket.runtime.matching import replay
from tests.unit.test_runtime import RUN_ID, Driver

app = docket.App("side-effects")
calls: list[str] = []


def draw() -> tuple[int, str]:
    calls.append("draw")
    return (7, "seven")  # a tuple: JSON gives it back as a list, live and in replays


def refuse() -> None:
    calls.append("refuse")
    raise ValueError("no ticket left")


@app.step
def double(n: int) -> int:
    return n * 2


@app.workflow
async def drawing(ctx: docket.WorkflowContext) -> Any:
    drawn = await ctx.side_effect(draw)
    await ctx.sleep(60)
    return drawn


@app.workflow
async def refusing(ctx: docket.WorkflowContext) -> str:
    try:
        await ctx.side_effect(refuse)
    except docket.StepError as err:
        return f"{err} / cause: {type(err.__cause__).__name__}: {err.__cause__}"
    return "no error"


changed = docket.App("side-effects-v2")
changed.step(double.fn)


@changed.workflow(name="drawing")
async def drawing_with_a_step(ctx: docket.WorkflowContext) -> Any:
    drawn = await ctx.step(double, 3)
    await ctx.sleep(60)
    return drawn


def test_a_side_effect_runs_within_its_activation_and_replays_from_its_record() -> None:
    calls.clear()
    driver = Driver(app, "drawing")
    assert driver.run() == [7, "seven"]
    assert calls == ["draw"]
    kinds = [(e["body"][0], e["activation"]) for e in driver.events]
    assert kinds == [
        ("WorkflowStarted", 1), ("SideEffectRecorded", 1), ("TimerStarted", 1),
        ("TimerFired", 2), ("WorkflowCompleted", 2),
    ]
    recorded = driver.events[1]["body"][1]
    assert recorded == {"seq": 1, "result": to_payload([7, "seven"]), "failure": None}

    instance = driver.fresh_instance()
    assert replay(instance, driver.events) == []
    assert instance.closed and calls == ["draw"]  # replay did not run it again
    assert instance.recorded_side_effects == {}


def test_a_failed_side_effect_is_a_step_error_live_and_in_replays() -> None:
    calls.clear()
    driver = Driver(app, "refusing")
    expected = (
        "step 'side_effect' (seq 1) failed after 1 attempt: no ticket left"
        " / cause: ApplicationError: no ticket left"
    )
    assert driver.run() == expected
    assert [e["body"][0] for e in driver.events] == [
        "WorkflowStarted", "SideEffectRecorded", "WorkflowCompleted",
    ]
    failure = driver.events[1]["body"][1]["failure"]
    assert failure["type"] == "StepError" and failure["cause"]["type"] == "ValueError"
    assert replay(driver.fresh_instance(), driver.events) == []
    assert calls == ["refuse"]


def replay_error(recorded_by: docket.App, replayed_by: docket.App) -> str:
    """The NondeterminismError of replaying ``drawing`` as ``recorded_by`` ran it with the
    code of ``replayed_by``."""
    driver = Driver(recorded_by, "drawing")
    driver.run(lambda name, args: double.fn(*args))
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(replayed_by), driver.events)
    return str(caught.value)


def test_a_step_where_a_side_effect_was_recorded_is_nondeterministic() -> None:
    message = replay_error(app, changed)
    assert "asked for step 'double' at seq 1 (" in message
    assert "but history event 2 recorded a side effect at seq 1" in message


def test_a_side_effect_where_a_step_was_recorded_is_named_as_such() -> None:
    """Replaying, a side effect with no record takes the local-step form an older Docket
    recorded; the error still says what the code asked for."""
    message = replay_error(changed, app)
    assert "asked for a side effect at seq 1 (" in message
    assert "but history event 2 recorded step 'double' at seq 1" in message


def test_a_history_with_the_side_effect_as_a_local_step_still_replays() -> None:
    """Dockets before SideEffectRecorded ran every side effect as a local step named
    side_effect: StepScheduled in one activation, StepCompleted opening the next."""
    calls.clear()
    driver = Driver(app, "drawing")
    driver.run()
    started, recorded, *later = driver.events
    as_local_step = {
        "seq": 1, "step_name": "side_effect", "args": [], "kwargs": {}, "task_queue": "default",
        "local": True, "retry": RetryPolicy(maximum_attempts=1).to_record(),
        "start_to_close_ms": None, "heartbeat_ms": None, "schedule_to_close_ms": None,
        "schedule_to_start_ms": None,
    }
    completed = {"seq": 1, "attempt": 1, "result": recorded["body"][1]["result"]}
    old = [
        started,
        {**recorded, "body": ("StepScheduled", as_local_step)},
        {**recorded, "event_id": 3, "activation": 2, "body": ("StepCompleted", completed)},
    ]
    for event in later:  # TimerStarted went with the step's result, one activation later
        old.append({**event, "event_id": len(old) + 1, "activation": event["activation"] + 1})
    assert all(e["run_id"] == RUN_ID for e in old)
    instance = driver.fresh_instance()
    assert replay(instance, old) == []
    assert instance.closed and calls == ["draw"]
