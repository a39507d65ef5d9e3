"""Workflow code's view of other workflows: children it starts, workflows it signals.

Each is a durable call with a ``seq``, like a step: starting a child records
``ChildWorkflowScheduled`` and resolves when the child reports it started (or could not);
its result resolves when the child ends. Signalling another workflow records
``ExternalSignalScheduled`` and resolves when the target recorded it (or refused it).
Cancelling the task that waits for a child asks the child to cancel
(``ChildCancelRequested``), as cancelling a step's task does for the step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from docket.codec.failure import from_failure
from docket.codec.payload import encode_args, from_payload
from docket.definitions import Workflow
from docket.errors import SerializationError, WorkflowError
from docket.retry import bounded_ms
from docket.runtime.location import user_location

if TYPE_CHECKING:
    from docket.runtime.instance import WorkflowInstance


class ParentClosePolicy(StrEnum):
    """What happens to a child still running when its parent's run closes."""

    TERMINATE = "terminate"  # stop it at once (the default, as in Temporal)
    REQUEST_CANCEL = "request_cancel"  # ask it to cancel; it may clean up
    ABANDON = "abandon"  # leave it running


class ChildWorkflowHandle:
    """A child started by `WorkflowContext.start_child`: await it (or ``result()``) for its
    result; ``signal`` it. Cancelling the task that awaits it asks the child to cancel."""

    def __init__(
        self, instance: WorkflowInstance, workflow_id: str, result: asyncio.Future[Any]
    ) -> None:
        self._instance = instance
        self.workflow_id = workflow_id
        self.run_id: str | None = None  # known once it started
        self._result = result

    def __repr__(self) -> str:
        return f"ChildWorkflowHandle(workflow_id={self.workflow_id!r}, run_id={self.run_id!r})"

    async def result(self) -> Any:
        """The child's result; raises ChildWorkflowError if it did not complete."""
        return await self._result

    def __await__(self) -> Any:
        return self.result().__await__()

    def signal(self, signal: Any, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        """Signal the child; resolves once the child recorded it."""
        return self._instance.relations.signal(self.workflow_id, None, signal, args, kwargs)


class ExternalWorkflowHandle:
    """Another workflow (by ID), seen from workflow code: it can be signalled."""

    def __init__(self, instance: WorkflowInstance, workflow_id: str, run_id: str | None) -> None:
        self._instance = instance
        self.workflow_id = workflow_id
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"ExternalWorkflowHandle(workflow_id={self.workflow_id!r})"

    def signal(self, signal: Any, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        """Signal it; resolves once it recorded the signal, raises ApplicationError if it
        refused (unknown workflow, closed, no such signal, bad arguments)."""
        return self._instance.relations.signal(self.workflow_id, self.run_id, signal, args, kwargs)


@dataclass
class _Child:
    handle: ChildWorkflowHandle
    started: asyncio.Future[ChildWorkflowHandle]
    result: asyncio.Future[Any]
    hint: Any


class Relations:
    """The instance's pending children and outgoing signals, by seq."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self._children: dict[int, _Child] = {}
        self._signals: dict[int, asyncio.Future[None]] = {}

    def start_child(
        self,
        workflow: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        workflow_id: str | None,
        parent_close_policy: ParentClosePolicy | str,
        task_queue: str | None,
        run_timeout: timedelta | None,
        execution_timeout: timedelta | None,
        location: str,
    ) -> asyncio.Future[ChildWorkflowHandle]:
        instance = self._instance
        if isinstance(workflow, Workflow):
            name, hint, queue = workflow.name, workflow.return_hint, workflow.task_queue
        elif isinstance(workflow, str):
            name, hint, queue = workflow, None, instance.task_queue
        else:
            raise WorkflowError(
                f"start_child needs a registered workflow or a workflow name, got {workflow!r} ({location})"
            )
        policy = ParentClosePolicy(parent_close_policy)
        seq = instance.next_seq()
        child_id = workflow_id or f"{instance.workflow_id}/child-{seq}"
        arg_payloads, kwarg_payloads = encode_args(args, kwargs, where=f"child workflow {name!r}")
        body = {
            "seq": seq,
            "workflow_type": name,
            "workflow_id": child_id,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "task_queue": task_queue or queue,
            "parent_close_policy": policy.value,
            "run_timeout_ms": _ms(run_timeout, "run_timeout"),
            "execution_timeout_ms": _ms(execution_timeout, "execution_timeout"),
        }
        instance.record("ChildWorkflowScheduled", body, location)
        loop = instance.loop
        result: asyncio.Future[Any] = loop.create_future()
        started: asyncio.Future[ChildWorkflowHandle] = loop.create_future()
        handle = ChildWorkflowHandle(instance, child_id, result)
        self._children[seq] = _Child(handle, started, result, hint)
        result.add_done_callback(lambda f: self._abandoned(seq, f))
        started.add_done_callback(_retrieve)
        return started

    def signal(
        self,
        workflow_id: str,
        run_id: str | None,
        signal: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> asyncio.Future[None]:
        instance = self._instance
        name = signal if isinstance(signal, str) else getattr(signal, "__docket_signal__", None)
        if not isinstance(name, str):
            raise WorkflowError(f"{signal!r} is not a @docket.signal handler or a signal name")
        seq = instance.next_seq()
        arg_payloads, kwarg_payloads = encode_args(args, kwargs, where=f"signal {name!r}")
        body = {
            "seq": seq,
            "workflow_id": workflow_id,
            "run_id": run_id,
            "signal_name": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
        }
        instance.record("ExternalSignalScheduled", body, user_location())
        future: asyncio.Future[None] = instance.loop.create_future()
        self._signals[seq] = future
        return future

    def resolve(self, kind: str, body: dict[str, Any]) -> None:
        """Apply a ChildWorkflow* or ExternalSignal* resolution event."""
        seq = body["seq"]
        if kind.startswith("ExternalSignal"):
            future = self._signals.pop(seq)
            if future.done():
                return
            if kind == "ExternalSignalDelivered":
                future.set_result(None)
            else:
                future.set_exception(from_failure(body["failure"]))
            return
        child = self._children[seq] if kind == "ChildWorkflowStarted" else self._children.pop(seq)
        if kind == "ChildWorkflowStarted":
            child.handle.run_id = body["run_id"]
            if not child.started.done():
                child.started.set_result(child.handle)
            return
        if kind == "ChildWorkflowCompleted":
            if not child.started.done():
                child.started.set_result(child.handle)
            if not child.result.done():
                try:
                    value = from_payload(
                        body["result"], child.hint, where=f"result of child seq {seq}"
                    )
                except SerializationError as exc:
                    child.result.set_exception(exc)
                else:
                    child.result.set_result(value)
            return
        error = from_failure(body["failure"])  # ChildWorkflowFailed
        if not child.started.done():
            child.started.set_exception(error)
        if not child.result.done():
            child.result.set_exception(error)
            child.result.add_done_callback(_retrieve)

    def _abandoned(self, seq: int, future: asyncio.Future[Any]) -> None:
        """The code stopped waiting for its child: ask the child to cancel."""
        if future.cancelled() and seq in self._children:
            self._instance.record("ChildCancelRequested", {"seq": seq}, user_location())


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: a child that failed to start fails both of its futures, and
    the code awaits only one of them."""
    if not future.cancelled():
        future.exception()


def _ms(delta: timedelta | float | None, option: str) -> int | None:
    if delta is None:
        return None
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    # -5 became 1 ms; inf an OverflowError deep inside, and 1e13 s a deadline no record
    # holds, which stopped the child's workflow ID in the processor
    ms = bounded_ms(seconds)
    if ms is None:
        raise WorkflowError(
            f"start_child: {option} must be a positive, finite timedelta or number of "
            f"seconds (at most 100,000 years), got {delta!r}; leave it unset for no limit"
        )
    return ms


__all__ = ["ChildWorkflowHandle", "ExternalWorkflowHandle", "ParentClosePolicy", "Relations"]
