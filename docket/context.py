"""WorkflowContext: the only door from workflow code to durable operations and deterministic
helpers. Workflow code must not read the wall clock, random, uuid or do I/O directly (see
docs/determinism.md); it asks ``ctx`` instead, and replay gives it the same answers.
"""

from __future__ import annotations

import asyncio
import random as _random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, overload

from docket.definitions import Step, Workflow
from docket.errors import ReadOnlyContextError
from docket.runtime.location import user_location
from docket.runtime.relations import ChildWorkflowHandle, ExternalWorkflowHandle, ParentClosePolicy

if TYPE_CHECKING:
    from docket.runtime.instance import WorkflowInstance

P = ParamSpec("P")
T = TypeVar("T")


class ContinueAsNew(BaseException):  # noqa: N818 - control flow, like StopIteration
    """Raised by `WorkflowContext.continue_as_new`; not an Exception, so that an
    ``except Exception`` in workflow code does not swallow it."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.args_ = args
        self.kwargs = kwargs


class WorkflowContext:
    """Passed as the first argument to every workflow. Deterministic by construction."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self.workflow_id: str = instance.workflow_id
        self.run_id: str = instance.run_id
        self.workflow_type: str = instance.workflow_type
        self._random: _random.Random | None = None  # seeded on first use: seeding costs ~10 us

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs history it already recorded (keep logs quiet then)."""
        return self._instance.replaying

    # -- durable operations --------------------------------------------------------------------

    # These are plain functions returning coroutines, not ``async def``: they note the calling
    # line at once, so an error can name it even when the coroutine runs in another task.

    @overload
    def step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def step(
        self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def step(self, step: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]: ...

    def step(self, step: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Run a step on a worker, durably: recorded in history, retried by its policy.

        ``step`` is a registered step or a step name (steps may live in other processes).
        Await it, or hand it to ``asyncio.gather`` / ``create_task``.
        """
        return self._instance.run_step(step, args, kwargs, local=False, location=user_location())

    @overload
    def local_step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def local_step(
        self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    def local_step(self, step: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Run a short step inline in the processor (no task round-trip), still recorded in
        history and retried by its policy. Use it for quick, local work."""
        return self._instance.run_step(step, args, kwargs, local=True, location=user_location())

    def side_effect(
        self, fn: Callable[[], T] | Callable[[], Awaitable[T]]
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn`` once and record its result; replays return the recorded value."""
        return self._instance.run_side_effect(fn, user_location())

    def sleep(self, duration: float | timedelta) -> Coroutine[Any, Any, None]:
        """Sleep durably: a timer on the delay topic, firing even across restarts."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        return self._instance.durable_sleep(seconds, user_location())

    async def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float | timedelta | None = None
    ) -> None:
        """Wait until ``predicate()`` is true (it is checked whenever the workflow's state may
        have changed: after signals, steps and timers). With ``timeout``, raise TimeoutError
        when it runs out; the timeout is a durable timer."""
        if predicate():
            return
        waiter = self._instance.mailbox.wait_until(predicate)
        if timeout is None:
            await waiter
            return
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        async with asyncio.timeout(seconds):
            await waiter

    async def wait_for_signal(self, name: str) -> Any:
        """The next signal called ``name`` (those that came earlier wait in order): None for
        a signal without arguments, its argument, or a tuple of its arguments (a signal sent
        with keyword arguments is refused). For function workflows: a class workflow's
        signals go to its ``@docket.signal`` handlers, and it is sent no others."""
        return await self._instance.mailbox.wait_for_signal(name)

    def emit(
        self,
        topic: str,
        value: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> str:
        """Emit a record to a user topic, atomically with this workflow's history.

        The record is appended in the same log transaction as the ``RecordEmitted`` event
        that records it, so it exists exactly when the event does; replays never emit it
        again. ``value``: bytes as they are, str as UTF-8, anything else as JSON. ``key``
        (default: this workflow's ID) picks the partition, through Docket's partitioner
        over the topic's own partition count. Topics are not namespaced; names starting
        with ``docket.`` are refused. Returns the record's identity, also sent as its
        ``docket-record-id`` header (``<workflow_id>/<run_id>/<seq>``): consumers dedupe by
        it. Not awaited: nothing comes back from the topic.
        """
        return self._instance.emit(topic, value, key, headers, user_location())

    def shielded(self) -> _Shield:
        """``async with ctx.shielded():`` a block that a cancellation of the workflow does
        not interrupt: a cancel request that arrives meanwhile is delivered (as
        CancelledError at the next await) when the block ends. For cleanup that must finish,
        e.g. compensations after a first cancellation."""
        return _Shield(self._instance)

    # -- other workflows ----------------------------------------------------------------------

    async def start_child(
        self,
        workflow: Workflow[Any, Any] | str | type,
        *args: Any,
        workflow_id: str | None = None,
        parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE,
        task_queue: str | None = None,
        run_timeout: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> ChildWorkflowHandle:
        """Start a child workflow (a registered workflow or its name) and return its handle
        once it is running; ``await handle`` for its result. The child gets its own workflow
        ID (default ``<this ID>/child-<seq>``) and lives on its own partition.
        ``parent_close_policy`` says what happens to it if this run closes first. Raises
        ChildWorkflowError if it cannot start (its ID is running, its type is unknown)."""
        started = self._instance.relations.start_child(
            workflow,
            args,
            kwargs,
            workflow_id=workflow_id,
            parent_close_policy=parent_close_policy,
            task_queue=task_queue,
            run_timeout=run_timeout,
            execution_timeout=execution_timeout,
            location=user_location(),
        )
        return await started

    async def child(
        self, workflow: Workflow[Any, Any] | str | type, *args: Any, **kwargs: Any
    ) -> Any:
        """Start a child workflow and wait for its result (options as for `start_child`);
        raises ChildWorkflowError, caused by the child's own failure, if it does not complete."""
        handle = await self.start_child(workflow, *args, **kwargs)
        return await handle.result()

    def external_workflow(
        self, workflow_id: str, run_id: str | None = None
    ) -> ExternalWorkflowHandle:
        """Another workflow by ID, to signal it: ``await ctx.external_workflow(id).signal(...)``."""
        return ExternalWorkflowHandle(self._instance, workflow_id, run_id)

    @property
    def parent(self) -> ExternalWorkflowHandle | None:
        """The workflow that started this one as a child (to signal it), or None."""
        ref = self._instance.parent
        if ref is None:
            return None
        return ExternalWorkflowHandle(self._instance, ref["workflow_id"], None)

    def continue_as_new(self, *args: Any, **kwargs: Any) -> NoReturn:
        """End this run and start a fresh one of the same workflow, under the same workflow
        ID, with these arguments and an empty history: the way to keep a long-lived
        workflow's history (and replay time) bounded. It raises, so nothing after it runs;
        raised in a signal or update handler, it ends the run just the same (that update
        is cut off: its callers get UpdateFailedError).

        Signals recorded but not yet consumed by ``wait_for_signal`` are handed to the new
        run; commands that arrive during the switch go to the new run. Handles and
        ``result()`` follow the chain. Update handlers still running are cut off: wait for
        ``ctx.all_handlers_finished()`` first."""
        raise ContinueAsNew(args, kwargs)

    def set_query_handler(self, name: str, handler: Callable[..., Any]) -> None:
        """Answer query ``name`` with ``handler(query_ctx, *args)`` (function workflows; class
        workflows use ``@docket.query`` methods)."""
        self._instance.mailbox.query_handlers[name] = handler

    def set_update_handler(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        validator: Callable[..., Any] | None = None,
    ) -> None:
        """Take update ``name`` with ``handler(ctx, *args)`` (function workflows; class
        workflows use ``@docket.update`` methods). ``validator(query_ctx, *args)`` runs first,
        on live state, and rejects the update by raising: a rejected update records nothing."""
        self._instance.mailbox.update_handlers[name] = (handler, validator)

    def all_handlers_finished(self) -> bool:
        """True when no signal or update handler is still running. Wait for it before
        returning, so that no handler is cut off: ``await ctx.wait_until(ctx.all_handlers_finished)``."""
        return self._instance.mailbox.running_handlers == 0

    # -- deterministic helpers ---------------------------------------------------------------

    def now(self) -> datetime:
        """The time of the event being processed (UTC); the same on every replay."""
        return datetime.fromtimestamp(self._instance.loop.time(), UTC)

    def random(self) -> _random.Random:
        """A random generator seeded by the run: the same sequence on every replay."""
        self._instance.not_in_side_effect("random")
        if self._random is None:
            self._random = _random.Random(uuid.UUID(self.run_id).int)
        return self._random

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID drawn from the run's deterministic generator."""
        self._instance.not_in_side_effect("uuid4")
        return uuid.UUID(int=self.random().getrandbits(128), version=4)


class _Shield:
    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    async def __aenter__(self) -> None:
        self._instance.shields += 1

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is GeneratorExit:  # the coroutine is being closed (a dropped instance), not run
            return
        instance = self._instance
        instance.shields -= 1
        if not instance.shields and instance.cancel_pending:
            if asyncio.current_task() is instance.main_task and exc[0] is None:
                instance.cancel_pending = False  # raised right here, at the end of the block
                raise asyncio.CancelledError(instance.cancel_reason)
            instance.deliver_cancel()


class QueryContext:
    """Passed to query handlers: read-only. Durable operations raise ReadOnlyContextError."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx
        self.workflow_id = ctx.workflow_id
        self.run_id = ctx.run_id
        self.workflow_type = ctx.workflow_type

    def now(self) -> datetime:
        """The time of the workflow's latest event."""
        return self._ctx.now()

    def __getattr__(self, name: str) -> Any:
        if name in (
            "step",
            "local_step",
            "sleep",
            "side_effect",
            "wait_until",
            "wait_for_signal",
            "continue_as_new",
            "start_child",
            "child",
            "external_workflow",
            "shielded",
            "emit",
            "random",
            "uuid4",
        ):
            raise ReadOnlyContextError(
                f"ctx.{name}() was called in a query of workflow {self.workflow_type!r} "
                f"(workflow_id={self.workflow_id}): queries only read state; do this in the "
                "workflow or in a signal handler"
            )
        raise AttributeError(name)
