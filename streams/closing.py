"""What a run owes others before an event is folded: mostly, when the run closes.

A closing run (completed, failed, cancelled, terminated, timed out, continued as new) takes
its sleeps and timeouts out of the timer index, tells the workers of its running steps to
stop, applies each open child's parent-close policy, and answers the callers of updates
still in flight; a finished update answers its callers. A step failed by its
schedule-to-close or schedule-to-start timeout tells its worker to stop too, and a step
that ends takes its schedule-to-close timer out of the index.
This reads the state *before* the event is folded, because folding the close forgets those
steps, children and updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docket.execution.fold import CLOSING_EVENTS, State
from docket.execution.ids import timer_id
from docket.streams.outputs import Outputs
from docket.streams.requests import tell_watchers


def before_fold(
    out: Outputs,
    state: State | None,
    kind: str,
    body: dict[str, Any],
    now_us: int,
    scheduled: Callable[[State, dict[str, Any]], dict[str, Any]],
) -> None:
    if state is None:
        return
    if kind in CLOSING_EVENTS:
        out.cancel_run_timers(state, now_us)
        for step in state["steps"].values():
            if not step["local"] and step["retry_at_us"] is None:
                out.cancel_task(state, scheduled(state, step), step["attempt"])
            _forget_deadline(out, state, step, now_us)
        if state["children"]:
            out.parent_closing(state, now_us)
    elif kind in ("StepCompleted", "StepFailed"):
        step = state["steps"].get(str(body["seq"]))
        if step is not None:
            _forget_deadline(out, state, step, now_us)
            timeout = (body["failure"].get("cause") or {}) if kind == "StepFailed" else {}
            running = not step["local"] and step["retry_at_us"] is None
            if running and timeout.get("kind") in STEP_TIMEOUTS:  # its worker may still run it
                out.cancel_task(state, scheduled(state, step), step["attempt"])
    if state["updates"] and (kind in CLOSING_EVENTS or kind == "UpdateCompleted"):
        tell_watchers(out, state, kind, body)


# the timeouts that fail a step whatever its attempt is doing
STEP_TIMEOUTS = frozenset({"timeout.schedule_to_close", "timeout.schedule_to_start"})


def _forget_deadline(out: Outputs, state: State, step: dict[str, Any], now_us: int) -> None:
    """A step that ends before its schedule-to-close deadline takes the deadline's timer
    out of the timer index (fired, it would change nothing, but it would stay until then)."""
    deadline_us = step.get("deadline_us")
    if deadline_us is not None and deadline_us > now_us:
        wid, run_id = state["workflow_id"], state["run_id"]
        timer = timer_id(wid, run_id, "schedule_to_close", step["seq"], 0)
        out.cancel_timer(wid, timer, deadline_us)


__all__ = ["before_fold"]
