"""Schedule-to-close and schedule-to-start in the pure state machine: the timer arithmetic
(decide), the deadline kept in state (fold), and the timers the shell arms and cancels.

Both fail the step, not retried, with a StepError caused by a TimeoutError of that kind.
"""

from __future__ import annotations

from typing import Any

import pytest

from docket.codec.payload import to_payload
from docket.codec.records import TASKS, TIMERS
from docket.execution.decide import Decision
from docket.execution.ids import timer_id
from docket.streams.closing import before_fold
from docket.streams.outputs import Outputs
from tests.unit.test_fold import (
    RUN,
    START_CMD,
    T0,
    WID,
    History,
    _armed,
    _timeout_fire,
    command,
    failure,
    is_noop,
    scheduled_body,
    started_body,
)


def with_step_timeouts(*, close_ms: int | None = None, start_ms: int | None = None,
                       maximum_attempts: int = 0) -> History:
    """A running run whose only step (seq 1, retry every 1 s then 2 s, ...) was scheduled at
    T0 with the given schedule-to-close and schedule-to-start timeouts."""
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1, maximum_attempts=maximum_attempts,
                                          schedule_to_close_ms=close_ms,
                                          schedule_to_start_ms=start_ms), activation=1)
    return h


def _fail_report(attempt: int = 1) -> dict[str, Any]:
    return command("FailStep", {"run_id": RUN, "seq": 1, "attempt": attempt, "failure": failure()})


def _timed_out_step(decision: Decision, kind: str) -> dict[str, Any]:
    """The TimeoutError a StepFailed decision carries as its StepError's cause."""
    ((event, body),) = decision.events
    assert event == "StepFailed" and body["failure"]["kind"] == "step"
    timeout: dict[str, Any] = body["failure"]["cause"]
    assert (timeout["type"], timeout["kind"], timeout["non_retryable"]) == (
        "TimeoutError", f"timeout.{kind}", True)
    return timeout


def test_the_schedule_to_close_deadline_counts_from_the_scheduling_across_attempts() -> None:
    h = with_step_timeouts(close_ms=10_000)
    assert h.state["steps"]["1"]["deadline_us"] == T0 + 10_000_000  # type: ignore[index]
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(),
                                "retry_at_us": T0 + 2_000_000}, ts_us=T0 + 1_000_000)
    h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 2_000_000)
    assert h.state["steps"]["1"]["deadline_us"] == T0 + 10_000_000  # type: ignore[index]
    assert with_step_timeouts().state["steps"]["1"]["deadline_us"] is None  # type: ignore[index]


@pytest.mark.parametrize("phase", ["running", "queued", "backoff"])
def test_schedule_to_close_fails_the_step_whatever_its_attempt_is_doing(phase: str) -> None:
    h = with_step_timeouts(close_ms=10_000)
    if phase == "running":
        h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 1)
    elif phase == "backoff":
        h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(),
                                    "retry_at_us": T0 + 11_000_000}, ts_us=T0 + 1)
    fire = command("FireTimer", {"run_id": RUN, "kind": "schedule_to_close", "seq": 1,
                                 "attempt": 0, "fire_at_us": T0 + 10_000_000})
    decision = h.decide(fire, now_us=T0 + 10_000_000)
    timeout = _timed_out_step(decision, "schedule_to_close")
    assert "exceeded its schedule-to-close timeout of 10000 ms" in timeout["message"]
    h.apply_decision(decision, T0 + 10_000_000)
    assert h.state["steps"] == {}  # type: ignore[index]
    assert is_noop(h.decide(fire, now_us=T0 + 10_000_001)), "a second fire changes nothing"
    retry = command("FireTimer", {"run_id": RUN, "kind": "retry", "seq": 1, "attempt": 1,
                                  "fire_at_us": T0 + 11_000_000})
    assert is_noop(h.decide(retry, now_us=T0 + 11_000_000)), "no further attempt"


