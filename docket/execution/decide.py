"""decide(state, command) -> what happens: new events, and replies that record nothing.

Pure: no I/O and no clock (``now_us`` is passed in). Commands that no longer apply (a
completion for an attempt that timed out, a timer of a closed run, a re-delivered start)
decide nothing, which is what makes at-least-once delivery of commands safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docket.execution.failures import failure_record, step_failed, step_timeout_message
from docket.execution.fold import RUNNING, State, in_chain
from docket.execution.ids import run_id_for, timer_id
from docket.execution.relations import (
    Notice,
    decide_report_child,
    decide_report_signal,
    report_child,
    report_signal,
)
from docket.retry import next_retry_delay_ms

Body = tuple[str, dict[str, Any]]

# Events the workflow code sees; the rest are bookkeeping the code never observes.
RESOLUTIONS = frozenset(
    {
        "WorkflowStarted",
        "StartDelayElapsed",
        "StepCompleted",
        "StepFailed",
        "TimerFired",
        "SignalReceived",
        "UpdateAccepted",
        "ChildWorkflowStarted",
        "ChildWorkflowCompleted",
        "ChildWorkflowFailed",
        "ExternalSignalDelivered",
        "ExternalSignalFailed",
        "CancelRequested",
    }
)

REJECT_DUPLICATE = "reject_duplicate"
RETURN_EXISTING = "return_existing"
ALLOW_AFTER_CLOSE = "allow_after_close"
USE_RUNNING = "use_running"
ID_REUSE_POLICIES = (REJECT_DUPLICATE, RETURN_EXISTING, ALLOW_AFTER_CLOSE, USE_RUNNING)


@dataclass
class Decision:
    events: list[Body] = field(default_factory=list)
    run_id: str | None = None  # the run the events belong to
    replies: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)  # (timer_id, fire_at_us, FireTimer)
    commands: list[Notice] = field(default_factory=list)  # to other workflows (parent, sender)


def reply(
    reply_to: str,
    request_id: str,
    workflow_id: str,
    run_id: str,
    kind: str,
    result: Any = None,
    failure: Any = None,
) -> dict[str, Any]:
    return {
        "reply_to": reply_to,
        "request_id": request_id,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "kind": kind,
        "result": result,
        "failure": failure,
    }


def closed_reply(state: State, reply_to: str, request_id: str) -> dict[str, Any]:
    return reply(
        reply_to,
        request_id,
        state["workflow_id"],
        state["run_id"],
        state["status"],
        result=state["result"],
        failure=state["failure"],
    )


def decide(
    state: State | None,
    command: dict[str, Any],
    now_us: int,
    *,
    known_workflow: Callable[[str], bool],
    scheduled_step: Callable[[State, dict[str, Any]], dict[str, Any]],
    run_exists: Callable[[str], bool] = lambda run_id: False,
    check_signal: Callable[[State, dict[str, Any]], str | None] = lambda state, body: None,
    default_queue: Callable[[str], str] = lambda workflow_type: "default",
    earlier_run: Callable[[str], tuple[State, dict[str, Any]] | None] = lambda run_id: None,
) -> Decision:
    """``scheduled_step(state, pending_step)`` returns the StepScheduled body of a pending step;
    ``run_exists(run_id)`` tells whether this workflow ever had that run (a run's id derives
    from its start command, so this is how a re-delivered start of an old run is spotted, and
    how a signal, cancel or terminate for a run older than the chain the state names finds it);
    ``check_signal(state, body)`` says why the workflow cannot take a signal, or None;
    ``earlier_run(run_id)`` is an earlier run's folded state and last event, or None."""
    kind, body = command["body"]
    workflow_id = command["workflow_id"]
    if kind == "StartWorkflow":
        return _start(state, command, body, known_workflow, run_exists, default_queue)
    if kind == "WatchWorkflow":
        if state is not None and body["run_id"] and body["run_id"] != state["run_id"]:
            earlier = earlier_run(body["run_id"])  # closed (it is not the latest run)
            if earlier is not None:
                return Decision(replies=[_earlier_outcome(earlier, body["reply_to"], command)])
        if state is None or (body["run_id"] and body["run_id"] != state["run_id"]):
            return Decision(
                replies=[
                    reply(
                        body["reply_to"],
                        command["command_id"],
                        workflow_id,
                        body["run_id"] or "",
                        "not_found",
                    )
                ]
            )
        if state["status"] != RUNNING:
            return Decision(replies=[closed_reply(state, body["reply_to"], command["command_id"])])
        return Decision([("WatcherAdded", {"reply_to": body["reply_to"]})], state["run_id"])
    if kind == "SignalWorkflow":
        return _signal(state, command, body, check_signal, run_exists)
    if kind in ("TerminateWorkflow", "CancelWorkflow"):
        return _terminate(state, command, body, run_exists)
    if kind == "ReportChild":
        return Decision(decide_report_child(state, body), state["run_id"] if state else None)
    if kind == "ReportSignal":
        return Decision(decide_report_signal(state, body), state["run_id"] if state else None)
    if kind in ("QueryWorkflow", "UpdateWorkflow"):
        return Decision()  # need the live code: the processor decides them (streams/requests.py)
    if state is None or state["run_id"] != body["run_id"] or state["status"] != RUNNING:
        return _answer_report(Decision(), state, command)  # stale: that run is gone or closed
    if kind == "FireTimer":
        return _fire_timer(state, body, now_us, scheduled_step)
    return _answer_report(_step_report(state, command, now_us, scheduled_step), state, command)


