"""Workflows talking to workflows: child outcomes and signals between executions. Pure.

A child lives on its own partition, so parent and child only meet through commands: the
parent's ``ChildWorkflowScheduled`` sends the child a ``StartWorkflow`` naming its parent
(a `WorkflowRef`: workflow ID, run, seq), and the child's processor reports back with
``ReportChild`` commands (started, start failed, how it ended). A signal sent by workflow
code is a ``SignalWorkflow`` naming its sender; the target reports back with
``ReportSignal``. Every report is idempotent: a report for a seq that is no longer pending
decides nothing.
"""

from __future__ import annotations

from typing import Any

from docket.execution.failures import failure_record
from docket.execution.fold import RUNNING, State

Body = tuple[str, dict[str, Any]]
Notice = tuple[str, str, Body]  # (workflow_id, command_id, command body) for another workflow

# how a closing event reads in the parent's ReportChild
CHILD_OUTCOMES = {
    "WorkflowCompleted": "completed",
    "WorkflowFailed": "failed",
    "WorkflowCancelled": "cancelled",
    "WorkflowTerminated": "terminated",
    "WorkflowTimedOut": "timed_out",
}


def report_child(
    parent: dict[str, Any],
    child_workflow_id: str,
    child_run_id: str,
    outcome: str,
    *,
    result: Any = None,
    failure: Any = None,
) -> Notice:
    """The command that tells a parent what became of its child (a deterministic id, so a
    re-processed batch sends the same command)."""
    body = {
        "run_id": parent["run_id"],
        "seq": parent["seq"],
        "child_run_id": child_run_id,
        "outcome": outcome,
        "result": result,
        "failure": failure,
    }
    command_id = f"child:{child_workflow_id}/{child_run_id}/{outcome}"
    return parent["workflow_id"], command_id, ("ReportChild", body)


def report_signal(sender: dict[str, Any], failure: Any = None) -> Notice:
    body = {"run_id": sender["run_id"], "seq": sender["seq"], "failure": failure}
    command_id = f"signaled:{sender['workflow_id']}/{sender['run_id']}/{sender['seq']}"
    return sender["workflow_id"], command_id, ("ReportSignal", body)


def decide_report_child(state: State | None, body: dict[str, Any]) -> list[Body]:
    """The parent's events for a child's report; none if the parent's run moved on or the
    child's outcome is already recorded."""
    if state is None or state["run_id"] != body["run_id"] or state["status"] != RUNNING:
        return []
    seq = body["seq"]
    child = state["children"].get(str(seq))
    if child is None:
        return []  # settled already (or never ours)
    outcome = body["outcome"]
    if outcome == "started":
        if child["run_id"] is not None:
            return []
        return [("ChildWorkflowStarted", {"seq": seq, "run_id": body["child_run_id"]})]
    if outcome == "completed":
        return [("ChildWorkflowCompleted", {"seq": seq, "result": body["result"]})]
    failure = body["failure"] or failure_record(f"the child ended {outcome}", type_name=outcome)
    return [
        ("ChildWorkflowFailed", {"seq": seq, "failure": _child_failure(child, outcome, failure)})
    ]


def decide_report_signal(state: State | None, body: dict[str, Any]) -> list[Body]:
    if state is None or state["run_id"] != body["run_id"] or state["status"] != RUNNING:
        return []
    seq = body["seq"]
    if str(seq) not in state["signals_out"]:
        return []
    if body["failure"] is None:
        return [("ExternalSignalDelivered", {"seq": seq})]
    return [("ExternalSignalFailed", {"seq": seq, "failure": body["failure"]})]


def _child_failure(child: dict[str, Any], outcome: str, cause: dict[str, Any]) -> dict[str, Any]:
    """A ChildWorkflowError failure whose cause is what ended (or refused) the child."""
    what = "could not start" if outcome == "start_failed" else f"ended {outcome}"
    message = f"child workflow {child['workflow_id']!r} {what}: {cause['message']}"
    return failure_record(message, type_name="ChildWorkflowError", kind="child", cause=cause)


__all__ = [
    "CHILD_OUTCOMES",
    "Notice",
    "decide_report_child",
    "decide_report_signal",
    "report_child",
    "report_signal",
]
