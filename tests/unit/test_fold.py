"""The pure state machine: fold (event -> state) and decide (command -> events).

Commands that no longer apply must decide nothing: that is what makes at-least-once delivery
of commands safe (DESIGN.md, Guarantees).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from docket.codec.payload import to_payload
from docket.codec.records import EVENTS, STATES
from docket.execution.decide import (
    ALLOW_AFTER_CLOSE,
    ID_REUSE_POLICIES,
    REJECT_DUPLICATE,
    RESOLUTIONS,
    RETURN_EXISTING,
    Decision,
    decide,
)
from docket.execution.fold import COMPLETED, FAILED, HANDLERS, RUNNING, apply
from docket.execution.ids import run_id_for, timer_id
from docket.retry import RetryPolicy

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WID = "order-1"
T0 = 1_700_000_000_000_000
START_CMD = "start-cmd-1"
RUN = run_id_for(START_CMD)


def union_names(family: str) -> list[str]:
    raw = json.loads((SCHEMAS / f"{family}.avsc").read_text())
    (body,) = [f for f in raw["fields"] if f["name"] == "body"]
    return [branch["name"] for branch in body["type"]]


# -- a small history builder --------------------------------------------------------------------


class History:
    """Events of one workflow, folded as they are added (like the processor's _record)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.state: dict[str, Any] | None = None

    def add(self, kind: str, body: dict[str, Any], *, run_id: str = RUN, ts_us: int = T0,
            activation: int = 0, command_id: str = "") -> dict[str, Any]:
        event_id = 1 if kind == "WorkflowStarted" else self.state["last_event_id"] + 1  # type: ignore[index]
        event = {"workflow_id": WID, "run_id": run_id, "event_id": event_id,
                 "activation": activation, "ts_us": ts_us, "command_id": command_id,
                 "body": (kind, body)}
        # every event must be encodable, and fold must work on the decoded form too
        event = EVENTS.decode(EVENTS.encode(event))
        self.state = apply(self.state, event)
        STATES.encode(self.state)  # the folded state always fits schemas/state.avsc
        self.events.append(event)
        return event

    def apply_decision(self, decision: Decision, ts_us: int) -> None:
        for kind, body in decision.events:
            self.add(kind, body, run_id=decision.run_id or "", ts_us=ts_us)

    def scheduled_step(self, state: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        for event in self.events:
            if event["run_id"] == state["run_id"] and event["event_id"] == step["scheduled_event_id"]:
                body: dict[str, Any] = event["body"][1]
                return body
        raise AssertionError(f"no StepScheduled for {step}")

    def decide(self, command: dict[str, Any], now_us: int = T0,
               known: tuple[str, ...] = ("checkout",)) -> Decision:
        before = copy.deepcopy(self.state)
        decision = decide(self.state, command, now_us, known_workflow=lambda t: t in known,
                          scheduled_step=self.scheduled_step,
                          run_exists=lambda run_id: any(e["run_id"] == run_id for e in self.events))
        assert self.state == before, "decide must not mutate the state"
        return decision


def started_body(workflow_type: str = "checkout", reply_to: str | None = "client-1") -> dict[str, Any]:
    return {"workflow_type": workflow_type, "args": [to_payload(1)], "kwargs": {},
            "task_queue": "default", "reply_to": reply_to, "run_chain": [], "watchers": [],
            "start_at_us": None, "run_timeout_ms": None, "execution_deadline_us": None, "parent": None}


def scheduled_body(seq: int, *, heartbeat_ms: int | None = None, start_to_close_ms: int | None = None,
                   maximum_attempts: int = 3, local: bool = False,
                   non_retryable: tuple[str, ...] = (), schedule_to_close_ms: int | None = None,
                   schedule_to_start_ms: int | None = None) -> dict[str, Any]:
    retry = RetryPolicy(maximum_attempts=maximum_attempts, non_retryable_error_types=non_retryable)
    return {"seq": seq, "step_name": f"step{seq}", "args": [], "kwargs": {}, "task_queue": "default",
            "local": local, "retry": retry.to_record(), "start_to_close_ms": start_to_close_ms,
            "heartbeat_ms": heartbeat_ms, "schedule_to_close_ms": schedule_to_close_ms,
            "schedule_to_start_ms": schedule_to_start_ms}


def failure(type_name: str = "ValueError", *, non_retryable: bool = False) -> dict[str, Any]:
    return {"type": type_name, "message": "boom", "stack": "", "non_retryable": non_retryable,
            "details": None, "kind": "application", "cause": None}


def command(kind: str, body: dict[str, Any], command_id: str = "cmd", workflow_id: str = WID) -> dict[str, Any]:
    return {"command_id": command_id, "workflow_id": workflow_id, "ts_us": T0, "body": (kind, body)}


def start_command(command_id: str = START_CMD, policy: str = ALLOW_AFTER_CLOSE,
                  workflow_type: str = "checkout", reply_to: str | None = "client-1") -> dict[str, Any]:
    return command("StartWorkflow", {"workflow_type": workflow_type, "args": [to_payload(1)],
                                     "kwargs": {}, "task_queue": "default", "id_reuse_policy": policy,
                                     "reply_to": reply_to}, command_id)


def running() -> History:
    """A running run with: step 1 (heartbeat 1 s, start-to-close 5 s, 2 attempts), a pending
    sleep timer at seq 2, and step 3 plain."""
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1, heartbeat_ms=1000, start_to_close_ms=5000,
                                          maximum_attempts=2), activation=1)
    h.add("TimerStarted", {"seq": 2, "fire_at_us": T0 + 60_000_000}, activation=1)
    h.add("StepScheduled", scheduled_body(3), activation=1)
    return h


