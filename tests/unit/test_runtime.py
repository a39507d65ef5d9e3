"""The deterministic runtime: WorkflowInstance on the DeterministicLoop, and replay matching.

A small driver plays the processor's part: it feeds resolution events (started, step
completed, timer fired) one activation at a time, records what the code asked for as events
of the same activation, and so builds a history exactly shaped like the engine's.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import docket
from docket.codec.failure import from_failure
from docket.codec.payload import from_payload, to_payload
from docket.codec.records import EVENTS
from docket.errors import NondeterminismError, WorkflowError
from docket.replay import replay_history
from docket.runtime.instance import Command, WorkflowInstance
from docket.runtime.loop import DeterministicLoop
from docket.runtime.matching import replay

THIS_FILE = Path(__file__).resolve()
T0 = 1_700_000_000_000_000
RUN_ID = str(uuid.UUID(int=12345))


def line_of(marker: str) -> int:
    """The line number of the line in this file that ends with ``# <marker>``."""
    lines = THIS_FILE.read_text().splitlines()
    found = [i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(found) == 1, marker
    return found[0]


class Driver:
    """Runs one workflow run to completion without a log, recording its history."""

    def __init__(self, app: docket.App, workflow: str, *args: Any, workflow_id: str = "wf-1") -> None:
        self.app = app
        self.workflow = workflow
        self.workflow_id = workflow_id
        definition = app.find_workflow(workflow)
        assert definition is not None
        self.instance = WorkflowInstance(definition, workflow_id, RUN_ID, workflow, "default", app.find_step)
        self.events: list[dict[str, Any]] = []
        self.activation = 0
        self.now_us = T0
        self.steps: dict[int, Command] = {}  # pending
        self.timers: dict[int, int] = {}  # pending: seq -> fire_at_us
        self.outcome: Command | None = None
        self.start_body = {"workflow_type": workflow, "args": [to_payload(a) for a in args],
                           "kwargs": {}, "task_queue": "default", "reply_to": None}

    def _record(self, kind: str, body: dict[str, Any], activation: int) -> dict[str, Any]:
        event = {"workflow_id": self.workflow_id, "run_id": RUN_ID, "event_id": len(self.events) + 1,
                 "activation": activation, "ts_us": self.now_us, "command_id": "", "body": (kind, body)}
        event = EVENTS.decode(EVENTS.encode(event))
        self.events.append(event)
        return event

    def activate(self, resolutions: list[tuple[str, dict[str, Any]]]) -> list[Command]:
        self.activation += 1
        events = [self._record(kind, body, self.activation) for kind, body in resolutions]
        commands = self.instance.activate(events, self.now_us)
        for command in commands:
            self._record(command.kind, command.body, self.activation)
            if command.kind == "StepScheduled":
                self.steps[command.body["seq"]] = command
            elif command.kind == "TimerStarted":
                self.timers[command.body["seq"]] = command.body["fire_at_us"]
            elif command.kind != "SideEffectRecorded":  # that one ran already
                self.outcome = command
        return commands

    def start(self) -> list[Command]:
        return self.activate([("WorkflowStarted", self.start_body)])

    def complete(self, seq: int, value: Any = None, *, error: BaseException | None = None) -> list[Command]:
        self.steps.pop(seq)
        if error is not None:
            from docket.codec.failure import to_failure

            return self.activate([("StepFailed", {"seq": seq, "attempt": 1, "failure": to_failure(error)})])
        return self.activate([("StepCompleted", {"seq": seq, "attempt": 1, "result": to_payload(value)})])

    def fire(self, seq: int) -> list[Command]:
        self.now_us = max(self.now_us, self.timers.pop(seq))
        return self.activate([("TimerFired", {"seq": seq})])

    def run(self, results: Callable[[str, list[Any]], Any] | None = None) -> Any:
        """Start and settle everything, earliest step first, then earliest timer, until closed."""
        self.start()
        while self.outcome is None:
            if self.steps:
                seq = min(self.steps)
                command = self.steps[seq]
                if command.local_call is not None:
                    value = command.local_call()
                else:
                    args = [from_payload(p) for p in command.body["args"]]
                    value = results(command.body["step_name"], args) if results else None
                self.complete(seq, value)
            elif self.timers:
                self.fire(min(self.timers, key=lambda s: (self.timers[s], s)))
            else:
                raise AssertionError(f"workflow is stuck after {len(self.events)} events")
        return self.result()

    def result(self) -> Any:
        assert self.outcome is not None
        if self.outcome.kind == "WorkflowCompleted":
            return from_payload(self.outcome.body["result"])
        raise from_failure(self.outcome.body["failure"])

    def fresh_instance(self, app: docket.App | None = None) -> WorkflowInstance:
        app = app or self.app
        definition = app.find_workflow(self.workflow)
        assert definition is not None
        return WorkflowInstance(definition, self.workflow_id, RUN_ID, self.workflow, "default", app.find_step)


def kinds(commands: list[Command]) -> list[tuple[str, Any]]:
    return [(c.kind, c.body.get("step_name", c.body.get("seq"))) for c in commands]


# -- workflows ----------------------------------------------------------------------------------

app = docket.App("runtime")


@app.step
def greet(name: str) -> str:
    return f"Hello, {name}!"


@app.step
def double(n: int) -> int:
    return n * 2


@app.step
def slow() -> str:
    return "slow"


@app.workflow
async def order(ctx: docket.WorkflowContext, name: str) -> dict[str, Any]:
    greeting = await ctx.step(greet, name)
    await ctx.sleep(timedelta(minutes=5))
    total = await ctx.step(double, 21)
    token = await ctx.side_effect(lambda: "side-effect-value")
    return {"greeting": greeting, "total": total, "token": token,
            "now": ctx.now().isoformat(), "uuid": str(ctx.uuid4()), "random": ctx.random().random()}


@app.workflow
async def fan_out(ctx: docket.WorkflowContext, n: int) -> list[int]:
    return list(await asyncio.gather(*(ctx.step(double, i) for i in range(n))))


@app.workflow
async def race(ctx: docket.WorkflowContext) -> str:
    step = asyncio.ensure_future(ctx.step(slow))
    nap = asyncio.ensure_future(ctx.sleep(10))
    done, pending = await asyncio.wait({step, nap}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return "step" if step in done else "timer"


@app.workflow
async def background(ctx: docket.WorkflowContext) -> list[Any]:
    async def child(n: int) -> int:
        await ctx.sleep(1)
        return await ctx.step(double, n)

    task = asyncio.get_running_loop().create_task(child(5))
    first = await ctx.step(greet, "main")
    return [first, await task]


@app.workflow
async def with_timeout(ctx: docket.WorkflowContext) -> str:
    try:
        async with asyncio.timeout(30):
            return str(await ctx.step(slow))
    except TimeoutError:
        return "timed out"


@app.workflow
async def cancels_sleep(ctx: docket.WorkflowContext) -> str:
    nap = asyncio.ensure_future(ctx.sleep(100))
    await asyncio.sleep(0)
    nap.cancel()
    try:
        await nap
    except asyncio.CancelledError:
        pass
    return await ctx.step(greet, "after")


@app.workflow
async def calls_step_directly(ctx: docket.WorkflowContext) -> str:
    return greet("x")  # direct call: must be refused


@app.workflow
async def passes_a_non_step(ctx: docket.WorkflowContext) -> Any:
    return await ctx.step(len, "x")  # type: ignore[call-overload]


@app.workflow
async def catches_everything(ctx: docket.WorkflowContext) -> str:
    try:
        greet("x")
    except Exception as exc:  # noqa: BLE001 - the error is a normal Exception users can handle
        return type(exc).__name__
    return "no error"


@app.workflow
async def waits_after_sleep(ctx: docket.WorkflowContext) -> str:
    await ctx.sleep(60)
    await ctx.wait_for_signal("go")
    return await ctx.step(greet, "go")


@dataclass
class Item:
    name: str


@app.workflow
class Basket:
    def __init__(self) -> None:
        self.items: list[Any] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: bool(self.items))
        return len(self.items)

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, item: Item) -> None:
        self.items.append(item)


