"""Requests answered by the live workflow code: queries and updates, processor side.

A query runs a read-only handler on the live (or replayed) workflow and records nothing.

An ``UpdateWorkflow`` command is decided here rather than in the pure `decide`, because
whether it is accepted depends on the workflow code (its handlers and validators) and on its
live state. A rejected update records nothing; an accepted one records ``UpdateAccepted``,
which the workflow code sees like a signal, and its caller hears ``update_accepted`` at
once. The outcome (``UpdateCompleted``) reaches every client watching that ``update_id``
with request id ``update:<update_id>``; a retried update (same ``update_id``) joins the
watchers while it runs and is answered from history once it has finished.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from docket.app import App
from docket.codec.failure import to_failure
from docket.codec.payload import decode_args, to_payload
from docket.context import QueryContext
from docket.errors import SerializationError, WorkflowError, WorkflowNotFoundError
from docket.execution.decide import Decision, reply
from docket.execution.failures import failure_record
from docket.execution.fold import RUNNING, State, in_chain
from docket.runtime.instance import WorkflowInstance, bind_check
from docket.streams.outputs import Outputs

_UNGUARDED = nullcontext()

# commands that ask for an answer: a stopped execution refuses them rather than defer them
REQUESTS = frozenset(
    ("SignalWorkflow", "QueryWorkflow", "StartWorkflow", "WatchWorkflow", "UpdateWorkflow")
)


def refuse_stopped(
    command: dict[str, Any], workflow_id: str, state: State | None, reason: str
) -> dict[str, Any] | None:
    """The reply refusing a request to an execution that stopped (its code failed); None
    if nobody waits for one."""
    kind, body = command["body"]
    if not body.get("reply_to"):
        return None
    return reply(
        body["reply_to"],
        command["command_id"],
        workflow_id,
        state["run_id"] if state else "",
        "query_failed" if kind == "QueryWorkflow" else "rejected",
        failure=to_failure(
            WorkflowError(
                f"workflow_id={workflow_id!r} is stopped and takes no requests until it runs "
                f"again with fixed code: {reason}"
            )
        ),
    )


def outcome_request_id(update_id: str) -> str:
    return f"update:{update_id}"


def decide_update(
    state: State | None,
    command: dict[str, Any],
    *,
    instance_for: Callable[[State], WorkflowInstance],
    recorded_event: Callable[[State, int], dict[str, Any]],
    run_exists: Callable[[str], bool],
    guard: AbstractContextManager[None] = _UNGUARDED,
) -> Decision:
    """``instance_for(state)`` is the live workflow code; ``recorded_event(state, event_id)``
    reads an event of the current run; ``run_exists(run_id)`` whether the workflow had that
    run (see `in_chain`); ``guard`` times the validator (deadlock.py)."""
    body = command["body"][1]
    workflow_id, request_id = command["workflow_id"], command["command_id"]
    update_id, name, reply_to = body["update_id"], body["update_name"], body["reply_to"]

    def answer(kind: str, run_id: str, result: Any = None, failure: Any = None) -> Decision:
        return Decision(
            replies=[reply(reply_to, request_id, workflow_id, run_id, kind, result, failure)]
        )

    if state is None or not in_chain(state, body["run_id"], run_exists):
        problem = f"no workflow with workflow_id={workflow_id!r}" + (
            f" and run {body['run_id']}" if body["run_id"] else ""
        )
        return answer(
            "not_found", body["run_id"] or "", failure=to_failure(WorkflowNotFoundError(problem))
        )
    run_id = state["run_id"]
    done = state["updates_done"].get(update_id)
    if done is not None:  # the same update again: its outcome is in history
        outcome = recorded_event(state, done)["body"][1]
        kind = "update_failed" if outcome["failure"] else "update_completed"
        return answer(kind, run_id, outcome["result"], outcome["failure"])
    if state["status"] != RUNNING:
        return answer(
            "rejected",
            run_id,
            failure=_rejected(
                f"workflow_id={workflow_id!r} is {state['status']}: it takes no more updates"
            ),
        )
    pending = state["updates"].get(update_id)
    if pending is not None:  # running: this caller hears the outcome too
        decision = answer("update_accepted", run_id)
        if reply_to not in pending["watchers"]:
            decision.events.append(
                ("UpdateWatcherAdded", {"update_id": update_id, "reply_to": reply_to})
            )
            decision.run_id = run_id
        return decision
    try:
        instance = instance_for(state)
        with guard:
            instance.mailbox.validate_update(
                name, body["args"], body["kwargs"], QueryContext(instance.ctx)
            )
    except Exception as exc:  # unknown update, bad arguments, or the validator said no
        return answer("rejected", run_id, failure=to_failure(exc))
    accepted = {k: body[k] for k in ("update_id", "update_name", "args", "kwargs", "reply_to")}
    decision = answer("update_accepted", run_id)
    decision.events.append(("UpdateAccepted", accepted))
    decision.run_id = run_id
    return decision


def tell_watchers(out: Outputs, state: State, kind: str, body: dict[str, Any]) -> None:
    """Before ``kind`` is folded: the callers waiting for an update's outcome get it, and
    when the run closes first, they hear that instead of waiting forever."""
    if kind == "UpdateCompleted":
        pending = state["updates"].get(body["update_id"])
        outcome = "update_failed" if body["failure"] else "update_completed"
        for watcher in pending["watchers"] if pending else ():
            out.reply(
                reply(
                    watcher,
                    outcome_request_id(body["update_id"]),
                    state["workflow_id"],
                    state["run_id"],
                    outcome,
                    body["result"],
                    body["failure"],
                )
            )
        return
    for update_id, pending in state["updates"].items():  # the run is closing
        cut_off = _rejected(
            f"workflow_id={state['workflow_id']!r} closed ({kind}) before update "
            f"{pending['update_name']!r} finished; have the workflow wait for "
            "ctx.all_handlers_finished() before it returns"
        )
        cut_off["type"] = "UpdateCutOff"
        for watcher in pending["watchers"]:
            out.reply(
                reply(
                    watcher,
                    outcome_request_id(update_id),
                    state["workflow_id"],
                    state["run_id"],
                    "update_failed",
                    failure=cut_off,
                )
            )


def answer_query(
    state: State | None,
    command: dict[str, Any],
    instance_for: Callable[[State], WorkflowInstance],
    run_exists: Callable[[str], bool],
    guard: AbstractContextManager[None] = _UNGUARDED,
) -> dict[str, Any]:
    """Run a query handler on the live (or replayed) workflow; nothing is recorded.
    ``run_exists`` as for `decide_update`; ``guard`` times the handler
    (docket/runtime/deadlock.py)."""
    body = command["body"][1]
    workflow_id = command["workflow_id"]

    def answer(kind: str, run_id: str, result: Any = None, failure: Any = None) -> dict[str, Any]:
        return reply(
            body["reply_to"], command["command_id"], workflow_id, run_id, kind, result, failure
        )

    if state is None or not in_chain(state, body["run_id"], run_exists):
        problem = f"no workflow with workflow_id={workflow_id!r}"
        return answer(
            "not_found", body["run_id"] or "", failure=to_failure(WorkflowNotFoundError(problem))
        )
    name = body["query_name"]
    instance: WorkflowInstance | None = None
    try:
        instance = instance_for(state)
        with guard:
            value = instance.mailbox.query(
                name, body["args"], body["kwargs"], QueryContext(instance.ctx)
            )
        if inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if close is not None:
                close()
            raise TypeError(f"query {name!r} returned an awaitable: query handlers are plain 'def'")
        result = to_payload(value, where=f"answer to query {name!r}")
    except Exception as exc:  # the caller gets the error; the workflow is untouched
        return answer("query_failed", state["run_id"], failure=to_failure(exc))
    finally:  # a closed run's, replayed for this query alone (no cache keeps a closed one)
        if instance is not None and instance.closed:
            instance.dispose()
    return answer("answer", state["run_id"], result=result)


def check_signal(app: App, state: State, body: dict[str, Any]) -> str | None:
    """Why this workflow cannot take the signal (no such handler, bad arguments), or None."""
    definition = app.find_workflow(state["workflow_type"])
    name = body["signal_name"]
    if definition is None:
        return None
    if definition.cls is None:  # any signal, for ctx.wait_for_signal, which returns args only
        if body["kwargs"]:
            return (
                f"workflow {state['workflow_type']!r} takes signal {name!r} through "
                f"ctx.wait_for_signal, which returns positional arguments only: send "
                f"{', '.join(sorted(body['kwargs']))} positionally"
            )
        return None
    handler = definition.signals.get(name)
    if handler is None:
        known = ", ".join(map(repr, sorted(definition.signals))) or "none"
        return f"workflow {state['workflow_type']!r} has no signal {name!r} (its signals: {known})"
    try:
        args, kwargs = decode_args(
            handler, body["args"], body["kwargs"], skip=2, where=f"signal {name!r}"
        )
        bind_check(handler, 2, args, kwargs, f"signal {name!r}")
    except (SerializationError, TypeError) as exc:
        return str(exc)
    return None


def _rejected(message: str) -> dict[str, Any]:
    return failure_record(message)


__all__ = ["answer_query", "check_signal", "decide_update", "outcome_request_id", "tell_watchers"]
