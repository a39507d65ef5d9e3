"""Step timeout timers at their edges, on the pure state machine and the shell's outputs:
a step's outcome does not apply the parent-close policy (a closing run does), and a retry
timer that fires at or past the schedule-to-close deadline starts no attempt."""

from __future__ import annotations

from typing import Any

import pytest

from docket.codec.payload import to_payload
from docket.codec.records import COMMANDS
from docket.streams.closing import before_fold
from docket.streams.outputs import Outputs
from tests.unit.test_fold import (
    RUN,
    START_CMD,
    T0,
    History,
    command,
    failure,
    scheduled_body,
    started_body,
)


def _with_child_and_step(policy: str = "terminate") -> History:
    """A running run with an open child (started) and a pending step (seq 1)."""
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1), activation=1)
    h.add("ChildWorkflowScheduled", {"seq": 2, "workflow_type": "doubler", "workflow_id": "kid",
                                     "args": [], "kwargs": {}, "task_queue": "default",
                                     "parent_close_policy": policy, "run_timeout_ms": None,
                                     "execution_timeout_ms": None}, activation=1)
    h.add("ChildWorkflowStarted", {"seq": 2, "run_id": "kid-run"}, activation=1)
    return h


def _commands_to_children(out: Outputs) -> list[tuple[str, str]]:
    return [(record["workflow_id"], record["body"][0])
            for record in (COMMANDS.decode(v) for _, v in out._commands)]


@pytest.mark.parametrize(("kind", "body"), [
    ("StepCompleted", {"seq": 1, "attempt": 1, "result": to_payload(1)}),
    ("StepFailed", {"seq": 1, "attempt": 1, "failure": failure()}),
])
def test_a_step_ending_does_not_apply_the_parent_close_policy(kind: str, body: dict[str, Any]) -> None:
    """streams/closing.py: ``out.parent_closing`` now sits under the StepCompleted /
    StepFailed branch: a running parent's step ending terminates its children."""
    h = _with_child_and_step()
    out = Outputs()
    before_fold(out, h.state, kind, body, T0 + 1, h.scheduled_step)
    assert _commands_to_children(out) == []


def test_closing_the_parent_applies_the_parent_close_policy() -> None:
    h = _with_child_and_step()
    out = Outputs()
    before_fold(out, h.state, "WorkflowCompleted", {"result": to_payload(1)}, T0 + 1,
                h.scheduled_step)
    assert _commands_to_children(out) == [("kid", "TerminateWorkflow")]


def test_a_retry_timer_that_fires_at_or_past_the_deadline_makes_no_attempt() -> None:
    """guarantees.md: schedule-to-close bounds every attempt and backoff; a retry that
    would begin at or after the deadline is not made. A retry timer due before the
    deadline can still fire after it (the engine was down, the timer service or the
    processor is late, or, for a local step, the attempt's failure was decided with the
    batch's clock taken before the inline run). The timer service fires in due order, so
    the retry comes before the schedule-to-close timer: StepRetried dispatches a new
    attempt after the deadline (a local one runs inline at once)."""
    h = History()
    h.add("WorkflowStarted", started_body(), activation=1, command_id=START_CMD)
    h.add("StepScheduled", scheduled_body(1, maximum_attempts=0, schedule_to_close_ms=10_000),
          activation=1)
    h.add("StepAttemptFailed", {"seq": 1, "attempt": 1, "failure": failure(),
                                "retry_at_us": T0 + 9_000_000}, ts_us=T0 + 8_000_000)
    retry = command("FireTimer", {"run_id": RUN, "kind": "retry", "seq": 1, "attempt": 1,
                                  "fire_at_us": T0 + 9_000_000})
    decision = h.decide(retry, now_us=T0 + 10_500_000)  # fired late, past the deadline
    kinds = [kind for kind, _ in decision.events]
    assert kinds == ["StepFailed"], kinds
    ((_, body),) = decision.events
    assert body["failure"]["cause"]["kind"] == "timeout.schedule_to_close"