@app.workflow
async def starts_child(ctx: docket.WorkflowContext, n: int) -> Any:
    return await ctx.child("kid", n, workflow_id="kid-1")


@app.workflow
async def names_child(ctx: docket.WorkflowContext, n: int) -> Any:
    return await ctx.child("kid", n, workflow_id="kid-1")


@app.workflow
async def signals_peer(ctx: docket.WorkflowContext, n: int) -> None:
    await ctx.external_workflow("peer").signal("poke", n)


# the "changed" versions, registered under the original names in another app
changed = docket.App("runtime-v2")
changed.step(greet.fn)
changed.step(double.fn)
changed.step(slow.fn)
changed.step(name="triple")(lambda n: n * 3)


@changed.workflow(name="order")
async def order_v2(ctx: docket.WorkflowContext, name: str) -> dict[str, Any]:
    greeting = await ctx.step(greet, name)
    await ctx.sleep(timedelta(minutes=5))
    total = await ctx.step("triple", 21)  # changed-step
    return {"greeting": greeting, "total": total}


@changed.workflow(name="fan_out")
async def fan_out_v2(ctx: docket.WorkflowContext, n: int) -> list[int]:
    results = list(await asyncio.gather(*(ctx.step(double, i) for i in range(n))))
    await ctx.sleep(1)  # extra-timer
    return results


