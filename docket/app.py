"""App: the registry of workflows and steps, and the decorators that fill it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, overload

from docket.definitions import DEFAULT_QUEUE, Step, Workflow, check_step_fn, make_workflow
from docket.errors import DefinitionError
from docket.retry import RetryPolicy
from docket.sources import SignalSource, make_source

if TYPE_CHECKING:
    from docket.context import WorkflowContext

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """Workflows and steps of one application. Create one per app (and a fresh one per test
    if you like): there is no global registry."""

    def __init__(self, name: str = "app", *, task_queue: str = DEFAULT_QUEUE) -> None:
        self.name = name
        self.task_queue = task_queue
        self.workflows: dict[str, Workflow[Any, Any]] = {}
        self.steps: dict[str, Step[Any, Any]] = {}
        self.dynamic_workflow: Workflow[Any, Any] | None = None
        self.dynamic_step: Step[Any, Any] | None = None
        self.signal_sources: dict[str, SignalSource] = {}

    # -- workflows --------------------------------------------------------------------------

    @overload
    def workflow(
        self, target: Callable[Concatenate[WorkflowContext, P], Awaitable[R]]
    ) -> Workflow[P, R]: ...

    @overload
    def workflow(self, target: type) -> Workflow[..., Any]: ...

    @overload
    def workflow(
        self, *, name: str | None = None, dynamic: bool = False
    ) -> Callable[[Callable[Concatenate[WorkflowContext, P], Awaitable[R]]], Workflow[P, R]]: ...

    def workflow(
        self, target: Any = None, *, name: str | None = None, dynamic: bool = False
    ) -> Any:
        """Register ``async def f(ctx, ...)`` (or a class with a ``@docket.run`` method).

        ``dynamic=True`` registers the catch-all for workflow types nobody registered: it is
        called as ``f(ctx, type_name, *args, **kwargs)`` with arguments decoded as plain JSON.
        """

        def register(t: Any) -> Workflow[Any, Any]:
            wf = make_workflow(t, name=name, dynamic=dynamic, task_queue=self.task_queue)
            if dynamic:
                if self.dynamic_workflow is not None:
                    raise DefinitionError(f"app {self.name!r} already has a dynamic workflow")
                self.dynamic_workflow = wf
            else:
                if wf.name in self.workflows:
                    raise DefinitionError(
                        f"workflow name {wf.name!r} is registered twice in app {self.name!r}; "
                        "pass name=... to one of them"
                    )
                self.workflows[wf.name] = wf
            return wf

        return register(target) if target is not None else register

    # -- steps --------------------------------------------------------------------------------

    @overload
    def step(self, fn: Callable[P, R]) -> Step[P, R]: ...

    @overload
    def step(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        task_queue: str | None = None,
        dynamic: bool = False,
    ) -> Callable[[Callable[P, R]], Step[P, R]]: ...

    def step(
        self,
        fn: Any = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        task_queue: str | None = None,
        dynamic: bool = False,
    ) -> Any:
        """Register a step: a plain function (async, or sync to run in a worker thread).

        ``dynamic=True`` registers the catch-all for step names nobody registered: it is
        called as ``f(name, *args, **kwargs)``.

        Timeouts are timedeltas, as in Temporal (docs/guarantees.md):
        ``schedule_to_close_timeout`` bounds the whole step, every attempt and backoff;
        ``schedule_to_start_timeout`` each attempt's wait in its task queue;
        ``start_to_close_timeout`` each attempt from its start; ``heartbeat_timeout`` the
        time between heartbeats. The last two fail the attempt (the retry policy applies);
        the first two fail the step, with no retry.
        """

        def register(f: Any) -> Step[Any, Any]:
            check_step_fn(f)
            step: Step[Any, Any] = Step(
                name=name or f.__name__,
                fn=f,
                retry=retry or RetryPolicy(),
                start_to_close_timeout=start_to_close_timeout,
                heartbeat_timeout=heartbeat_timeout,
                schedule_to_close_timeout=schedule_to_close_timeout,
                schedule_to_start_timeout=schedule_to_start_timeout,
                task_queue=task_queue,
                dynamic=dynamic,
            )
            if dynamic:
                if self.dynamic_step is not None:
                    raise DefinitionError(f"app {self.name!r} already has a dynamic step")
                self.dynamic_step = step
            else:
                if step.name in self.steps:
                    raise DefinitionError(
                        f"step name {step.name!r} is registered twice in app {self.name!r}; "
                        "pass name=... to one of them"
                    )
                self.steps[step.name] = step
            return step

        return register(fn) if fn is not None else register

    # -- signal sources -------------------------------------------------------------------------

    def signal_source(
        self,
        topic: str,
        *,
        workflow: Workflow[Any, Any] | str | type,
        signal: Any,
        key_to_id: Callable[[str], str] | None = None,
        start: bool = True,
        start_args: Sequence[Any] = (),
        decode: str = "json",
        name: str | None = None,
    ) -> SignalSource:
        """Bind a user topic as a source of signals: the engine consumes it and sends each
        record, as signal ``signal`` (a ``@docket.signal`` handler or a name), to workflow
        ``key_to_id(record key)`` (default: the key itself). A workflow that is not running
        is started first with ``start_args`` (signal-with-start); ``start=False`` only
        signals running ones. ``decode``: the value is the signal's one argument, as
        ``"json"`` (default), ``"text"`` (UTF-8) or ``"bytes"``; a record that does not
        decode is logged and skipped. Each record is delivered once: its signal command is
        appended together with the commit of its offset. ``name`` (default: the topic) names
        the binding's consumer group, ``docket.<namespace>.source.<name>``.
        """
        source = make_source(
            topic,
            workflow=workflow,  # type: ignore[arg-type]  # a class decorated as a workflow
            signal=signal,
            key_to_id=key_to_id,
            start=start,
            start_args=start_args,
            decode=decode,
            name=name,
            default_queue=self.task_queue,
        )
        if source.name in self.signal_sources:
            raise DefinitionError(
                f"signal source {source.name!r} is bound twice in app {self.name!r}; pass "
                "name=... to tell two bindings of one topic apart"
            )
        self.signal_sources[source.name] = source
        return source

    # -- lookups --------------------------------------------------------------------------------

    def find_workflow(self, name: str) -> Workflow[Any, Any] | None:
        return self.workflows.get(name) or self.dynamic_workflow

    def find_step(self, name: str) -> Step[Any, Any] | None:
        return self.steps.get(name) or self.dynamic_step

    def queues(self) -> set[str]:
        return {self.task_queue} | {s.task_queue for s in self.steps.values() if s.task_queue}