def closed(status: str = COMPLETED) -> History:
    h = running()
    if status == COMPLETED:
        h.add("WorkflowCompleted", {"result": to_payload("done")}, activation=2)
    else:
        h.add("WorkflowFailed", {"failure": failure()}, activation=2)
    return h


def is_noop(decision: Decision) -> bool:
    return not decision.events and not decision.timers and decision.run_id is None


# -- fold -------------------------------------------------------------------------------------


def test_every_event_type_has_exactly_one_fold_handler() -> None:
    names = union_names("event")
    assert len(names) == len(set(names))
    assert set(HANDLERS) == set(names), (
        f"missing handlers: {set(names) - set(HANDLERS)}, handlers for no event: {set(HANDLERS) - set(names)}")


def test_every_event_type_folds_and_bumps_last_event_id() -> None:
    h = running()
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 3)
    assert h.state["steps"]["1"]["started_us"] == T0 + 3
    h.add("StepHeartbeat", {"seq": 1, "attempt": 1, "details": to_payload({"page": 2})}, ts_us=T0 + 5)
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(), "retry_at_us": T0 + 9})
    h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 9)
    h.add("StepCancelRequested", {"seq": 1}, activation=1)
    assert h.state["steps"]["1"]["cancel_requested"] is True
    h.add("StepCompleted", {"seq": 1, "attempt": 2, "result": to_payload(1)}, activation=2)
    h.add("TimerFired", {"seq": 2}, activation=2)
    h.add("TimerStarted", {"seq": 9, "fire_at_us": T0 + 50}, activation=2)
    h.add("TimerCancelled", {"seq": 9, "fire_at_us": T0 + 50}, activation=2)
    assert "9" not in h.state["timers"]
    h.add("WatcherAdded", {"reply_to": "client-2"})
    h.add("SignalReceived", {"signal_name": "go", "args": [], "kwargs": {}}, activation=2)
    h.add("CommandsDeferred", {"reason": "broken", "commands": [b"cmd"]})
    assert h.state is not None and h.state["deferred"] == [b"cmd"]
    h.add("DeferredResumed", {"count": 1})
    h.add("StartDelayElapsed", {}, activation=2)
    h.add("ChildWorkflowScheduled", {"seq": 7, "workflow_type": "doubler", "workflow_id": "c", "args": [],
                                     "kwargs": {}, "task_queue": "default", "parent_close_policy": "abandon",
                                     "run_timeout_ms": None, "execution_timeout_ms": None}, activation=2)
    h.add("ChildWorkflowStarted", {"seq": 7, "run_id": "c-run"}, activation=2)
    assert h.state["children"]["7"]["run_id"] == "c-run"
    h.add("ChildCancelRequested", {"seq": 7}, activation=2)
    h.add("ChildWorkflowCompleted", {"seq": 7, "result": to_payload(2)}, activation=2)
    h.add("ChildWorkflowScheduled", {"seq": 8, "workflow_type": "doubler", "workflow_id": "d", "args": [],
                                     "kwargs": {}, "task_queue": "default", "parent_close_policy": "abandon",
                                     "run_timeout_ms": None, "execution_timeout_ms": None}, activation=2)
    h.add("ChildWorkflowFailed", {"seq": 8, "failure": failure()}, activation=2)
    assert h.state["children"] == {}
    h.add("ExternalSignalScheduled", {"seq": 9, "workflow_id": "x", "run_id": None, "signal_name": "s",
                                      "args": [], "kwargs": {}}, activation=2)
    assert h.state["signals_out"] == {"9": "x"}
    h.add("ExternalSignalDelivered", {"seq": 9}, activation=2)
    h.add("ExternalSignalScheduled", {"seq": 10, "workflow_id": "x", "run_id": None, "signal_name": "s",
                                      "args": [], "kwargs": {}}, activation=2)
    h.add("ExternalSignalFailed", {"seq": 10, "failure": failure()}, activation=2)
    assert h.state["signals_out"] == {}
    assert h.state["start_at_us"] is None
    h.add("CancelRequested", {"reason": "stop"}, activation=2)
    assert h.state["cancel_requested"] is True
    h.add("UpdateAccepted", {"update_id": "u-1", "update_name": "add", "args": [], "kwargs": {},
                             "reply_to": "client-3"}, activation=2)
    h.add("UpdateWatcherAdded", {"update_id": "u-1", "reply_to": "client-4"})
    assert h.state["updates"] == {"u-1": {"update_name": "add", "watchers": ["client-3", "client-4"]}}
    h.add("UpdateCompleted", {"update_id": "u-1", "result": to_payload(1), "failure": None}, activation=2)
    assert h.state["updates"] == {} and h.state["updates_done"] == {"u-1": h.state["last_event_id"]}
    assert h.state["deferred"] == [] and h.state["stopped_reason"] is None
    before = dict(h.state)
    h.add("RecordEmitted", {"seq": 11, "topic": "orders", "key": "k", "value": b"v", "headers": {}},
          activation=2)
    assert {k: v for k, v in h.state.items() if k != "last_event_id"} == {
        k: v for k, v in before.items() if k != "last_event_id"}  # the record is only an output
    before = dict(h.state)
    h.add("SideEffectRecorded", {"seq": 12, "result": to_payload(7), "failure": None}, activation=2)
    assert {k: v for k, v in h.state.items() if k != "last_event_id"} == {
        k: v for k, v in before.items() if k != "last_event_id"}  # the code had the outcome
    h.add("StepFailed", {"seq": 3, "attempt": 1, "failure": failure()}, activation=3)
    h.add("WorkflowFailed", {"failure": failure()}, activation=3, ts_us=T0 + 20)
    kinds = {e["body"][0] for e in h.events} | {"WorkflowCompleted", "WorkflowTerminated",
                                                "WorkflowCancelled", "WorkflowContinuedAsNew",
                                                "WorkflowTimedOut"}
    assert kinds == set(union_names("event"))
    assert [e["event_id"] for e in h.events] == list(range(1, len(h.events) + 1))
    state = h.state
    assert state is not None
    assert state["last_event_id"] == len(h.events) and state["last_activation"] == 3
    assert (state["status"], state["closed_us"], state["steps"], state["timers"]) == (FAILED, T0 + 20, {}, {})
    assert state["watchers"] == ["client-1", "client-2"]