@changed.workflow(name="race")
async def race_v2(ctx: docket.WorkflowContext) -> str:
    step = asyncio.ensure_future(ctx.step(greet, "changed"))
    nap = asyncio.ensure_future(ctx.sleep(10))
    done, pending = await asyncio.wait({step, nap}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return "step" if step in done else "timer"


@changed.workflow(name="waits_after_sleep")
async def waits_after_sleep_v2(ctx: docket.WorkflowContext) -> str:
    await ctx.sleep(60)
    await ctx.step(greet, "woke")  # added-after-sleep
    await ctx.wait_for_signal("go")
    return await ctx.step(greet, "go")


@dataclass
class ItemV2:
    name: str
    quantity: int  # a new field without a default: recorded items cannot be rebuilt


@changed.workflow(name="Basket")
class BasketV2:
    def __init__(self) -> None:
        self.items: list[Any] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        await ctx.wait_until(lambda: bool(self.items))
        return len(self.items)

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, item: ItemV2) -> None:
        self.items.append(item)


@changed.workflow(name="starts_child")
async def starts_child_v2(ctx: docket.WorkflowContext, n: int) -> Any:
    return await ctx.child("kid", n + 1, workflow_id="kid-1")


@changed.workflow(name="names_child")
async def names_child_v2(ctx: docket.WorkflowContext, n: int) -> Any:
    return await ctx.child("kid", n, workflow_id="kid-2")


@changed.workflow(name="signals_peer")
async def signals_peer_v2(ctx: docket.WorkflowContext, n: int) -> None:
    await ctx.external_workflow("peer").signal("poke", n + 1)


@changed.workflow(name="calls_step_directly")
async def gathered_v2(ctx: docket.WorkflowContext) -> Any:
    return await asyncio.gather(ctx.step(greet, "a"), ctx.step("triple", 1))  # gathered-change


# -- running and replaying ------------------------------------------------------------------------


def step_results(name: str, args: list[Any]) -> Any:
    step = app.find_step(name)
    assert step is not None
    return step.fn(*args)


def test_workflow_runs_and_its_own_history_replays_cleanly() -> None:
    driver = Driver(app, "order", "Ada")
    result = driver.run(step_results)
    assert result["greeting"] == "Hello, Ada!" and result["total"] == 42
    assert result["token"] == "side-effect-value"
    # time is the activation's event time: after the 5 minute sleep fired
    assert result["now"] == "2023-11-14T22:18:20+00:00"
    assert [e["body"][0] for e in driver.events] == [
        "WorkflowStarted", "StepScheduled", "StepCompleted", "TimerStarted", "TimerFired",
        "StepScheduled", "StepCompleted", "SideEffectRecorded", "WorkflowCompleted"]
    timer = next(e for e in driver.events if e["body"][0] == "TimerStarted")
    assert timer["body"][1]["fire_at_us"] == T0 + 300_000_000

    instance = driver.fresh_instance()
    assert replay(instance, driver.events) == []
    assert instance.closed and not instance.replaying
    assert replay_history(app, driver.events).ok