def _answer_report(decision: Decision, state: State | None, command: dict[str, Any]) -> Decision:
    """A step report sent by a client (asynchronous completion) hears whether it counted."""
    kind, body = command["body"]
    reply_to = body.get("reply_to")
    if not reply_to:
        return decision
    workflow_id = command["workflow_id"]
    if decision.events:
        answer = reply(
            reply_to, command["command_id"], workflow_id, body["run_id"], "step_reported"
        )
    else:
        answer = reply(
            reply_to,
            command["command_id"],
            workflow_id,
            body["run_id"],
            "not_found",
            failure=_rejection(
                f"attempt {body['attempt']} of step seq {body['seq']} of workflow_id="
                f"{workflow_id!r} (run {body['run_id']}) is not pending: it finished, timed out "
                "or was retried, or the run closed; nothing was recorded"
            ),
        )
    decision.replies.append(answer)
    return decision


def _step_report(
    state: State,
    command: dict[str, Any],
    now_us: int,
    scheduled_step: Callable[[State, dict[str, Any]], dict[str, Any]],
) -> Decision:
    kind, body = command["body"]
    run_id = state["run_id"]
    step = state["steps"].get(str(body["seq"]))
    if step is None or step["attempt"] != body["attempt"] or step["retry_at_us"] is not None:
        return Decision()  # a late report of an attempt that was already settled
    if kind == "CompleteStep":
        return Decision(
            [
                (
                    "StepCompleted",
                    {"seq": body["seq"], "attempt": body["attempt"], "result": body["result"]},
                )
            ],
            run_id,
        )
    if kind == "FailStep":
        return _attempt_failed(state, step, body["failure"], now_us, scheduled_step)
    if kind == "StartStep":
        return _step_started(state, step, body, now_us, scheduled_step(state, step))
    if kind == "HeartbeatStep":
        return Decision(
            [
                (
                    "StepHeartbeat",
                    {"seq": body["seq"], "attempt": body["attempt"], "details": body["details"]},
                )
            ],
            run_id,
        )
    raise ValueError(f"unknown command type {kind!r}")