def test_fold_tracks_steps_timers_and_heartbeats() -> None:
    h = running()
    state = h.state
    assert state is not None
    assert state["status"] == RUNNING and state["run_id"] == RUN
    assert set(state["steps"]) == {"1", "3"} and state["timers"] == {"2": T0 + 60_000_000}
    assert state["steps"]["1"]["scheduled_event_id"] == 2 and state["steps"]["1"]["attempt"] == 1
    h.add("StepHeartbeat", {"seq": 1, "attempt": 1, "details": to_payload("half")}, ts_us=T0 + 700)
    h.add("StepHeartbeat", {"seq": 1, "attempt": 1, "details": None}, ts_us=T0 + 800)
    step = h.state["steps"]["1"]  # type: ignore[index]
    assert step["last_heartbeat_us"] == T0 + 800
    assert step["heartbeat_details"] == to_payload("half"), "details survive a detail-less heartbeat"
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(), "retry_at_us": T0 + 900})
    assert h.state["steps"]["1"]["retry_at_us"] == T0 + 900  # type: ignore[index]
    h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 900)
    step = h.state["steps"]["1"]  # type: ignore[index]
    assert (step["attempt"], step["retry_at_us"], step["dispatched_us"]) == (2, None, T0 + 900)


def test_watchers_are_not_duplicated() -> None:
    h = running()
    h.add("WatcherAdded", {"reply_to": "client-1"})
    h.add("WatcherAdded", {"reply_to": "client-9"})
    assert h.state["watchers"] == ["client-1", "client-9"]  # type: ignore[index]


def test_new_run_replaces_the_old_state() -> None:
    h = closed()
    h.add("WorkflowStarted", started_body(reply_to=None), run_id="run-2", activation=1)
    state = h.state
    assert state is not None
    assert (state["run_id"], state["status"], state["steps"], state["watchers"]) == ("run-2", RUNNING, {}, [])
    assert state["last_event_id"] == 1


def test_continue_as_new_closes_the_run_and_the_next_carries_the_chain() -> None:
    h = running()
    h.add("WorkflowContinuedAsNew", {"new_run_id": "run-2", "workflow_type": "checkout", "args": [],
                                     "kwargs": {}, "task_queue": "default", "signals": []},
          activation=2)
    assert h.state is not None and h.state["status"] == "continued_as_new"
    assert h.state["steps"] == {} and h.state["timers"] == {}
    h.add("WorkflowStarted", {**started_body(reply_to=None), "run_chain": [RUN], "watchers": ["client-1"]},
          run_id="run-2", activation=1)
    assert (h.state["run_id"], h.state["status"], h.state["run_chain"], h.state["watchers"]) == (
        "run-2", RUNNING, [RUN], ["client-1"])


