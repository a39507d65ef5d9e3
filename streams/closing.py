"""What a run owes others before an event is folded: mostly, when the run closes.

A closing run (completed, failed, cancelled, terminated, timed out, continued as new) takes
its sleeps and timeouts out of the timer index, tells the workers of its running steps to
stop, applies each open child's parent-close policy, and answers the callers of updates
still in flight; a finished update answers its callers.
This reads the state *before* the event is folded, because folding the close forgets those
steps, children and updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docket.execution.fold import State
from docket.streams.outputs import Outputs
from docket.streams.requests import tell_watchers

CLOSING = frozenset(
    {
        "WorkflowCompleted",
        "WorkflowFailed",
        "WorkflowCancelled",
        "WorkflowTerminated",
        "WorkflowContinuedAsNew",
        "WorkflowTimedOut",
    }
)


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
    if kind in CLOSING:
        out.cancel_run_timers(state, now_us)
        for step in state["steps"].values():
            if not step["local"] and step["retry_at_us"] is None:
                out.cancel_task(state, scheduled(state, step), step["attempt"])
        if state["children"]:
            out.parent_closing(state, now_us)
    if state["updates"] and (kind in CLOSING or kind == "UpdateCompleted"):
        tell_watchers(out, state, kind, body)


__all__ = ["CLOSING", "before_fold"]