def _earlier_outcome(
    earlier: tuple[State, dict[str, Any]], reply_to: str, command: dict[str, Any]
) -> dict[str, Any]:
    """How an earlier run of this workflow ID ended; continue-as-new points to its successor."""
    state, last = earlier
    kind, body = last["body"]
    if kind == "WorkflowContinuedAsNew":
        return reply(
            reply_to,
            command["command_id"],
            state["workflow_id"],
            body["new_run_id"],
            "continued_as_new",
        )
    return closed_reply(state, reply_to, command["command_id"])


def _start(
    state: State | None,
    command: dict[str, Any],
    body: dict[str, Any],
    known_workflow: Callable[[str], bool],
    run_exists: Callable[[str], bool],
    default_queue: Callable[[str], str],
) -> Decision:
    workflow_id = command["workflow_id"]
    request_id = command["command_id"]
    reply_to = body["reply_to"]
    new_run_id = run_id_for(request_id)

    def answer(kind: str, run_id: str, failure: Any = None) -> Decision:
        replies = (
            [reply(reply_to, request_id, workflow_id, run_id, kind, failure=failure)]
            if reply_to
            else []
        )
        parent = body.get("parent")
        if parent is None:
            return Decision(replies=replies)
        if kind == "started":  # the same child start again: report it again
            notice = report_child(parent, workflow_id, run_id, "started")
        else:
            problem = failure or _rejection(
                f"workflow_id={workflow_id!r} is already running (run {run_id})"
            )
            notice = report_child(
                parent, workflow_id, run_id or "-", "start_failed", failure=problem
            )
        return Decision(replies=replies, commands=[notice])

    if state is not None and (state["run_id"] == new_run_id or run_exists(new_run_id)):
        return answer("started", new_run_id)  # the same start, delivered again
    policy = body["id_reuse_policy"]
    if policy not in ID_REUSE_POLICIES:
        return answer(
            "rejected",
            "",
            failure=_rejection(
                f"unknown id_reuse_policy {policy!r}; use one of {', '.join(ID_REUSE_POLICIES)}"
            ),
        )
    if state is not None:
        running = state["status"] == RUNNING
        if policy == RETURN_EXISTING or (policy == USE_RUNNING and running):
            return answer("existing", state["run_id"])
        if running or policy == REJECT_DUPLICATE:
            return answer("already_started", state["run_id"])
    if not known_workflow(body["workflow_type"]):
        return answer(
            "rejected",
            "",
            failure=_rejection(
                f"unknown workflow type {body['workflow_type']!r}: no workflow of that name is "
                "registered with this engine's app (and it has no dynamic workflow)"
            ),
        )
    started = {k: body[k] for k in ("workflow_type", "args", "kwargs", "task_queue", "reply_to")}
    now_us = command["ts_us"]
    delay_ms, execution_ms = body.get("start_delay_ms"), body.get("execution_timeout_ms")
    started.update(
        parent=body.get("parent"),
        run_chain=[],
        watchers=[],
        start_at_us=now_us + delay_ms * 1000 if delay_ms else None,
        run_timeout_ms=body.get("run_timeout_ms") or None,
        execution_deadline_us=now_us + execution_ms * 1000 if execution_ms else None,
    )
    if not started["task_queue"]:  # started by name: the workflow's own queue
        started["task_queue"] = default_queue(body["workflow_type"])
    return Decision([("WorkflowStarted", started)], new_run_id)


def _terminate(
    state: State | None,
    command: dict[str, Any],
    body: dict[str, Any],
    run_exists: Callable[[str], bool],
) -> Decision:
    workflow_id, reply_to = command["workflow_id"], body["reply_to"]

    def answer(kind: str, run_id: str, message: str | None = None) -> list[dict[str, Any]]:
        if not reply_to:
            return []
        failure = _rejection(message) if message else None
        return [reply(reply_to, command["command_id"], workflow_id, run_id, kind, failure=failure)]

    if state is None or not in_chain(state, body["run_id"], run_exists):
        return Decision(
            replies=answer(
                "not_found", body["run_id"] or "", f"no workflow with workflow_id={workflow_id!r}"
            )
        )
    if state["status"] != RUNNING:
        return Decision(
            replies=answer(
                "rejected",
                state["run_id"],
                f"workflow_id={workflow_id!r} is already {state['status']}",
            )
        )
    if command["body"][0] == "CancelWorkflow":
        if state["cancel_requested"]:  # asked before: the code is already cleaning up
            return Decision(replies=answer("cancel_accepted", state["run_id"]))
        return Decision(
            [("CancelRequested", {"reason": body["reason"]})],
            state["run_id"],
            replies=answer("cancel_accepted", state["run_id"]),
        )
    return Decision(
        [("WorkflowTerminated", {"reason": body["reason"]})],
        state["run_id"],
        replies=answer("terminate_accepted", state["run_id"]),
    )