def test_a_schedule_to_close_timer_early_by_the_processors_clock_is_armed_again() -> None:
    h = with_step_timeouts(close_ms=10_000)
    fire = command("FireTimer", {"run_id": RUN, "kind": "schedule_to_close", "seq": 1,
                                 "attempt": 0, "fire_at_us": T0 + 10_000_000})
    early = h.decide(fire, now_us=T0 + 9_999_999)
    assert early.events == [] and early.timers == [{
        "timer_id": timer_id(WID, RUN, "schedule_to_close", 1, 0, T0 + 10_000_000),
        "run_id": RUN, "fire_at_us": T0 + 10_000_000, "kind": "schedule_to_close", "seq": 1,
        "attempt": 0}]
    assert h.decide(fire, now_us=T0 + 9_999_999).timers == early.timers  # deterministic


def test_a_schedule_to_close_timer_of_a_step_without_one_or_gone_changes_nothing() -> None:
    fire = command("FireTimer", {"run_id": RUN, "kind": "schedule_to_close", "seq": 1,
                                 "attempt": 0, "fire_at_us": T0 + 10_000_000})
    assert is_noop(with_step_timeouts().decide(fire, now_us=T0 + 10_000_000))
    h = with_step_timeouts(close_ms=10_000)
    h.add("StepCompleted", {"seq": 1, "attempt": 1, "result": to_payload(1)}, ts_us=T0 + 5)
    assert is_noop(h.decide(fire, now_us=T0 + 10_000_000))


@pytest.mark.parametrize(("failed_at_s", "retried"), [(8.9, True), (9.0, False), (9.5, False)])
def test_a_retry_that_would_begin_at_or_after_the_deadline_is_not_scheduled(
    failed_at_s: float, retried: bool
) -> None:
    """Attempt 1 fails; its retry would begin 1 s later. Against a 10 s schedule-to-close
    deadline, a retry at 9.9 s is scheduled; one at 10 s or later could not finish: the
    step fails now, its last failure the cause of the timeout."""
    h = with_step_timeouts(close_ms=10_000)
    now = T0 + int(failed_at_s * 1_000_000)
    decision = h.decide(_fail_report(), now_us=now)
    if retried:
        ((kind, body),) = decision.events
        assert kind == "StepAttemptFailed" and body["retry_at_us"] == now + 1_000_000
        return
    timeout = _timed_out_step(decision, "schedule_to_close")
    assert timeout["cause"] == failure()


def test_an_attempt_timeout_whose_retry_would_pass_the_deadline_fails_the_step() -> None:
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1, start_to_close_ms=4_000, maximum_attempts=0,
                                          schedule_to_close_ms=5_000), activation=1)
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 500_000)
    decision = h.decide(_timeout_fire("start_to_close", T0 + 4_500_000), now_us=T0 + 4_500_000)
    timeout = _timed_out_step(decision, "schedule_to_close")
    assert timeout["cause"]["kind"] == "timeout.start_to_close"


def test_a_non_retryable_failure_still_fails_the_step_as_it_did() -> None:
    h = with_step_timeouts(close_ms=10_000)
    bad = failure(non_retryable=True)
    decision = h.decide(command("FailStep", {"run_id": RUN, "seq": 1, "attempt": 1,
                                             "failure": bad}), now_us=T0 + 1)
    ((kind, body),) = decision.events
    assert kind == "StepFailed" and body["failure"]["cause"] == bad


def _to_start_fire(at_us: int, attempt: int = 1) -> dict[str, Any]:
    return command("FireTimer", {"run_id": RUN, "kind": "schedule_to_start", "seq": 1,
                                 "attempt": attempt, "fire_at_us": at_us})


def test_schedule_to_start_fails_an_attempt_no_worker_started() -> None:
    h = with_step_timeouts(start_ms=2_000)
    decision = h.decide(_to_start_fire(T0 + 2_000_000), now_us=T0 + 2_000_000)
    timeout = _timed_out_step(decision, "schedule_to_start")
    assert "exceeded its schedule-to-start timeout of 2000 ms" in timeout["message"]
    assert "no worker started it" in timeout["message"]