def test_a_timed_out_run_closes_with_a_timeout_failure() -> None:
    h = running()
    h.add("WorkflowTimedOut", {"timeout": "execution"}, ts_us=T0 + 7)
    state = h.state
    assert state is not None and (state["status"], state["closed_us"]) == ("timed_out", T0 + 7)
    assert state["failure"]["kind"] == "timeout.execution" and state["steps"] == {}


def test_apply_refuses_events_without_a_started_run() -> None:
    event = {"workflow_id": WID, "run_id": RUN, "event_id": 2, "activation": 0, "ts_us": 0,
             "command_id": "", "body": ("TimerFired", {"seq": 1})}
    with pytest.raises(ValueError, match=r"event 2 \(TimerFired\) of run .* has no started run"):
        apply(None, event)
    with pytest.raises(ValueError, match="has no started run"):
        apply(running().state, {**event, "run_id": "another-run"})


def test_fold_from_scratch_equals_incremental_state() -> None:
    h = running()
    h.add("StepCompleted", {"seq": 3, "attempt": 1, "result": to_payload("x")}, activation=2)
    state: dict[str, Any] | None = None
    for event in h.events:
        state = apply(copy.deepcopy(state), EVENTS.decode(EVENTS.encode(event)))
    assert state == h.state
    assert STATES.decode(STATES.encode(state)) == state  # type: ignore[arg-type]


# -- decide: every command type is handled ----------------------------------------------------


def test_every_command_type_is_decided() -> None:
    h = running()
    samples = {
        "StartWorkflow": start_command(),
        "CompleteStep": command("CompleteStep", {"run_id": RUN, "seq": 3, "attempt": 1,
                                                 "result": to_payload(1)}),
        "FailStep": command("FailStep", {"run_id": RUN, "seq": 3, "attempt": 1, "failure": failure()}),
        "HeartbeatStep": command("HeartbeatStep", {"run_id": RUN, "seq": 1, "attempt": 1, "details": None}),
        "StartStep": command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1}),
        "FireTimer": command("FireTimer", {"run_id": RUN, "kind": "sleep", "seq": 2, "attempt": 0,
                                           "fire_at_us": T0}),
        "WatchWorkflow": command("WatchWorkflow", {"run_id": None, "reply_to": "c"}),
        "SignalWorkflow": command("SignalWorkflow", {"run_id": None, "signal_name": "s", "args": [],
                                                     "kwargs": {}, "reply_to": "c"}),
        "QueryWorkflow": command("QueryWorkflow", {"run_id": None, "query_name": "q", "args": [],
                                                   "kwargs": {}, "reply_to": "c"}),
        "TerminateWorkflow": command("TerminateWorkflow", {"run_id": None, "reason": "r", "reply_to": "c"}),
        "CancelWorkflow": command("CancelWorkflow", {"run_id": None, "reason": "r", "reply_to": "c"}),
        "ReportChild": command("ReportChild", {"run_id": RUN, "seq": 9, "child_run_id": "c", "outcome": "started",
                                               "result": None, "failure": None}),
        "ReportSignal": command("ReportSignal", {"run_id": RUN, "seq": 9, "failure": None}),
        "UpdateWorkflow": command("UpdateWorkflow", {"run_id": None, "update_id": "u", "update_name": "u",
                                                     "args": [], "kwargs": {}, "reply_to": "c"}),
    }
    assert set(samples) == set(union_names("command"))
    for kind, cmd in samples.items():
        decision = h.decide(cmd)
        assert isinstance(decision, Decision), kind


# -- decide: stale and duplicate commands decide nothing ---------------------------------------