def _signal(
    state: State | None,
    command: dict[str, Any],
    body: dict[str, Any],
    check_signal: Callable[[State, dict[str, Any]], str | None],
    run_exists: Callable[[str], bool],
) -> Decision:
    workflow_id = command["workflow_id"]
    reply_to = body["reply_to"]

    sender = body.get("sender")

    def refuse(kind: str, run_id: str, message: str) -> Decision:
        if sender is not None:  # sent by workflow code: the sender's await raises
            return Decision(commands=[report_signal(sender, _rejection(message))])
        if not reply_to:
            return Decision()
        return Decision(
            replies=[
                reply(
                    reply_to,
                    command["command_id"],
                    workflow_id,
                    run_id,
                    kind,
                    failure=_rejection(message),
                )
            ]
        )

    if state is None or not in_chain(state, body["run_id"], run_exists):
        return refuse(
            "not_found",
            body["run_id"] or "",
            f"no workflow with workflow_id={workflow_id!r}"
            + (f" and run {body['run_id']}" if body["run_id"] else ""),
        )
    if state["status"] != RUNNING:
        return refuse(
            "rejected",
            state["run_id"],
            f"workflow_id={workflow_id!r} is {state['status']}: it takes no more signals",
        )
    problem = check_signal(state, body)
    if problem is not None:
        return refuse("rejected", state["run_id"], problem)
    event = {k: body[k] for k in ("signal_name", "args", "kwargs")}
    replies = (
        [reply(reply_to, command["command_id"], workflow_id, state["run_id"], "signaled")]
        if reply_to
        else []
    )
    notices = [report_signal(sender)] if sender is not None else []
    return Decision([("SignalReceived", event)], state["run_id"], replies=replies, commands=notices)


def _rejection(message: str) -> dict[str, Any]:
    return failure_record(message)