def test_replay_gives_the_same_deterministic_values() -> None:
    first = Driver(app, "order", "Ada")
    second = Driver(app, "order", "Ada")
    assert first.run(step_results) == second.run(step_results)
    assert [EVENTS.encode(e) for e in first.events] == [EVENTS.encode(e) for e in second.events]


def test_replay_of_a_partial_history_resumes_where_it_stopped() -> None:
    driver = Driver(app, "order", "Bo")
    driver.start()
    driver.complete(1, "Hello, Bo!")
    instance = driver.fresh_instance()
    assert replay(instance, driver.events) == []
    # the replayed instance continues exactly like the live one
    fired = instance.activate([{**driver.events[-1], "event_id": 99, "body": ("TimerFired", {"seq": 2})}],
                              T0 + 300_000_000)
    assert kinds(fired) == [("StepScheduled", "double")]
    assert kinds(driver.fire(2)) == kinds(fired)


def test_changed_step_raises_nondeterminism_naming_workflow_event_and_location() -> None:
    driver = Driver(app, "order", "Ada")
    driver.run(step_results)
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(changed), driver.events)
    message = str(caught.value)
    scheduled = [e for e in driver.events if e["body"][0] == "StepScheduled"]
    event_id = scheduled[1]["event_id"]
    assert "workflow 'order' (workflow_id=wf-1, run=" in message
    assert f"asked for step 'triple' at seq 3 ({THIS_FILE}:{line_of('changed-step')})" in message
    assert f"but history event {event_id} recorded step 'double' at seq 3" in message
    assert re.search(r"\(.+\.py:\d+\)", message)
    # through the public replay API, the error is reported, not raised
    result = replay_history(changed, driver.events)
    assert not result.ok and str(result.error) == message


def test_extra_timer_before_completion_is_nondeterministic() -> None:
    driver = Driver(app, "fan_out", 2)
    assert driver.run(step_results) == [0, 2]
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(changed), driver.events)
    message = str(caught.value)
    assert "workflow 'fan_out'" in message
    assert f"asked for a timer at seq 3 ({THIS_FILE}:{line_of('extra-timer')})" in message
    assert f"but history event {driver.events[-1]['event_id']} recorded the workflow to complete" in message


def test_unregistered_workflow_cannot_be_replayed() -> None:
    driver = Driver(app, "background")
    driver.run(step_results)
    result = replay_history(changed, driver.events)
    assert not result.ok and "workflow type 'background'" in str(result.error)


def test_nondeterminism_inside_gather_names_the_workflow_line() -> None:
    original = docket.App("g1")
    original.step(greet.fn)
    original.step(double.fn)

    @original.workflow(name="calls_step_directly")
    async def gathered(ctx: docket.WorkflowContext) -> Any:
        return await asyncio.gather(ctx.step(greet, "a"), ctx.step(double, 1))

    driver = Driver(original, "calls_step_directly")
    driver.run(step_results)
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(changed), driver.events)
    assert f"{THIS_FILE}:{line_of('gathered-change')}" in str(caught.value)


# -- asyncio inside workflows ---------------------------------------------------------------------


def test_gather_schedules_all_steps_in_one_activation_and_keeps_order() -> None:
    driver = Driver(app, "fan_out", 3)
    assert kinds(driver.start()) == [("StepScheduled", "double")] * 3
    assert [driver.steps[s].body["args"] for s in (1, 2, 3)] == [[to_payload(i)] for i in range(3)]
    assert driver.complete(3, 4) == []
    assert driver.complete(1, 0) == []
    (done,) = driver.complete(2, 2)
    assert done.kind == "WorkflowCompleted" and from_payload(done.body["result"]) == [0, 2, 4]
    assert replay(driver.fresh_instance(), driver.events) == []


