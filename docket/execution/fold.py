"""apply(state, event) -> state: the one place that says what each event means for state.

State is a dict shaped like schemas/state.avsc (cheap to encode with fastavro). Folding
the whole history of a run from scratch gives the same state as the live run did; the
property tests check that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docket.execution.failures import failure_record
from docket.execution.ids import continued_run_id

State = dict[str, Any]
Event = dict[str, Any]

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
TERMINATED, CANCELLED = "terminated", "cancelled"
CONTINUED_AS_NEW, TIMED_OUT = "continued_as_new", "timed_out"
RUN_CHAIN_KEPT = 100  # run ids a run remembers of the chain before it
# the events that close a run (continue-as-new closes it too: the next run is another)
CLOSING_EVENTS = frozenset(
    {
        "WorkflowCompleted",
        "WorkflowFailed",
        "WorkflowCancelled",
        "WorkflowTerminated",
        "WorkflowContinuedAsNew",
        "WorkflowTimedOut",
    }
)


def _started(state: State | None, event: Event, body: dict[str, Any]) -> State:
    reply_to = body["reply_to"]
    return {
        "workflow_id": event["workflow_id"],
        "run_id": event["run_id"],
        "workflow_type": body["workflow_type"],
        "task_queue": body["task_queue"],
        "status": RUNNING,
        "run_chain": list(body.get("run_chain") or ()),
        "start_at_us": body.get("start_at_us"),
        "run_timeout_ms": body.get("run_timeout_ms"),
        "execution_deadline_us": body.get("execution_deadline_us"),
        "parent": body.get("parent"),
        "children": {},
        "signals_out": {},
        "started_us": event["ts_us"],
        "closed_us": None,
        "last_event_id": 0,
        "last_activation": 0,
        "steps": {},
        "timers": {},
        "watchers": list(body.get("watchers") or ()) + ([reply_to] if reply_to else []),
        "deferred": [],
        "stopped_reason": None,
        "cancel_requested": False,
        "updates": {},
        "updates_done": {},
        "result": None,
        "failure": None,
    }


def _step_scheduled(state: State, event: Event, body: dict[str, Any]) -> State:
    close_ms = body.get("schedule_to_close_ms")  # (absent from histories read as JSON)
    state["steps"][str(body["seq"])] = {
        "seq": body["seq"],
        "scheduled_event_id": event["event_id"],
        "step_name": body["step_name"],
        "attempt": 1,
        "local": body["local"],
        "dispatched_us": event["ts_us"],
        "last_heartbeat_us": event["ts_us"],
        "heartbeat_details": None,
        "retry_at_us": None,
        "cancel_requested": False,
        "started_us": None,
        "deadline_us": event["ts_us"] + close_ms * 1000 if close_ms else None,
    }
    return state


def _attempt_failed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["steps"][str(body["seq"])]["retry_at_us"] = body["retry_at_us"]
    return state


def _retried(state: State, event: Event, body: dict[str, Any]) -> State:
    step = state["steps"][str(body["seq"])]
    step["attempt"] = body["attempt"]
    step["dispatched_us"] = event["ts_us"]
    step["last_heartbeat_us"] = event["ts_us"]
    step["retry_at_us"] = None
    step["started_us"] = None
    return state


def _step_started(state: State, event: Event, body: dict[str, Any]) -> State:
    state["steps"][str(body["seq"])]["started_us"] = event["ts_us"]
    return state


def _heartbeat(state: State, event: Event, body: dict[str, Any]) -> State:
    step = state["steps"][str(body["seq"])]
    step["last_heartbeat_us"] = event["ts_us"]
    if body["details"] is not None:
        step["heartbeat_details"] = body["details"]
    return state


def _step_cancel_requested(state: State, event: Event, body: dict[str, Any]) -> State:
    step = state["steps"].get(str(body["seq"]))
    if step is not None:
        step["cancel_requested"] = True
    return state


def _step_closed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["steps"].pop(str(body["seq"]), None)
    return state


def _timer_started(state: State, event: Event, body: dict[str, Any]) -> State:
    state["timers"][str(body["seq"])] = body["fire_at_us"]
    return state


def _timer_fired(state: State, event: Event, body: dict[str, Any]) -> State:
    state["timers"].pop(str(body["seq"]), None)
    return state


def _watcher_added(state: State, event: Event, body: dict[str, Any]) -> State:
    if body["reply_to"] not in state["watchers"]:
        state["watchers"].append(body["reply_to"])
    return state


def _deferred(state: State, event: Event, body: dict[str, Any]) -> State:
    state["deferred"] = [*state["deferred"], *body["commands"]]
    state["stopped_reason"] = body["reason"]
    return state


def _resumed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["deferred"] = state["deferred"][body["count"] :]
    state["stopped_reason"] = None
    return state


def _cancel_requested(state: State, event: Event, body: dict[str, Any]) -> State:
    state["cancel_requested"] = True
    return state


def _update_accepted(state: State, event: Event, body: dict[str, Any]) -> State:
    reply_to = body["reply_to"]
    state["updates"][body["update_id"]] = {
        "update_name": body["update_name"],
        "watchers": [reply_to] if reply_to else [],
    }
    return state


def _update_watcher_added(state: State, event: Event, body: dict[str, Any]) -> State:
    pending = state["updates"].get(body["update_id"])
    if pending is not None and body["reply_to"] not in pending["watchers"]:
        pending["watchers"].append(body["reply_to"])
    return state


def _update_completed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["updates"].pop(body["update_id"], None)
    state["updates_done"][body["update_id"]] = event["event_id"]
    return state


def _child_scheduled(state: State, event: Event, body: dict[str, Any]) -> State:
    state["children"][str(body["seq"])] = {
        "workflow_id": body["workflow_id"],
        "run_id": None,
        "parent_close_policy": body["parent_close_policy"],
    }
    return state


def _child_started(state: State, event: Event, body: dict[str, Any]) -> State:
    child = state["children"].get(str(body["seq"]))
    if child is not None:
        child["run_id"] = body["run_id"]
    return state


def _child_closed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["children"].pop(str(body["seq"]), None)
    return state


def _signal_sent(state: State, event: Event, body: dict[str, Any]) -> State:
    state["signals_out"][str(body["seq"])] = body["workflow_id"]
    return state


def _signal_settled(state: State, event: Event, body: dict[str, Any]) -> State:
    state["signals_out"].pop(str(body["seq"]), None)
    return state


def _delay_elapsed(state: State, event: Event, body: dict[str, Any]) -> State:
    state["start_at_us"] = None
    return state


def _timed_out(state: State, event: Event, body: dict[str, Any]) -> State:
    failure = failure_record(
        f"the {body['timeout']} timeout expired",
        type_name="WorkflowTimedOut",
        kind=f"timeout.{body['timeout']}",
    )
    return _close(TIMED_OUT)(state, event, {"failure": failure})


def _terminated(state: State, event: Event, body: dict[str, Any]) -> State:
    failure = failure_record(
        f"terminated: {body['reason']}", type_name="WorkflowTerminated", kind="terminated"
    )
    state = _close(TERMINATED)(state, event, {"failure": failure})
    state["deferred"] = []
    state["stopped_reason"] = None
    return state


def _close(status: str) -> Callable[[State, Event, dict[str, Any]], State]:
    def close(state: State, event: Event, body: dict[str, Any]) -> State:
        state["status"] = status
        state["closed_us"] = event["ts_us"]
        state["result"] = body.get("result")
        state["failure"] = body.get("failure")
        state["steps"] = {}
        state["timers"] = {}
        state["updates"] = {}  # their callers were told the run closed first
        state["children"] = {}  # the parent-close policy was applied to them
        state["signals_out"] = {}
        return state

    return close


HANDLERS: dict[str, Callable[..., State]] = {
    "WorkflowStarted": _started,
    "StepScheduled": _step_scheduled,
    "StepAttemptFailed": _attempt_failed,
    "StepRetried": _retried,
    "StepHeartbeat": _heartbeat,
    "StepStarted": _step_started,
    "StepCancelRequested": _step_cancel_requested,
    "StepCompleted": _step_closed,
    "StepFailed": _step_closed,
    "TimerStarted": _timer_started,
    "TimerFired": _timer_fired,
    "TimerCancelled": _timer_fired,  # either way the timer is no longer pending
    "WatcherAdded": _watcher_added,
    "SignalReceived": lambda state, event, body: state,  # the workflow code consumes it
    "CommandsDeferred": _deferred,
    "DeferredResumed": _resumed,
    "WorkflowTerminated": _terminated,
    "CancelRequested": _cancel_requested,
    "WorkflowCancelled": _close(CANCELLED),
    "UpdateAccepted": _update_accepted,
    "UpdateWatcherAdded": _update_watcher_added,
    "UpdateCompleted": _update_completed,
    "WorkflowContinuedAsNew": _close(CONTINUED_AS_NEW),
    "StartDelayElapsed": _delay_elapsed,
    "ChildWorkflowScheduled": _child_scheduled,
    "ChildWorkflowStarted": _child_started,
    "ChildWorkflowCompleted": _child_closed,
    "ChildWorkflowFailed": _child_closed,
    "ChildCancelRequested": lambda state, event, body: state,  # the child decides when it ends
    "ExternalSignalScheduled": _signal_sent,
    "ExternalSignalDelivered": _signal_settled,
    "ExternalSignalFailed": _signal_settled,
    "WorkflowTimedOut": _timed_out,
    "RecordEmitted": lambda state, event, body: state,  # the record went out with the event
    "SideEffectRecorded": lambda state, event, body: state,  # the code had its outcome at once
    "WorkflowCompleted": _close(COMPLETED),
    "WorkflowFailed": _close(FAILED),
}


def in_chain(state: State, run_id: str | None, on_record: Callable[[str], bool]) -> bool:
    """Whether a request for ``run_id`` reaches this run: no run given, this run, or a run it
    continues (a handle keeps the run it started; its messages follow the chain). The state
    names only the latest RUN_CHAIN_KEPT runs of a longer chain: ``on_record(run_id)``, whether
    the workflow has that run's history, lets an earlier run be found too."""
    if not run_id or run_id == state["run_id"] or run_id in state["run_chain"]:
        return True
    if len(state["run_chain"]) < RUN_CHAIN_KEPT:
        return False  # the chain is named whole: run_id is not part of it
    return _continues_into(run_id, state["run_chain"][0], on_record)