def test_schedule_to_start_is_met_by_the_start() -> None:
    h = with_step_timeouts(start_ms=2_000)
    started = h.decide(command("StartStep", {"run_id": RUN, "seq": 1, "attempt": 1}),
                       now_us=T0 + 1_999_999)
    assert started.events == [("StepStarted", {"seq": 1, "attempt": 1})]
    assert started.timers == []  # no start-to-close or heartbeat timeout to arm
    h.apply_decision(started, T0 + 1_999_999)
    assert is_noop(h.decide(_to_start_fire(T0 + 2_000_000), now_us=T0 + 2_000_000))


def test_schedule_to_start_counts_from_each_attempts_dispatch() -> None:
    h = with_step_timeouts(start_ms=2_000)
    h.add("StepStarted", {"seq": 1, "attempt": 1}, ts_us=T0 + 1)
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(),
                                "retry_at_us": T0 + 5_000_000}, ts_us=T0 + 4_000_000)
    assert is_noop(h.decide(_to_start_fire(T0 + 2_000_000), now_us=T0 + 4_500_000))
    h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 5_000_000)
    stale = h.decide(_to_start_fire(T0 + 2_000_000, attempt=1), now_us=T0 + 6_000_000)
    assert is_noop(stale), "attempt 1's timer says nothing of attempt 2"
    early = h.decide(_to_start_fire(T0 + 6_999_999, attempt=2), now_us=T0 + 6_999_999)
    assert early.events == [] and early.timers == _armed("schedule_to_start", T0 + 7_000_000, 2)
    fired = h.decide(_to_start_fire(T0 + 7_000_000, attempt=2), now_us=T0 + 7_000_000)
    _timed_out_step(fired, "schedule_to_start")


def test_step_timers_are_armed_at_the_scheduling_and_each_dispatch() -> None:
    """The shell (streams/outputs.py) arms schedule-to-close once, at StepScheduled, and
    schedule-to-start at each dispatch; a step that ends takes its deadline out of the
    index; one failed by its own timeout tells its worker to stop."""
    def timers(out: Outputs) -> list[tuple[str, int, bool]]:
        return [(t["timer_id"], t["fire_at_us"], t["cancel"])
                for t in (TIMERS.decode(v) for _, v in out._timers)]

    h = with_step_timeouts(close_ms=10_000, start_ms=2_000)
    out = Outputs()
    assert h.state is not None
    out.for_event(h.state, h.events[-1], h.scheduled_step)
    assert timers(out) == [
        (timer_id(WID, RUN, "schedule_to_close", 1, 0), T0 + 10_000_000, False),
        (timer_id(WID, RUN, "schedule_to_start", 1, 1), T0 + 2_000_000, False)]
    assert TASKS.decode(out._tasks[0][2])["schedule_to_start_ms"] == 2_000  # reports its start

    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(),
                                "retry_at_us": T0 + 3_000_000}, ts_us=T0 + 1)
    retried = h.add("StepRetried", {"seq": 1, "attempt": 2}, ts_us=T0 + 3_000_000)
    out = Outputs()
    out.for_event(h.state, retried, h.scheduled_step)
    assert timers(out) == [(timer_id(WID, RUN, "schedule_to_start", 1, 2), T0 + 5_000_000, False)]

    decision = h.decide(_to_start_fire(T0 + 5_000_000, attempt=2), now_us=T0 + 5_000_000)
    ((kind, body),) = decision.events
    out = Outputs()
    before_fold(out, h.state, kind, body, T0 + 5_000_000, h.scheduled_step)
    assert timers(out) == [(timer_id(WID, RUN, "schedule_to_close", 1, 0), T0 + 10_000_000, True)]
    (cancel,) = [TASKS.decode(v) for _, _, v in out._tasks]
    assert (cancel["cancel"], cancel["attempt"]) == (True, 2)