def _stale_cases() -> dict[str, tuple[str, Any]]:
    """name -> (history kind, command)."""
    run = RUN
    return {
        "completion for the wrong attempt": ("running", command(
            "CompleteStep", {"run_id": run, "seq": 3, "attempt": 2, "result": to_payload(1)})),
        "completion for an unknown seq": ("running", command(
            "CompleteStep", {"run_id": run, "seq": 99, "attempt": 1, "result": to_payload(1)})),
        "completion for another run": ("running", command(
            "CompleteStep", {"run_id": "old-run", "seq": 3, "attempt": 1, "result": to_payload(1)})),
        "completion for a closed run": ("closed", command(
            "CompleteStep", {"run_id": run, "seq": 3, "attempt": 1, "result": to_payload(1)})),
        "completion of an unknown workflow": ("none", command(
            "CompleteStep", {"run_id": run, "seq": 3, "attempt": 1, "result": to_payload(1)})),
        "failure for the wrong attempt": ("running", command(
            "FailStep", {"run_id": run, "seq": 3, "attempt": 0, "failure": failure()})),
        "failure for a closed run": ("failed", command(
            "FailStep", {"run_id": run, "seq": 3, "attempt": 1, "failure": failure()})),
        "heartbeat for the wrong attempt": ("running", command(
            "HeartbeatStep", {"run_id": run, "seq": 1, "attempt": 2, "details": None})),
        "heartbeat for a closed run": ("closed", command(
            "HeartbeatStep", {"run_id": run, "seq": 1, "attempt": 1, "details": None})),
        "sleep timer for a closed run": ("closed", command(
            "FireTimer", {"run_id": run, "kind": "sleep", "seq": 2, "attempt": 0, "fire_at_us": T0})),
        "sleep timer for another run": ("running", command(
            "FireTimer", {"run_id": "old-run", "kind": "sleep", "seq": 2, "attempt": 0, "fire_at_us": T0})),
        "sleep timer with no pending timer": ("running", command(
            "FireTimer", {"run_id": run, "kind": "sleep", "seq": 7, "attempt": 0, "fire_at_us": T0})),
        "retry timer when no retry is due": ("running", command(
            "FireTimer", {"run_id": run, "kind": "retry", "seq": 3, "attempt": 1, "fire_at_us": T0})),
        "retry timer for an old attempt": ("running", command(
            "FireTimer", {"run_id": run, "kind": "retry", "seq": 3, "attempt": 5, "fire_at_us": T0})),
        "start-to-close timer for an old attempt": ("running", command(
            "FireTimer", {"run_id": run, "kind": "start_to_close", "seq": 1, "attempt": 3,
                          "fire_at_us": T0})),
        "heartbeat timer for a finished step": ("running", command(
            "FireTimer", {"run_id": run, "kind": "heartbeat", "seq": 42, "attempt": 1, "fire_at_us": T0})),
        "heartbeat timer for a failed run": ("failed", command(
            "FireTimer", {"run_id": run, "kind": "heartbeat", "seq": 1, "attempt": 1, "fire_at_us": T0})),
    }


@pytest.mark.parametrize("case", sorted(_stale_cases()))
def test_stale_commands_decide_nothing(case: str) -> None:
    where, cmd = _stale_cases()[case]
    h = {"running": running, "closed": closed, "failed": lambda: closed(FAILED),
         "none": History}[where]()
    decision = h.decide(cmd, now_us=T0 + 10_000_000)
    assert is_noop(decision), decision
    assert decision.replies == []


def test_completion_while_waiting_for_a_retry_is_ignored() -> None:
    h = running()
    h.apply_decision(h.decide(command("FailStep", {"run_id": RUN, "seq": 3, "attempt": 1,
                                                   "failure": failure()})), T0)
    assert h.state["steps"]["3"]["retry_at_us"] is not None  # type: ignore[index]
    late = command("CompleteStep", {"run_id": RUN, "seq": 3, "attempt": 1, "result": to_payload(1)})
    assert is_noop(h.decide(late))
    again = command("FailStep", {"run_id": RUN, "seq": 3, "attempt": 1, "failure": failure()})
    assert is_noop(h.decide(again)), "a duplicate failure must not schedule a second retry"


def test_duplicate_completion_is_a_noop_after_the_first() -> None:
    h = running()
    done = command("CompleteStep", {"run_id": RUN, "seq": 3, "attempt": 1, "result": to_payload("r")})
    first = h.decide(done)
    assert first.events == [("StepCompleted", {"seq": 3, "attempt": 1, "result": to_payload("r")})]
    assert first.run_id == RUN
    h.apply_decision(first, T0)
    assert is_noop(h.decide(done))


def test_duplicate_timer_fire_is_a_noop_after_the_first() -> None:
    h = running()
    fire = command("FireTimer", {"run_id": RUN, "kind": "sleep", "seq": 2, "attempt": 0,
                                 "fire_at_us": T0 + 60_000_000})
    first = h.decide(fire, now_us=T0 + 60_000_000)
    assert first.events == [("TimerFired", {"seq": 2})]
    h.apply_decision(first, T0 + 60_000_000)
    assert is_noop(h.decide(fire, now_us=T0 + 61_000_000))


def test_redelivered_start_records_nothing_and_answers_started() -> None:
    h = running()
    decision = h.decide(start_command())
    assert is_noop(decision)
    assert [(r["kind"], r["run_id"], r["request_id"]) for r in decision.replies] == [
        ("started", RUN, START_CMD)]
    # also after the run closed: it is still the same start
    h = closed()
    decision = h.decide(start_command())
    assert is_noop(decision) and decision.replies[0]["kind"] == "started"


def test_redelivered_start_without_reply_to_is_silent() -> None:
    decision = running().decide(start_command(reply_to=None))
    assert is_noop(decision) and decision.replies == []


def test_redelivered_start_of_an_older_run_starts_nothing() -> None:
    h = closed()  # run 1, started by START_CMD, completed
    second = h.decide(start_command("start-cmd-2"))
    assert second.events and second.events[0][0] == "WorkflowStarted"
    h.apply_decision(second, T0 + 1)
    h.add("WorkflowCompleted", {"result": to_payload(2)}, run_id=second.run_id or "", activation=2)
    redelivered = h.decide(start_command(START_CMD))  # the first start, delivered again
    assert is_noop(redelivered), f"re-started run {redelivered.run_id} (run 1 was {RUN})"