def _continues_into(run_id: str, oldest_kept: str, on_record: Callable[[str], bool]) -> bool:
    """Whether continue-as-new leads from ``run_id`` to ``oldest_kept``: each next run's id
    derives from the one before. Whether a next run is on record, which ends the walk from a
    run that did not continue, is checked at steps 1, 2, 4, ...: at most twice the steps,
    and a logarithm of them in store reads."""
    successor, steps, check_at = run_id, 0, 1
    while True:
        successor = continued_run_id(successor)
        steps += 1
        if successor == oldest_kept:
            return True
        if steps == check_at:
            if not on_record(successor):
                return False
            check_at *= 2


def clone(state: State) -> State:
    """A copy that folding can change without touching the original (cheaper than deepcopy:
    only the containers fold mutates are copied)."""
    copy = dict(state)
    copy["steps"] = {seq: dict(step) for seq, step in state["steps"].items()}
    copy["timers"] = dict(state["timers"])
    copy["watchers"] = list(state["watchers"])
    copy["run_chain"] = list(state["run_chain"])
    copy["children"] = {seq: dict(child) for seq, child in state["children"].items()}
    copy["signals_out"] = dict(state["signals_out"])
    copy["deferred"] = list(state["deferred"])
    copy["updates"] = {
        uid: {**pending, "watchers": list(pending["watchers"])}
        for uid, pending in state["updates"].items()
    }
    copy["updates_done"] = dict(state["updates_done"])
    return copy


def apply(state: State | None, event: Event) -> State:
    """Fold one event into the state of its run (None before WorkflowStarted)."""
    kind, body = event["body"]
    if kind == "WorkflowStarted":
        state = _started(state, event, body)
    else:
        if state is None or state["run_id"] != event["run_id"]:
            raise ValueError(
                f"event {event['event_id']} ({kind}) of run {event['run_id']} of workflow "
                f"{event['workflow_id']!r} has no started run to apply to"
            )
        state = HANDLERS[kind](state, event, body)
    state["last_event_id"] = event["event_id"]
    if event["activation"]:
        state["last_activation"] = event["activation"]
    return state