def _fire_timer(
    state: State,
    body: dict[str, Any],
    now_us: int,
    scheduled_step: Callable[[State, dict[str, Any]], dict[str, Any]],
) -> Decision:
    run_id = state["run_id"]
    seq = body["seq"]
    timer_kind = body["kind"]
    if timer_kind == "start":
        return Decision([("StartDelayElapsed", {})], run_id) if state["start_at_us"] else Decision()
    if timer_kind in ("run_timeout", "execution_timeout"):
        return Decision([("WorkflowTimedOut", {"timeout": timer_kind.split("_")[0]})], run_id)
    if timer_kind == "sleep":
        if str(seq) not in state["timers"]:
            return Decision()
        return Decision([("TimerFired", {"seq": seq})], run_id)
    step = state["steps"].get(str(seq))
    if step is not None and timer_kind == "schedule_to_close":  # the step's, not an attempt's
        return _schedule_to_close(state, step, now_us, scheduled_step)
    if step is None or step["attempt"] != body["attempt"]:
        return Decision()
    if timer_kind == "retry":
        if step["retry_at_us"] is None:
            return Decision()
        if step["cancel_requested"]:
            failure = failure_record(
                f"step {step['step_name']!r} was cancelled while waiting to retry",
                type_name="CancelledError",
                kind="cancelled",
            )
            return Decision(
                [("StepFailed", {"seq": seq, "attempt": step["attempt"], "failure": failure})],
                run_id,
            )
        deadline_us = step.get("deadline_us")
        if deadline_us is not None and deadline_us <= now_us:  # fired late: no attempt past it
            return _schedule_to_close(state, step, now_us, scheduled_step)
        return Decision([("StepRetried", {"seq": seq, "attempt": body["attempt"] + 1})], run_id)
    if step["retry_at_us"] is not None:
        return Decision()  # already failed and waiting for its retry
    if timer_kind == "schedule_to_start":
        return _schedule_to_start(state, step, now_us, scheduled_step(state, step))
    if timer_kind not in ("start_to_close", "heartbeat"):
        raise ValueError(f"unknown timer kind {timer_kind!r}")
    limit_ms = scheduled_step(state, step)[f"{timer_kind}_ms"]
    if not limit_ms:
        return Decision()
    # armed at the attempt's first start (_step_started) and counted from it; a timer with no
    # start was armed at dispatch by an older Docket, which counted from there
    since_us = step["started_us"] if step["started_us"] is not None else step["dispatched_us"]
    if timer_kind == "heartbeat":  # from the latest heartbeat, once there is one
        since_us = max(since_us, step["last_heartbeat_us"])
    due = since_us + limit_ms * 1000
    if due > now_us:  # it started late, or a heartbeat came in: check again when it would lapse
        return Decision(timers=[step_timer(state, step, timer_kind, due)])
    failure = _timeout_failure(step, timer_kind, limit_ms)
    return _attempt_failed(state, step, failure, now_us, scheduled_step)


def _schedule_to_close(
    state: State,
    step: dict[str, Any],
    now_us: int,
    scheduled_step: Callable[[State, dict[str, Any]], dict[str, Any]],
) -> Decision:
    """The step's deadline (its StepScheduled's time + schedule_to_close_ms) came, whatever
    its attempt is doing: running, queued or waiting for its retry. It fails, not retried."""
    deadline_us = step.get("deadline_us")
    if deadline_us is None:
        return Decision()
    if deadline_us > now_us:  # this processor's clock is behind the timer service's
        return Decision(timers=[step_timer(state, step, "schedule_to_close", deadline_us, 0)])
    limit_ms = scheduled_step(state, step).get("schedule_to_close_ms") or 0
    return _step_timed_out(state, step, "schedule_to_close", limit_ms, cause=None)


def _schedule_to_start(
    state: State, step: dict[str, Any], now_us: int, scheduled: dict[str, Any]
) -> Decision:
    """The attempt waited in its task queue since its dispatch for longer than
    schedule_to_start_ms, and no worker reported its start: the step fails, not retried
    (as in Temporal: more attempts would wait in the same queue)."""
    limit_ms = scheduled.get("schedule_to_start_ms")
    if not limit_ms or step["started_us"] is not None or step["local"]:
        return Decision()
    due = step["dispatched_us"] + limit_ms * 1000
    if due > now_us:  # this processor's clock is behind the timer service's
        return Decision(timers=[step_timer(state, step, "schedule_to_start", due)])
    return _step_timed_out(state, step, "schedule_to_start", limit_ms, cause=None)


def _step_timed_out(
    state: State, step: dict[str, Any], kind: str, limit_ms: int, cause: dict[str, Any] | None
) -> Decision:
    """The step fails for good on one of its own timeouts (schedule-to-close or
    schedule-to-start): a StepError whose cause is the TimeoutError, whose cause is the
    failure of the attempt that had just failed, if one had."""
    timeout = failure_record(
        step_timeout_message(step["step_name"], step["attempt"], kind, limit_ms),
        type_name="TimeoutError",
        kind=f"timeout.{kind}",
        cause=cause,
    )
    return _step_failed(state, step, timeout)