# -- decide: start and ID reuse -------------------------------------------------------------------


def test_start_of_a_new_workflow() -> None:
    decision = History().decide(start_command())
    assert decision.run_id == RUN == run_id_for(START_CMD)
    assert decision.events == [("WorkflowStarted", started_body())]
    assert decision.replies == [], "the 'started' reply is an output of the recorded event"


@pytest.mark.parametrize(
    ("existing", "policy", "outcome"),
    [
        ("running", ALLOW_AFTER_CLOSE, "already_started"),
        ("running", REJECT_DUPLICATE, "already_started"),
        ("running", RETURN_EXISTING, "existing"),
        ("completed", ALLOW_AFTER_CLOSE, "new run"),
        ("failed", ALLOW_AFTER_CLOSE, "new run"),
        ("completed", REJECT_DUPLICATE, "already_started"),
        ("failed", REJECT_DUPLICATE, "already_started"),
        ("completed", RETURN_EXISTING, "existing"),
        ("none", REJECT_DUPLICATE, "new run"),
        ("none", RETURN_EXISTING, "new run"),
    ],
)
def test_id_reuse_policies(existing: str, policy: str, outcome: str) -> None:
    h = {"running": running, "completed": closed, "failed": lambda: closed(FAILED), "none": History}[existing]()
    decision = h.decide(start_command("another-start", policy=policy, reply_to="client-7"))
    if outcome == "new run":
        assert decision.run_id == run_id_for("another-start") != RUN
        assert [k for k, _ in decision.events] == ["WorkflowStarted"]
        h.apply_decision(decision, T0 + 5)
        assert h.state["run_id"] == decision.run_id and h.state["status"] == RUNNING  # type: ignore[index]
        return
    assert is_noop(decision)
    assert [(r["kind"], r["run_id"], r["reply_to"], r["request_id"]) for r in decision.replies] == [
        (outcome, RUN, "client-7", "another-start")]


def test_unknown_id_reuse_policy_is_rejected() -> None:
    decision = running().decide(start_command("s2", policy="sometimes"))
    assert is_noop(decision)
    (reply,) = decision.replies
    assert reply["kind"] == "rejected"
    assert "unknown id_reuse_policy 'sometimes'" in reply["failure"]["message"]
    assert all(p in reply["failure"]["message"] for p in ID_REUSE_POLICIES)


def test_unknown_workflow_type_is_rejected() -> None:
    decision = History().decide(start_command(workflow_type="nope"))
    assert is_noop(decision)
    (reply,) = decision.replies
    assert reply["kind"] == "rejected" and reply["run_id"] == ""
    assert "unknown workflow type 'nope'" in reply["failure"]["message"]
    assert reply["failure"]["non_retryable"] is True


# -- decide: retries and timeouts --------------------------------------------------------------


def test_failure_schedules_a_retry_then_the_retry_timer_starts_the_next_attempt() -> None:
    h = running()
    decision = h.decide(command("FailStep", {"run_id": RUN, "seq": 3, "attempt": 1,
                                             "failure": failure()}), now_us=T0 + 100)
    assert decision.events == [("StepAttemptFailed", {"seq": 3, "attempt": 1, "failure": failure(),
                                                      "retry_at_us": T0 + 100 + 1_000_000})]
    h.apply_decision(decision, T0 + 100)
    retry = command("FireTimer", {"run_id": RUN, "kind": "retry", "seq": 3, "attempt": 1,
                                  "fire_at_us": T0 + 1_000_100})
    decision = h.decide(retry, now_us=T0 + 1_000_100)
    assert decision.events == [("StepRetried", {"seq": 3, "attempt": 2})]
    h.apply_decision(decision, T0 + 1_000_100)
    assert is_noop(h.decide(retry)), "the same retry timer, fired twice, retries once"
    done = h.decide(command("CompleteStep", {"run_id": RUN, "seq": 3, "attempt": 2, "result": to_payload(1)}))
    assert [k for k, _ in done.events] == ["StepCompleted"]


def test_last_attempt_fails_the_step_with_the_cause() -> None:
    h = running()  # step 1 allows 2 attempts
    h.apply_decision(h.decide(command("FailStep", {"run_id": RUN, "seq": 1, "attempt": 1,
                                                   "failure": failure()})), T0)
    h.apply_decision(h.decide(command("FireTimer", {"run_id": RUN, "kind": "retry", "seq": 1,
                                                    "attempt": 1, "fire_at_us": T0})), T0)
    decision = h.decide(command("FailStep", {"run_id": RUN, "seq": 1, "attempt": 2, "failure": failure()}))
    ((kind, body),) = decision.events
    assert kind == "StepFailed" and body["attempt"] == 2
    assert body["failure"]["type"] == "StepError" and body["failure"]["kind"] == "step"
    assert "step 'step1' (seq 1) failed after 2 attempts: boom" == body["failure"]["message"]
    assert body["failure"]["cause"] == failure()
    assert kind in RESOLUTIONS