@pytest.mark.parametrize("winner", ["step", "timer"])
def test_wait_first_completed_and_cancel_the_loser(winner: str) -> None:
    driver = Driver(app, "race")
    assert kinds(driver.start()) == [("StepScheduled", "slow"), ("TimerStarted", 2)]
    if winner == "step":
        cancelled, done = driver.complete(1, "slow")
        assert (cancelled.kind, cancelled.body["seq"]) == ("TimerCancelled", 2)  # the loser's sleep
        assert from_payload(done.body["result"]) == "step"
    else:
        cancelled, done = driver.fire(2)
        assert (cancelled.kind, cancelled.body["seq"]) == ("StepCancelRequested", 1)  # the loser
        assert from_payload(done.body["result"]) == "timer"
        assert driver.complete(1, "late") == [], "a late result of a cancelled step is ignored"
    assert replay(driver.fresh_instance(), driver.events) == []
    with pytest.raises(NondeterminismError, match="asked for step 'greet' at seq 1"):
        replay(driver.fresh_instance(changed), driver.events)


def test_create_task_runs_concurrently_with_the_main_coroutine() -> None:
    driver = Driver(app, "background")
    # the task starts on the next loop iteration, after main asked for its step
    assert kinds(driver.start()) == [("StepScheduled", "greet"), ("TimerStarted", 2)]
    assert driver.complete(1, "hi") == []
    assert kinds(driver.fire(2)) == [("StepScheduled", "double")]
    (done,) = driver.complete(3, 10)
    assert from_payload(done.body["result"]) == ["hi", 10]
    assert replay(driver.fresh_instance(), driver.events) == []


def test_asyncio_timeout_is_a_durable_timer() -> None:
    driver = Driver(app, "with_timeout")
    assert kinds(driver.start()) == [("TimerStarted", 1), ("StepScheduled", "slow")]
    assert driver.timers[1] == T0 + 30_000_000
    cancelled, done = driver.fire(1)
    assert (cancelled.kind, cancelled.body["seq"]) == ("StepCancelRequested", 2)
    assert from_payload(done.body["result"]) == "timed out"
    assert replay(driver.fresh_instance(), driver.events) == []


def test_cancelled_sleep_cancels_its_durable_timer() -> None:
    driver = Driver(app, "cancels_sleep")
    assert kinds(driver.start()) == [("TimerStarted", 1), ("TimerCancelled", 1), ("StepScheduled", "greet")]
    (done,) = driver.complete(2, "Hello, after!")
    assert from_payload(done.body["result"]) == "Hello, after!"


def test_workflow_time_is_event_time_not_wall_time() -> None:
    loop = DeterministicLoop(lambda when, handle: None)
    loop.set_time(12.5)
    assert loop.time() == 12.5
    driver = Driver(app, "order", "x")
    driver.now_us = 1_000_000  # 1970
    driver.run(step_results)
    assert driver.result()["now"].startswith("1970-01-01T00:05:01")


# -- misuse ------------------------------------------------------------------------------------------


def test_calling_a_step_directly_in_workflow_code_raises_workflow_error() -> None:
    driver = Driver(app, "calls_step_directly")
    (failed,) = driver.start()
    assert failed.kind == "WorkflowFailed"
    failure = failed.body["failure"]
    assert failure["type"] == "docket.errors.WorkflowError"
    assert "step 'greet' was called directly inside workflow code" in failure["message"]
    assert "await ctx.step(greet, ...)" in failure["message"]
    assert "test_runtime.py" in failure["stack"]
    # the same step called outside workflow code is a plain function call
    assert greet("x") == "Hello, x!"


def test_direct_step_call_error_is_a_workflow_error_users_can_see() -> None:
    driver = Driver(app, "catches_everything")
    driver.start()
    assert driver.result() == WorkflowError.__name__


def test_ctx_step_rejects_things_that_are_not_steps() -> None:
    driver = Driver(app, "passes_a_non_step")
    (failed,) = driver.start()
    assert failed.kind == "WorkflowFailed"
    assert "ctx.step needs a registered step or a step name" in failed.body["failure"]["message"]
    assert "passes_a_non_step" in failed.body["failure"]["message"]


