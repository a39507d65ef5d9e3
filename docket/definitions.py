"""What `@app.workflow` and `@app.step` register: validated at decoration time, not at 3 a.m."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any, Generic, ParamSpec, TypeVar

from docket.errors import DefinitionError, WorkflowError
from docket.retry import MAX_DURATION_S, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"

# a step's timeouts, as in Temporal (docs/guarantees.md, "Timeouts are durable timers too")
TIMEOUT_OPTIONS = (
    "schedule_to_close_timeout",
    "schedule_to_start_timeout",
    "start_to_close_timeout",
    "heartbeat_timeout",
)


def _in_workflow() -> bool:
    from asyncio import events

    from docket.runtime.loop import DeterministicLoop

    return isinstance(events._get_running_loop(), DeterministicLoop)


@dataclasses.dataclass(frozen=True)
class Step(Generic[P, R]):
    """A registered step. Call it plainly outside workflows (unit tests); inside workflow
    code, run it durably with ``await ctx.step(step, ...)``."""

    name: str
    fn: Callable[P, R]
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    start_to_close_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    task_queue: str | None = None
    dynamic: bool = False
    schedule_to_close_timeout: timedelta | None = None
    schedule_to_start_timeout: timedelta | None = None
    elsewhere: bool = False  # a `step_ref`: named here, implemented by another app's worker

    def __post_init__(self) -> None:
        for option in TIMEOUT_OPTIONS:
            value = getattr(self, option)
            if value is None:
                continue
            if (
                not isinstance(value, timedelta)
                or value < timedelta(milliseconds=1)
                or value.total_seconds() > MAX_DURATION_S  # no record holds its deadline
            ):
                raise DefinitionError(
                    f"step {self.name!r}: {option} must be a timedelta of at least 1 ms and "
                    f"at most 100,000 years, got {value!r}; leave it unset for no such timeout"
                )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if _in_workflow():
            raise WorkflowError(
                f"step {self.name!r} was called directly inside workflow code; use "
                f"'await ctx.step({self.name}, ...)' so it runs durably"
            )
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        retry: RetryPolicy | None = None,
        start_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        task_queue: str | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
    ) -> Step[P, R]:
        """A copy with some options changed, for one call site."""
        changes: dict[str, Any] = {}
        if retry is not None:
            changes["retry"] = retry
        timeouts = {
            "start_to_close_timeout": start_to_close_timeout,
            "heartbeat_timeout": heartbeat_timeout,
            "schedule_to_close_timeout": schedule_to_close_timeout,
            "schedule_to_start_timeout": schedule_to_start_timeout,
        }
        changes.update((option, value) for option, value in timeouts.items() if value is not None)
        if task_queue is not None:
            changes["task_queue"] = task_queue
        return dataclasses.replace(self, **changes)

    @cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @cached_property
    def return_hint(self) -> Any:
        return _hints(self.fn).get("return")


def step_ref(
    name: str,
    *,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    task_queue: str | None = None,
) -> Step[..., Any]:
    """A step that runs elsewhere (a worker of another app, code this one does not import),
    named with the options a registered step carries: ``charge = docket.step_ref("charge",
    task_queue="payments", start_to_close_timeout=timedelta(seconds=10))``, then ``await
    ctx.step(charge, order)``. A bare name (``ctx.step("charge", order)``) can only take the
    defaults: retry for ever, no timeouts, the workflow's task queue. A reference is not
    registered, so no worker of this app runs it, and it cannot be a local step."""
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"step_ref needs the step's name, got {name!r}")

    def runs_elsewhere(*args: Any, **kwargs: Any) -> Any:
        raise WorkflowError(
            f"step {name!r} runs elsewhere: a step_ref only names it; run it with "
            f"'await ctx.step(...)' in a workflow"
        )

    return Step(name=name, fn=runs_elsewhere, elsewhere=True).options(
        retry=retry,
        start_to_close_timeout=start_to_close_timeout,
        heartbeat_timeout=heartbeat_timeout,
        task_queue=task_queue,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
    )


@dataclasses.dataclass(frozen=True)
class Workflow(Generic[P, R]):
    """A registered workflow: a function ``async def f(ctx, ...)``, or a class with a
    ``@docket.run`` method (one instance per run, for handlers over shared state)."""

    name: str
    fn: Callable[..., Any]
    cls: type | None = None
    dynamic: bool = False
    task_queue: str = DEFAULT_QUEUE
    signals: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    queries: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    updates: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)

    @cached_property
    def return_hint(self) -> Any:
        return _hints(self.fn).get("return")

    def __getattr__(self, name: str) -> Any:
        """``Cart.add`` on a decorated class still names its handler method (for
        ``handle.signal(Cart.add, ...)``)."""
        cls = self.__dict__.get("cls")
        if cls is not None and not name.startswith("__"):
            return getattr(cls, name)
        raise AttributeError(name)


def run(fn: Callable[P, R]) -> Callable[P, R]:
    """Mark the entry method of a class-based workflow."""
    fn.__docket_run__ = True  # type: ignore[attr-defined]
    return fn


F = TypeVar("F", bound=Callable[..., Any])


def signal(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a method of a class-based workflow as a signal handler: ``(self, ctx, *args)``,
    ``async def`` (it may await steps and timers) or plain ``def``. Signals are delivered
    once, in the order they were accepted; ones that arrive before the run starts wait."""

    def mark(f: F) -> F:
        f.__docket_signal__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def query(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a method of a class-based workflow as a query handler: a plain ``def (self, ctx,
    *args)`` that reads state and returns a value. Queries are never recorded in history."""

    def mark(f: F) -> F:
        if inspect.iscoroutinefunction(f):
            raise DefinitionError(
                f"query handler {f.__qualname__} must be a plain 'def': queries only read state"
            )
        f.__docket_query__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def update(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a method of a class-based workflow as an update handler: ``(self, ctx, *args)``,
    ``async def`` (it may await steps, timers and ``ctx.wait_until``) or plain ``def``. Its
    return value goes back to the caller; if it raises, the update fails and the workflow
    goes on. Add a validator with ``@<handler>.validator``: a plain ``def (self, ctx,
    *args)`` that raises to reject the update before anything is recorded."""

    def mark(f: F) -> F:
        f.__docket_update__ = name or f.__name__  # type: ignore[attr-defined]

        def validator(check: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(check):
                raise DefinitionError(
                    f"validator {check.__qualname__} must be a plain 'def': validators only "
                    "read state, and run before the update is recorded"
                )
            f.__docket_validator__ = check  # type: ignore[attr-defined]
            return check

        f.validator = validator  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def validator_of(handler: Callable[..., Any]) -> Callable[..., Any] | None:
    """The validator registered with ``@<handler>.validator``, if any."""
    found: Callable[..., Any] | None = getattr(handler, "__docket_validator__", None)
    return found


def _handlers(cls: type, marker: str) -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for _, member in inspect.getmembers(cls, inspect.isfunction):
        handler_name = getattr(member, marker, None)
        if handler_name is None:
            continue
        if handler_name in found:
            raise DefinitionError(f"{cls.__qualname__} has two handlers named {handler_name!r}")
        params = list(inspect.signature(member).parameters)
        if len(params) < 2:
            raise DefinitionError(
                f"handler {member.__qualname__} must take (self, ctx, ...): the context comes first"
            )
        found[handler_name] = member
    return found


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def make_workflow(
    target: Any, *, name: str | None, dynamic: bool, task_queue: str
) -> Workflow[Any, Any]:
    where = getattr(target, "__qualname__", repr(target))
    if inspect.isclass(target):
        runs = [
            m
            for _, m in inspect.getmembers(target, inspect.isfunction)
            if getattr(m, "__docket_run__", False)
        ]
        if len(runs) != 1:
            raise DefinitionError(
                f"workflow class {where} needs exactly one method marked @docket.run, found {len(runs)}"
            )
        fn, cls, skip = runs[0], target, 2
        try:
            target()
        except TypeError as exc:
            raise DefinitionError(
                f"workflow class {where} must be constructible with no arguments (one instance "
                f"per run; take inputs in its @docket.run method): {exc}"
            ) from None
    else:
        fn, cls, skip = target, None, 1
    if not inspect.iscoroutinefunction(fn):
        raise DefinitionError(f"workflow {where} must be an 'async def' function taking ctx first")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < skip:
        raise DefinitionError(
            f"workflow {where} must take the workflow context as its first parameter"
        )
    if dynamic:
        rest = params[skip:]
        if not rest:
            raise DefinitionError(
                f"dynamic workflow {where} must take (ctx, name, *args): the workflow type name comes first"
            )
    handlers: dict[str, Any] = {}
    if cls is not None:
        handlers = {
            "signals": _handlers(cls, "__docket_signal__"),
            "queries": _handlers(cls, "__docket_query__"),
            "updates": _handlers(cls, "__docket_update__"),
        }
    return Workflow(
        **handlers,
        name=name or fn.__name__ if cls is None else name or target.__name__,
        fn=fn,
        cls=cls,
        dynamic=dynamic,
        task_queue=task_queue,
    )


def check_step_fn(fn: Any) -> None:
    if isinstance(fn, Step):
        raise DefinitionError(f"step {fn.name!r} is already registered; decorate the function once")
    if not callable(fn):
        raise DefinitionError(f"@app.step needs a function, got {fn!r}")
    if inspect.isclass(fn):
        raise DefinitionError(f"@app.step needs a function, got the class {fn.__qualname__}")