@pytest.mark.parametrize("by", ["flag", "policy"])
def test_non_retryable_failures_fail_the_step_at_once(by: str) -> None:
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1, maximum_attempts=0, non_retryable=("Payment",)), activation=1)
    bad = failure("Payment", non_retryable=False) if by == "policy" else failure(non_retryable=True)
    decision = h.decide(command("FailStep", {"run_id": RUN, "seq": 1, "attempt": 1, "failure": bad}))
    assert [k for k, _ in decision.events] == ["StepFailed"]
    assert "after 1 attempt: boom" in decision.events[0][1]["failure"]["message"]


def test_start_to_close_timeout_fails_the_attempt() -> None:
    h = running()
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0)
    fire = command("FireTimer", {"run_id": RUN, "kind": "start_to_close", "seq": 1, "attempt": 1,
                                 "fire_at_us": T0 + 5_000_000})
    decision = h.decide(fire, now_us=T0 + 5_000_000)
    ((kind, body),) = decision.events
    assert kind == "StepAttemptFailed"
    assert body["failure"]["kind"] == "timeout.start_to_close"
    assert "exceeded its start-to-close timeout of 5000 ms" in body["failure"]["message"]
    h.apply_decision(decision, T0 + 5_000_000)
    assert is_noop(h.decide(fire, now_us=T0 + 5_000_001)), "already failed, waiting for its retry"


def test_heartbeat_timer_rearms_while_heartbeats_arrive_then_times_out() -> None:
    h = running()  # step 1: heartbeat 1 s, scheduled at T0
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0)
    beat = h.decide(command("HeartbeatStep", {"run_id": RUN, "seq": 1, "attempt": 1,
                                              "details": to_payload(3)}), now_us=T0 + 600_000)
    assert beat.events == [("StepHeartbeat", {"seq": 1, "attempt": 1, "details": to_payload(3)})]
    h.apply_decision(beat, T0 + 600_000)

    first = command("FireTimer", {"run_id": RUN, "kind": "heartbeat", "seq": 1, "attempt": 1,
                                  "fire_at_us": T0 + 1_000_000})
    decision = h.decide(first, now_us=T0 + 1_000_000)
    assert decision.events == [] and decision.run_id is None
    due = T0 + 1_600_000
    assert decision.timers == [{
        "timer_id": timer_id(WID, RUN, "heartbeat", 1, 1, due), "run_id": RUN, "fire_at_us": due,
        "kind": "heartbeat", "seq": 1, "attempt": 1}]
    # deterministic: deciding the same fire again re-arms the same timer id
    assert h.decide(first, now_us=T0 + 1_000_000).timers == decision.timers

    second = command("FireTimer", {"run_id": RUN, "kind": "heartbeat", "seq": 1, "attempt": 1,
                                   "fire_at_us": due})
    decision = h.decide(second, now_us=due)
    ((kind, body),) = decision.events
    assert kind == "StepAttemptFailed" and body["failure"]["kind"] == "timeout.heartbeat"
    assert "heartbeat timeout of 1000 ms" in body["failure"]["message"]
    assert body["retry_at_us"] == due + 1_000_000


def test_heartbeat_timer_exactly_at_the_deadline_times_out() -> None:
    h = running()
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0)
    fire = command("FireTimer", {"run_id": RUN, "kind": "heartbeat", "seq": 1, "attempt": 1,
                                 "fire_at_us": T0 + 1_000_000})
    decision = h.decide(fire, now_us=T0 + 1_000_000)
    assert [k for k, _ in decision.events] == ["StepAttemptFailed"]


def _timeout_fire(kind: str, at_us: int, attempt: int = 1) -> dict[str, Any]:
    return command("FireTimer", {"run_id": RUN, "kind": kind, "seq": 1, "attempt": attempt,
                                 "fire_at_us": at_us})


def _armed(kind: str, at_us: int, attempt: int = 1) -> list[dict[str, Any]]:
    return [{"timer_id": timer_id(WID, RUN, kind, 1, attempt, at_us), "run_id": RUN,
             "fire_at_us": at_us, "kind": kind, "seq": 1, "attempt": attempt}]


@pytest.mark.parametrize(("kind", "limit_us"), [("start_to_close", 5_000_000),
                                                ("heartbeat", 1_000_000)])