def test_unencodable_step_argument_fails_the_workflow_with_a_clear_error() -> None:
    bad = docket.App("bad-args")
    bad.step(greet.fn)

    @bad.workflow
    async def sends_object(ctx: docket.WorkflowContext) -> Any:
        return await ctx.step(greet, object())  # type: ignore[arg-type]

    driver = Driver(bad, "sends_object")
    (failed,) = driver.start()
    assert failed.kind == "WorkflowFailed"
    assert failed.body["failure"]["type"] == "docket.errors.SerializationError"
    assert "cannot encode argument 0 of step 'greet'" in failed.body["failure"]["message"]


def test_a_step_added_where_the_last_activation_recorded_nothing_is_nondeterministic() -> None:
    """The timer fired and the code, waiting for a signal, asked for nothing: an activation
    that recorded nothing is still an activation, and new code asking for a step there
    must be caught (else the engine drops the step and the run waits for it forever)."""
    driver = Driver(app, "waits_after_sleep")
    driver.start()
    assert driver.fire(1) == []  # the history ends with that empty activation
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(changed), driver.events)
    assert (
        f"asked for step 'greet' at seq 2 ({THIS_FILE}:{line_of('added-after-sleep')}), but history "
        f"recorded nothing more after event {driver.events[-1]['event_id']}"
    ) in str(caught.value)
    assert not replay_history(changed, driver.events).ok
    assert replay_history(app, driver.events).ok


def test_resolutions_of_a_run_terminated_before_its_code_ran_them_are_not_checked() -> None:
    """A signal and a terminate in one batch: the signal is recorded, the run closes, and its
    code never sees the signal. Replay must not hold against the code what it never asked."""
    driver = Driver(app, "waits_after_sleep")
    driver.start()
    driver.fire(1)
    driver._record("SignalReceived", {"signal_name": "go", "args": [], "kwargs": {}}, 3)
    driver._record("WorkflowTerminated", {"reason": "stop"}, 0)
    assert kinds(replay(driver.fresh_instance(), driver.events)) == [("StepScheduled", "greet")]
    assert replay_history(app, driver.events).ok


def test_code_that_cannot_take_its_history_is_reported_not_raised() -> None:
    """A signal recorded with an Item that the new code's ItemV2 cannot rebuild: the engine
    would stop the execution, and replay reports that run as failed (an exception out of
    replay_history ended `docket workflow replay` before the other runs were checked)."""
    driver = Driver(app, "Basket")
    driver.start()
    driver.activate([("SignalReceived", {"signal_name": "add", "args": [to_payload(Item("tea"))], "kwargs": {}})])
    assert driver.result() == 1
    assert replay_history(app, driver.events).ok
    result = replay_history(changed, driver.events)
    assert not result.ok
    assert "workflow 'Basket' (workflow_id=wf-1, run=" in str(result.error)
    assert "cannot replay its history: running its code raised SerializationError" in str(result.error)
    assert "cannot rebuild ItemV2" in str(result.error)


@pytest.mark.parametrize(
    ("workflow", "asked", "recorded"),
    [
        ("starts_child", "child workflow 'kid' ('kid-1') at seq 1 with arguments (2)",
         "child workflow 'kid' ('kid-1') at seq 1 with arguments (1)"),
        ("names_child", "child workflow 'kid' ('kid-2') at seq 1", "child workflow 'kid' ('kid-1') at seq 1"),
        ("signals_peer", "signal 'poke' to 'peer' at seq 1 with arguments (2)",
         "signal 'poke' to 'peer' at seq 1 with arguments (1)"),
    ],
)
def test_a_child_or_signal_with_other_arguments_or_id_is_nondeterministic(
    workflow: str, asked: str, recorded: str
) -> None:
    """As for a step: the same call with other inputs is another call (the child that runs,
    or the signal that was sent, has the recorded ones)."""
    driver = Driver(app, workflow, 1)
    driver.start()
    with pytest.raises(NondeterminismError) as caught:
        replay(driver.fresh_instance(changed), driver.events)
    assert f"asked for {asked} (" in str(caught.value)
    assert f"but history event 2 recorded {recorded}." in str(caught.value)
    assert replay_history(app, driver.events).ok