def _step_started(
    state: State, step: dict[str, Any], body: dict[str, Any], now_us: int, scheduled: dict[str, Any]
) -> Decision:
    """A worker began the attempt: its timeouts count from now, and their timers start now
    (none runs while the task waits in its queue). Only the first start counts: a task
    delivered again after its worker died goes on with the same deadline, so a step that
    keeps killing its worker still times out and runs out of attempts."""
    if step["started_us"] is not None:
        return Decision()
    started = ("StepStarted", {"seq": body["seq"], "attempt": body["attempt"]})
    decision = Decision([started], state["run_id"])
    for timer_kind in ("start_to_close", "heartbeat"):
        if limit_ms := scheduled[f"{timer_kind}_ms"]:
            decision.timers.append(step_timer(state, step, timer_kind, now_us + limit_ms * 1000))
    return decision


def step_timer(
    state: State, step: dict[str, Any], kind: str, fire_at_us: int, attempt: int | None = None
) -> dict[str, Any]:
    """A step attempt's timeout timer, checked again at ``fire_at_us`` (a new ID each time);
    ``attempt`` 0 for a timer of the whole step (schedule-to-close)."""
    attempt = step["attempt"] if attempt is None else attempt
    return {
        "timer_id": timer_id(
            state["workflow_id"], state["run_id"], kind, step["seq"], attempt, fire_at_us
        ),
        "run_id": state["run_id"],
        "fire_at_us": fire_at_us,
        "kind": kind,
        "seq": step["seq"],
        "attempt": attempt,
    }


def _timeout_failure(step: dict[str, Any], kind: str, limit_ms: int) -> dict[str, Any]:
    return {
        "type": "TimeoutError",
        "kind": f"timeout.{kind}",
        "non_retryable": False,
        "message": step_timeout_message(step["step_name"], step["attempt"], kind, limit_ms),
        "stack": "",
        "details": None,
        "cause": None,
    }


def _attempt_failed(
    state: State,
    step: dict[str, Any],
    failure: dict[str, Any],
    now_us: int,
    scheduled_step: Callable[[State, dict[str, Any]], dict[str, Any]],
) -> Decision:
    if failure["kind"] == "timeout.schedule_to_close":  # a local attempt cut at the deadline
        return _step_failed(state, step, failure)
    scheduled = scheduled_step(state, step)
    delay_ms = next_retry_delay_ms(
        scheduled["retry"],
        attempt=step["attempt"],
        error_type=failure["type"],
        non_retryable=failure["non_retryable"] or step["cancel_requested"],
        kind=failure["kind"],
    )
    if delay_ms is None:
        return _step_failed(state, step, failure)
    retry_at_us = now_us + delay_ms * 1000
    deadline_us = step.get("deadline_us")
    if deadline_us is not None and retry_at_us >= deadline_us:  # the retry could not finish
        limit_ms = scheduled.get("schedule_to_close_ms") or 0
        return _step_timed_out(state, step, "schedule_to_close", limit_ms, cause=failure)
    body = {
        "seq": step["seq"],
        "attempt": step["attempt"],
        "failure": failure,
        "retry_at_us": retry_at_us,
    }
    return Decision([("StepAttemptFailed", body)], state["run_id"])


def _step_failed(state: State, step: dict[str, Any], failure: dict[str, Any]) -> Decision:
    """The step fails for good: a StepError caused by ``failure``, its last one."""
    seq, attempt = step["seq"], step["attempt"]
    final = step_failed(step["step_name"], seq, attempt, failure)
    return Decision(
        [("StepFailed", {"seq": seq, "attempt": attempt, "failure": final})], state["run_id"]
    )


def local_attempt_timeout_ms(
    scheduled: dict[str, Any], step: dict[str, Any], now_us: int
) -> int | None:
    """How long a local step's attempt may run inline: its start-to-close timeout, and no
    later than its schedule-to-close deadline (None: no limit)."""
    limits = [scheduled["start_to_close_ms"]] if scheduled["start_to_close_ms"] else []
    if step.get("deadline_us") is not None:
        limits.append(max(1, (step["deadline_us"] - now_us) // 1000))
    return min(limits, default=None)