def test_the_start_arms_the_timeouts_from_the_start(kind: str, limit_us: int) -> None:
    """Time in the task queue is not the step's: no timeout timer runs until the worker
    reports the start (the dispatch arms none), and then both count from it."""
    h = running()  # step 1: heartbeat 1 s, start-to-close 5 s, dispatched at T0
    at = T0 + 7_000_000  # later than both limits
    started = h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1}), now_us=at)
    assert started.events == [("StepStarted", {"seq": 1, "attempt": 1})]
    assert started.timers == _armed("start_to_close", at + 5_000_000) + _armed(
        "heartbeat", at + 1_000_000)
    h.apply_decision(started, at)
    assert h.state["steps"]["1"]["started_us"] == at
    early = h.decide(_timeout_fire(kind, at + limit_us - 1), now_us=at + limit_us - 1)
    assert early.events == [] and early.timers == _armed(kind, at + limit_us)  # a clock behind
    fired = h.decide(_timeout_fire(kind, at + limit_us), now_us=at + limit_us)
    assert [k for k, _ in fired.events] == ["StepAttemptFailed"]


def test_only_the_first_start_of_an_attempt_counts() -> None:
    """A task delivered again after its worker died does not push the deadline out: a step
    that keeps killing its worker still times out and runs out of attempts."""
    h = running()
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 1_000)
    again = h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1}),
                     now_us=T0 + 4_000_000)
    assert is_noop(again)
    fired = h.decide(_timeout_fire("start_to_close", T0 + 5_001_000), now_us=T0 + 5_001_000)
    assert [k for k, _ in fired.events] == ["StepAttemptFailed"]


def test_a_timer_armed_at_dispatch_by_an_older_docket_counts_from_the_dispatch() -> None:
    h = running()  # no StepStarted: its worker and processor predate them
    fired = h.decide(_timeout_fire("start_to_close", T0 + 5_000_000), now_us=T0 + 5_000_000)
    assert [k for k, _ in fired.events] == ["StepAttemptFailed"]


def test_start_to_close_counts_from_the_start_of_the_attempt() -> None:
    h = running()  # step 1: start-to-close 5 s, dispatched at T0
    started = h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1}),
                       now_us=T0 + 3_000_000)
    assert started.timers == _armed("start_to_close", T0 + 8_000_000) + _armed(
        "heartbeat", T0 + 4_000_000)
    h.apply_decision(started, T0 + 3_000_000)
    dispatch_due = h.decide(_timeout_fire("start_to_close", T0 + 5_000_000), now_us=T0 + 5_000_000)
    assert dispatch_due.events == [] and dispatch_due.timers == _armed("start_to_close", T0 + 8_000_000)
    late = h.decide(_timeout_fire("start_to_close", T0 + 8_000_000), now_us=T0 + 8_000_000)
    ((kind, body),) = late.events
    assert kind == "StepAttemptFailed" and body["failure"]["kind"] == "timeout.start_to_close"


def test_the_heartbeat_timeout_counts_from_the_start_until_the_first_heartbeat() -> None:
    h = running()  # step 1: heartbeat 1 s
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 2_500_000)
    decision = h.decide(_timeout_fire("heartbeat", T0 + 3_000_000), now_us=T0 + 3_000_000)
    assert decision.events == [] and decision.timers == _armed("heartbeat", T0 + 3_500_000)


def test_a_start_of_another_attempt_changes_nothing_and_a_retry_is_queued_again() -> None:
    h = running()
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 1)
    stale = h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 2}))
    assert is_noop(stale)
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(), "retry_at_us": T0 + 9})
    assert is_noop(h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1})))
    h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 9)
    assert h.state["steps"]["1"]["started_us"] is None  # attempt 2 waits in the queue


# -- decide: watch ---------------------------------------------------------------------------------


def test_watch() -> None:
    watch = command("WatchWorkflow", {"run_id": None, "reply_to": "client-5"}, "w-1")
    (reply,) = History().decide(watch).replies
    assert (reply["kind"], reply["request_id"]) == ("not_found", "w-1")

    h = running()
    decision = h.decide(watch)
    assert decision.events == [("WatcherAdded", {"reply_to": "client-5"})] and decision.replies == []
    other = command("WatchWorkflow", {"run_id": "another-run", "reply_to": "client-5"})
    assert h.decide(other).replies[0]["kind"] == "not_found"

    h = closed()
    decision = h.decide(watch)
    assert is_noop(decision)
    (reply,) = decision.replies
    assert (reply["kind"], reply["run_id"], reply["result"]) == ("completed", RUN, to_payload("done"))
    (reply,) = closed(FAILED).decide(watch).replies
    assert reply["kind"] == "failed" and reply["failure"] == failure()


def test_signals() -> None:
    signal = command("SignalWorkflow", {"run_id": None, "signal_name": "go", "args": [to_payload(1)],
                                        "kwargs": {}, "reply_to": "client-6"}, "s-1")
    (refused,) = History().decide(signal).replies
    assert refused["kind"] == "not_found"
    decision = running().decide(signal)
    assert decision.events == [("SignalReceived", {"signal_name": "go", "args": [to_payload(1)], "kwargs": {}})]
    assert [(r["kind"], r["request_id"]) for r in decision.replies] == [("signaled", "s-1")]
    (closed_reply,) = closed().decide(signal).replies
    assert closed_reply["kind"] == "rejected" and "takes no more signals" in closed_reply["failure"]["message"]
