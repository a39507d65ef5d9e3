"""Replay: re-run recorded history and check that the code asks for what was recorded.

History groups events by activation: the resolution events an activation saw (started,
step completed, timer fired, ...) and the events recording what the code then asked for
(step scheduled, timer started, completed). Replay feeds each activation's resolutions and
compares the commands, in order, to the recorded ones: kind, seq, and for steps, children and
signals sent, their names and arguments must match. A side effect that ran within its
activation is a command event that carries its outcome: the replayed code gets that
outcome when it asks for the side effect, and the fn does not run again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from docket.errors import NondeterminismError
from docket.execution.decide import RESOLUTIONS
from docket.runtime.instance import Command, WorkflowInstance

COMMAND_EVENTS = frozenset(
    {
        "StepScheduled",
        "SideEffectRecorded",
        "TimerStarted",
        "TimerCancelled",
        "StepCancelRequested",
        "UpdateCompleted",
        "ChildWorkflowScheduled",
        "ChildCancelRequested",
        "ExternalSignalScheduled",
        "RecordEmitted",
        "WorkflowContinuedAsNew",
        "WorkflowCompleted",
        "WorkflowFailed",
        "WorkflowCancelled",
    }
)


def _describe(kind: str, body: dict[str, Any]) -> str:
    as_local_step = kind == "StepScheduled" and body["local"] and body["step_name"] == "side_effect"
    if kind == "SideEffectRecorded" or as_local_step:  # async, or from an older Docket
        return f"a side effect at seq {body['seq']}"
    if kind == "StepScheduled":
        return f"step {body['step_name']!r} at seq {body['seq']}"
    if kind == "TimerStarted":
        return f"a timer at seq {body['seq']}"
    if kind == "TimerCancelled":
        return f"cancelling the timer at seq {body['seq']}"
    if kind == "StepCancelRequested":
        return f"cancelling the step at seq {body['seq']}"
    if kind == "UpdateCompleted":
        return f"the end of update {body['update_id']!r}"
    if kind == "ChildWorkflowScheduled":
        child = f"{body['workflow_type']!r} ({body['workflow_id']!r})"
        return f"child workflow {child} at seq {body['seq']}"
    if kind == "ChildCancelRequested":
        return f"cancelling the child at seq {body['seq']}"
    if kind == "ExternalSignalScheduled":
        return f"signal {body['signal_name']!r} to {body['workflow_id']!r} at seq {body['seq']}"
    if kind == "RecordEmitted":
        return f"a record to topic {body['topic']!r} with key {body['key']!r} at seq {body['seq']}"
    return {
        "WorkflowCompleted": "the workflow to complete",
        "WorkflowContinuedAsNew": "the workflow to continue as new",
        "WorkflowFailed": "the workflow to fail",
        "WorkflowCancelled": "the workflow to end cancelled",
    }[kind]


def _args(body: dict[str, Any]) -> str:
    parts = [p["data"].decode("utf-8", "replace") for p in body["args"]]
    parts += [
        f"{k}={p['data'].decode('utf-8', 'replace')}" for k, p in sorted(body["kwargs"].items())
    ]
    text = ", ".join(parts)
    return f"({text[:200]}{'...' if len(text) > 200 else ''})"


def _value(body: dict[str, Any]) -> str:
    text = body["value"].decode("utf-8", "replace")
    headers = f" and headers {sorted(body['headers'])}" if body["headers"] else ""
    return f"{text[:200]!r}{'...' if len(text) > 200 else ''}{headers}"


def _same(command: Command, kind: str, body: dict[str, Any]) -> bool:
    if command.kind != kind:
        return False
    # arguments count too: the same step (child, signal) called with other inputs is another call
    if kind == "StepScheduled":
        return bool(
            command.body["seq"] == body["seq"]
            and command.body["step_name"] == body["step_name"]
            and command.body["args"] == body["args"]
            and command.body["kwargs"] == body["kwargs"]
        )
    if kind in (
        "SideEffectRecorded",  # what it returned is not compared: a replay returns the record
        "TimerStarted",
        "TimerCancelled",
        "StepCancelRequested",
        "ChildCancelRequested",
    ):
        return bool(command.body["seq"] == body["seq"])
    if kind == "ChildWorkflowScheduled":
        return bool(
            command.body["seq"] == body["seq"]
            and command.body["workflow_type"] == body["workflow_type"]
            and command.body["workflow_id"] == body["workflow_id"]
            and command.body["args"] == body["args"]
            and command.body["kwargs"] == body["kwargs"]
        )
    if kind == "ExternalSignalScheduled":
        return bool(
            command.body["seq"] == body["seq"]
            and command.body["signal_name"] == body["signal_name"]
            and command.body["workflow_id"] == body["workflow_id"]
            and command.body["args"] == body["args"]
            and command.body["kwargs"] == body["kwargs"]
        )
    if kind == "UpdateCompleted":
        return bool(command.body["update_id"] == body["update_id"])
    if kind == "RecordEmitted":  # the record is an effect: what it says counts, like arguments
        return all(command.body[k] == body[k] for k in ("seq", "topic", "key", "value", "headers"))
    return True


# Events that close a run from outside, in the batch that decided them: the code never ran
# the resolutions recorded just before them in that batch.
CLOSED_FROM_OUTSIDE = frozenset({"WorkflowTerminated", "WorkflowTimedOut"})


def replay(instance: WorkflowInstance, events: Iterable[dict[str, Any]]) -> list[Command]:
    """Bring ``instance`` up to the end of ``events``.

    Every recorded activation is checked, the last one too: the processor records an
    activation's resolutions and what the code then asked for in one batch, so an
    activation that recorded nothing is one where the code asked for nothing. The one
    exception is a run terminated or timed out right after resolutions that its code never
    ran: that trailing activation is run unchecked, and its commands returned.
    Raises NondeterminismError naming the workflow, the event and the code location.
    """
    instance.replaying = True
    try:
        pending: list[dict[str, Any]] = []
        expected: list[dict[str, Any]] = []
        activation = None
        closed_from_outside = False
        for event in events:
            kind = event["body"][0]
            closed_from_outside = closed_from_outside or kind in CLOSED_FROM_OUTSIDE
            if kind not in RESOLUTIONS and kind not in COMMAND_EVENTS:
                continue
            if event["activation"] != activation and (pending or expected):
                _check(instance, pending, expected)
                pending, expected = [], []
            activation = event["activation"]
            (pending if kind in RESOLUTIONS else expected).append(event)
            if kind == "SideEffectRecorded":  # what the code's side effect returns when it asks for it
                instance.recorded_side_effects[event["body"][1]["seq"]] = event["body"][1]
        if pending and not expected and closed_from_outside:
            return instance.activate(pending, pending[0]["ts_us"])
        if pending or expected:
            _check(instance, pending, expected)
        return []
    finally:
        instance.replaying = False
        instance.recorded_side_effects.clear()  # those the code never asked for: it changed


def _check(
    instance: WorkflowInstance, resolutions: list[dict[str, Any]], recorded: list[dict[str, Any]]
) -> None:
    now_us = (resolutions or recorded)[0]["ts_us"]
    commands = instance.activate(resolutions, now_us)
    where = (
        f"workflow {instance.workflow_type!r} (workflow_id={instance.workflow_id}, "
        f"run={instance.run_id})"
    )
    fix = (
        "The code changed in a replay-unsafe way: restore the old behaviour for running "
        "executions, or let them finish before deploying the change"
    )
    for index, event in enumerate(recorded):
        kind, body = event["body"]
        if index >= len(commands):
            raise NondeterminismError(
                f"{where} asked for nothing more, but history event {event['event_id']} recorded "
                f"{_describe(kind, body)}. {fix}"
            )
        command = commands[index]
        if not _same(command, kind, body):
            asked = _describe(command.kind, command.body)
            recorded_as = _describe(kind, body)
            if asked == recorded_as and kind == "RecordEmitted":  # the value or headers differ
                asked += f" with value {_value(command.body)}"
                recorded_as += f" with value {_value(body)}"
            elif asked == recorded_as:  # the same call at the same seq: the arguments differ
                asked += f" with arguments {_args(command.body)}"
                recorded_as += f" with arguments {_args(body)}"
            raise NondeterminismError(
                f"{where} asked for {asked} ({command.location}), "
                f"but history event {event['event_id']} recorded {recorded_as}. {fix}"
            )
    if len(commands) > len(recorded):
        extra = commands[len(recorded)]
        after = recorded[-1]["event_id"] if recorded else resolutions[-1]["event_id"]
        raise NondeterminismError(
            f"{where} asked for {_describe(extra.kind, extra.body)} ({extra.location}), but history "
            f"recorded nothing more after event {after}. {fix}"
        )
