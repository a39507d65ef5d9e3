"""WorkflowInstance: one run of workflow code, driven by events, producing commands.

``activate(events, now_us)`` feeds the events the code is waiting for (started, step
completed or failed, timer fired), runs the code until it is idle, and returns what it
asked for, as event bodies ready to be recorded. Every durable call gets the next ``seq``;
`replay` re-runs recorded history and checks each activation's commands against the
events recorded for it (see matching.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from docket.codec.failure import from_failure, to_failure
from docket.codec.payload import decode_args, encode_args, from_payload, to_payload
from docket.context import ContinueAsNew, WorkflowContext
from docket.definitions import Step, Workflow
from docket.emission import encode_headers, encode_value, record_id, record_problem
from docket.errors import CancelledError, SerializationError, WorkflowError
from docket.execution.failures import step_failed
from docket.execution.ids import continued_run_id
from docket.retry import MAX_DURATION_S, RetryPolicy, whole_ms
from docket.runtime import deadlock
from docket.runtime.location import user_location
from docket.runtime.loop import DeterministicLoop
from docket.runtime.messages import Mailbox
from docket.runtime.relations import Relations
from docket.user_code import call_without_exit

_NO_RETRY = RetryPolicy(maximum_attempts=1).to_record()


@dataclass
class Command:
    """What workflow code asked for: an event body to record, plus local work to run."""

    kind: str  # StepScheduled | TimerStarted | SideEffectRecorded | WorkflowCompleted | ...
    body: dict[str, Any]
    location: str = ""
    local_call: Callable[[], Any] | None = None  # for local steps and side effects


class _TimerBridge:
    """What the deterministic loop calls when code starts or cancels an asyncio timer."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    def __call__(self, when: float, handle: asyncio.TimerHandle) -> None:
        self._instance._start_timer(when, handle)

    def cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._instance._cancel_timer(handle)


class WorkflowInstance:
    def __init__(
        self,
        definition: Workflow[Any, Any],
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        task_queue: str,
        find_step: Callable[[str], Step[Any, Any] | None],
    ) -> None:
        self.definition = definition
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        self.task_queue = task_queue
        self.find_step = find_step
        # typeshed marks I/O methods abstract; workflow code must not do I/O, so they stay unimplemented
        self.loop = DeterministicLoop(_TimerBridge(self))  # type: ignore[abstract]
        self.ctx = WorkflowContext(self)
        self.replaying = False
        self._seq = 0
        self._steps: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_seqs: dict[int, int] = {}  # id(handle) -> seq, while pending
        self._commands: list[Command] = []
        self.local_calls: dict[int, Callable[[], Any]] = {}  # pending local steps, for retries
        # seq -> SideEffectRecorded body, for the activation being replayed (see matching.py)
        self.recorded_side_effects: dict[int, dict[str, Any]] = {}
        self._in_side_effect = False  # a side effect's function is running (not_in_side_effect)
        self._main: asyncio.Task[Any] | None = None
        self._location_hint = ""
        self.obj: Any = None  # the class workflow's instance, shared by its handlers
        self.cancel_reason = ""
        self.mailbox = Mailbox(self)
        self.closed = False
        self._delayed_start: dict[str, Any] | None = None
        self.relations = Relations(self)
        self.shields = 0  # shielded blocks running: a cancel request waits for them
        self.cancel_pending = False
        self.parent: dict[str, Any] | None = None  # the WorkflowRef of the parent, if a child

    def dispose(self) -> None:
        """Let go of everything, once the processor is done with a closed run. The instance,
        its loop, its tasks and their contexts point at one another: left alone, the
        couple of dozen objects of every run wait for the cyclic garbage collector, and
        make its collections more frequent and longer. Reference counting frees them now.
        The instance is unusable afterwards, so a run whose tasks are still pending (a
        sub-task that outlived the code, a run closed by a failed handler) is left alone:
        their coroutines' clean-up, when they are collected, still runs against it."""
        if self.loop.has_pending_tasks():
            return
        workflow_id = self.workflow_id
        self.__dict__.clear()
        self.workflow_id = workflow_id  # for whoever inspects what is left

    # -- driving ------------------------------------------------------------------------------

    def activate(self, events: list[dict[str, Any]], now_us: int) -> list[Command]:
        """Messages (signals, updates) are applied before results resume the code, so their
        handlers run before code that decides on the state they change (continue-as-new,
        returning): the same order on every replay."""
        self.loop.set_time(now_us / 1e6)
        for event in sorted(events, key=_delivery_order):
            kind, body = event["body"]
            if kind == "WorkflowStarted":
                self._start(body)
            elif kind.startswith(("Child", "ExternalSignal")):
                self.relations.resolve(kind, body)
            elif kind == "StartDelayElapsed":
                if self._delayed_start is not None:
                    self._begin(self._delayed_start)
                    self._delayed_start = None
            elif kind == "StepCompleted":
                self.local_calls.pop(body["seq"], None)
                future, hint = self._steps.pop(body["seq"])
                if not future.done():
                    try:
                        value = from_payload(
                            body["result"], hint, where=f"result of step seq {body['seq']}"
                        )
                    except SerializationError as exc:  # surfaces at the workflow's await
                        future.set_exception(exc)
                    else:
                        future.set_result(value)
            elif kind == "StepFailed":
                self.local_calls.pop(body["seq"], None)
                future, _ = self._steps.pop(body["seq"])
                if not future.done():
                    future.set_exception(from_failure(body["failure"]))
            elif kind == "TimerFired":
                handle = self._timers.pop(body["seq"])
                self._timer_seqs.pop(id(handle), None)
                if not handle.cancelled():
                    self.loop._ready.append(handle)
            elif kind == "SignalReceived":
                self.mailbox.deliver(body["signal_name"], body["args"], body["kwargs"])
            elif kind == "UpdateAccepted":
                try:
                    self.mailbox.accept_update(
                        body["update_id"], body["update_name"], body["args"], body["kwargs"]
                    )
                except (LookupError, SerializationError, TypeError) as exc:  # code changed since
                    self.update_completed(
                        {"update_id": body["update_id"], "result": None, "failure": to_failure(exc)}
                    )
            elif kind == "CancelRequested":
                self.cancel_reason = body["reason"] or "cancel requested"
                self.cancel_pending = True
                if not self.shields:  # else delivered when the last shielded block ends
                    self.deliver_cancel()
        self.loop.run_until_idle()
        while self.mailbox.settle_conditions():  # a condition that now holds lets code go on
            self.loop.run_until_idle()
        self._check_main()
        commands, self._commands = self._commands, []
        return commands

    def _start(self, body: dict[str, Any]) -> None:
        """Create the run's object (class workflows: handlers work from now on) and start
        the main task, unless a start delay holds it back until StartDelayElapsed."""
        self.parent = body.get("parent")
        if self.definition.cls is not None:
            self.obj = call_without_exit(self.definition.cls, f"workflow {self.workflow_type!r}")
        if body.get("start_at_us"):
            self._delayed_start = body
            return
        self._begin(body)

    def _begin(self, body: dict[str, Any]) -> None:
        definition = self.definition
        where = f"workflow {self.workflow_type!r}"
        target: Callable[..., Any]
        if definition.cls is not None:
            target = getattr(self.obj, definition.fn.__name__)
            skip = 2
        else:
            target = definition.fn
            skip = 1
        try:
            if definition.dynamic:
                args = [from_payload(p) for p in body["args"]]
                kwargs = {k: from_payload(p) for k, p in body["kwargs"].items()}
                coro = target(self.ctx, self.workflow_type, *args, **kwargs)
            else:
                args, kwargs = decode_args(
                    definition.fn, body["args"], body["kwargs"], skip=skip, where=where
                )
                bind_check(definition.fn, skip, args, kwargs, where)
                coro = target(self.ctx, *args, **kwargs)
        except (SerializationError, TypeError) as exc:  # inputs that do not fit: the run fails
            coro = _raise(exc)
        self._main = self.loop.create_task(coro, name=f"workflow {self.workflow_id}")
        if self.cancel_reason:  # cancelled while its start was delayed
            self._main.cancel(self.cancel_reason)

    def _check_main(self) -> None:
        main = self._main
        if main is None or self.closed:
            return
        failed_handler = self.mailbox.handler_failure
        if failed_handler is None and not main.done():
            return
        self.closed = True
        exc: BaseException | None
        if failed_handler is not None:
            exc = failed_handler
        elif main.cancelled():
            reason = self.cancel_reason or "the workflow's main task was cancelled"
            failure = to_failure(CancelledError(f"cancelled: {reason}"))
            self._commands.append(
                Command("WorkflowCancelled", {"failure": failure}, self._returns_at())
            )
            return
        else:
            exc = main.exception()
        if isinstance(exc, ContinueAsNew):
            self._continue_as_new(exc)
            return
        if exc is None:
            try:
                result = to_payload(
                    main.result(), where=f"result of workflow {self.workflow_type!r}"
                )
            except SerializationError as error:
                exc = error
            else:
                self._commands.append(
                    Command("WorkflowCompleted", {"result": result}, self._returns_at())
                )
                return
        self._commands.append(
            Command("WorkflowFailed", {"failure": to_failure(exc)}, self._returns_at())
        )

    def _continue_as_new(self, request: ContinueAsNew) -> None:
        where = f"continue_as_new of workflow {self.workflow_type!r}"
        try:
            args, kwargs = encode_args(request.args_, request.kwargs, where=where)
        except SerializationError as exc:  # arguments that cannot be recorded fail the run
            self._commands.append(
                Command("WorkflowFailed", {"failure": to_failure(exc)}, self._returns_at())
            )
            return
        body = {
            "new_run_id": continued_run_id(self.run_id),
            "workflow_type": self.workflow_type,
            "args": args,
            "kwargs": kwargs,
            "task_queue": self.task_queue,
            "signals": self.mailbox.unconsumed_signals(),
        }
        self._commands.append(Command("WorkflowContinuedAsNew", body, self._returns_at()))

    @property
    def main_task(self) -> asyncio.Task[Any] | None:
        return self._main

    def deliver_cancel(self) -> None:
        """Cancel the main task now (its code sees CancelledError at its current await)."""
        self.cancel_pending = False
        if self._main is not None and not self._main.done():
            self._main.cancel(self.cancel_reason)

    def update_completed(self, body: dict[str, Any]) -> None:
        """An update handler finished: record its outcome (unless the run closed first: its
        callers were told then)."""
        if not self.closed:
            self._commands.append(Command("UpdateCompleted", body, f"update {body['update_id']}"))

    def _returns_at(self) -> str:
        code = self.definition.fn.__code__
        return f"{code.co_filename}:{code.co_firstlineno} (the workflow function returned)"

    # -- what ctx asks for ------------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next durable call's seq (also used by helpers such as `Relations`)."""
        self._seq += 1
        return self._seq

    def not_in_side_effect(self, call: str) -> None:
        """Refuse ``ctx.<call>()`` from a side effect's function: the function runs live only,
        never in replays, so what it drew from ctx (the run's random sequence, a seq) would be
        drawn live only, and the code after it would see other values, or ask for other
        seqs, once replayed. Raised inside the function, this is the side effect's failure."""
        if self._in_side_effect:
            raise WorkflowError(
                f"ctx.{call}() was called in the function of a side effect of workflow "
                f"{self.workflow_type!r} ({user_location()}): that function does not run in replays, "
                "so what it asks of ctx would differ then; call it in the workflow code"
            )

    def record(self, kind: str, body: dict[str, Any], location: str) -> None:
        """Ask for an event to be recorded (replay checks it against history)."""
        self._commands.append(Command(kind, body, location))

    def emit(
        self,
        topic: str,
        value: Any,
        key: str | None,
        headers: Mapping[str, str | bytes] | None,
        location: str,
    ) -> str:
        """Record a RecordEmitted (the processor appends the record with the event); return
        the record's identity. Bad input raises here, in the workflow code that asked."""
        self.not_in_side_effect("emit")
        problem = record_problem(topic, key, headers)
        if problem is not None:
            raise WorkflowError(
                f"ctx.emit in workflow {self.workflow_type!r} ({location}): {problem}"
            )
        seq = self.next_seq()
        body = {
            "seq": seq,
            "topic": topic,
            "key": self.workflow_id if key is None else key,
            "value": encode_value(value, where=f"the value emitted to topic {topic!r}"),
            "headers": encode_headers(headers),
        }
        self._commands.append(Command("RecordEmitted", body, location))
        return record_id(self.workflow_id, self.run_id, seq)

    async def run_step(
        self,
        step: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        local: bool,
        location: str,
    ) -> Any:
        return await self.schedule_step(step, args, kwargs, local=local, location=location)

    def schedule_step(
        self,
        step: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        local: bool,
        location: str,
    ) -> asyncio.Future[Any]:
        if isinstance(step, Step):
            definition: Step[Any, Any] | None = step
            name = step.name
        elif isinstance(step, str):
            name = step
            definition = self.find_step(step)
        else:
            raise WorkflowError(
                f"ctx.step needs a registered step or a step name, got {step!r} "
                f"(in workflow {self.workflow_type!r}, {location})"
            )
        if local and (definition is None or definition.elsewhere):
            raise WorkflowError(
                f"local step {name!r} is not registered in this app; local steps run inline"
            )
        seq = self.next_seq()
        arg_payloads, kwarg_payloads = encode_args(args, kwargs, where=f"step {name!r}")
        retry = (definition.retry if definition else RetryPolicy()).to_record()
        body = {
            "seq": seq,
            "step_name": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "task_queue": (
                definition.task_queue if definition and definition.task_queue else self.task_queue
            ),
            "local": local,
            "retry": retry,
            "start_to_close_ms": _ms(definition.start_to_close_timeout) if definition else None,
            "heartbeat_ms": _ms(definition.heartbeat_timeout) if definition else None,
            "schedule_to_close_ms": (
                _ms(definition.schedule_to_close_timeout) if definition else None
            ),
            # a local attempt starts in the batch that dispatches it: it never waits in a queue
            "schedule_to_start_ms": (
                _ms(definition.schedule_to_start_timeout) if definition and not local else None
            ),
        }
        command = Command("StepScheduled", body, location)
        if local:
            assert definition is not None
            command.local_call = self.local_calls[seq] = _bind_local(definition, name, args, kwargs)
        self._commands.append(command)
        future = self.loop.create_future()
        self._steps[seq] = (
            future,
            definition.return_hint if definition and not definition.dynamic else None,
        )
        if not local:
            future.add_done_callback(lambda f: self._step_abandoned(seq, f))
        return future

    def _step_abandoned(self, seq: int, future: asyncio.Future[Any]) -> None:
        """The code stopped waiting for a running step: ask its worker to cancel it."""
        if future.cancelled() and seq in self._steps:
            self._commands.append(Command("StepCancelRequested", {"seq": seq}, user_location()))

    async def run_side_effect(self, fn: Callable[[], Any], location: str) -> Any:
        return await self.schedule_side_effect(fn, location)

    def schedule_side_effect(self, fn: Callable[[], Any], location: str) -> asyncio.Future[Any]:
        """A synchronous ``fn`` runs now, within the activation, and its outcome is recorded
        as one SideEffectRecorded event: the code goes on at once, with no second
        activation. An async one (or one that returns an awaitable) cannot run inside
        workflow code's loop: it becomes a local step, run after the activation. Replays
        return what was recorded, either way."""
        seq = self.next_seq()
        if self.replaying:
            recorded = self.recorded_side_effects.pop(seq, None)
            if recorded is not None:
                self._commands.append(Command("SideEffectRecorded", recorded, location))
                return self._side_effect_outcome(recorded)
            # else recorded as a local step (below), or history holds something else here
        elif not inspect.iscoroutinefunction(fn):
            outcome = self._run_side_effect_now(fn, seq)
            if isinstance(outcome, dict):
                self._commands.append(Command("SideEffectRecorded", outcome, location))
                return self._side_effect_outcome(outcome)
            fn = functools.partial(_awaiting, outcome)  # it returned an awaitable
        return self._side_effect_as_local_step(seq, fn, location)

    def _run_side_effect_now(self, fn: Callable[[], Any], seq: int) -> dict[str, Any] | Any:
        """The SideEffectRecorded body of running ``fn``; or the awaitable it returned."""
        self._in_side_effect = True
        try:
            with deadlock.suspended():  # it may do I/O: not workflow code stuck in a loop
                value = call_without_exit(fn, f"side effect in workflow {self.workflow_type!r}")
            if inspect.isawaitable(value):
                return value
            result = to_payload(value, where=f"result of side effect (seq {seq})")
        except KeyboardInterrupt:  # the operator stops the process: the activation runs again
            raise
        except BaseException as exc:  # the code sees a StepError, as from a failed step
            # whatever fn raised (a CancelledError of its own, a library's BaseException): its
            # seq is taken, so leaving it unrecorded would make every replay ask for another
            failure = step_failed("side_effect", seq, 1, to_failure(exc))
            return {"seq": seq, "result": None, "failure": failure}
        finally:
            self._in_side_effect = False
        return {"seq": seq, "result": result, "failure": None}

    def _side_effect_outcome(self, body: dict[str, Any]) -> asyncio.Future[Any]:
        """A future that holds the recorded outcome: live and in replays, the code gets the
        value decoded from the record, so both see the same (a tuple comes back a list)."""
        future = self.loop.create_future()
        if body["failure"] is not None:
            future.set_exception(from_failure(body["failure"]))
            return future
        try:
            future.set_result(
                from_payload(body["result"], where=f"result of side effect (seq {body['seq']})")
            )
        except SerializationError as exc:  # surfaces at the workflow's await
            future.set_exception(exc)
        return future

    def _side_effect_as_local_step(
        self, seq: int, fn: Callable[[], Any], location: str
    ) -> asyncio.Future[Any]:
        body = {
            "seq": seq,
            "step_name": "side_effect",
            "args": [],
            "kwargs": {},
            "task_queue": self.task_queue,
            "local": True,
            "retry": _NO_RETRY,
            "start_to_close_ms": None,
            "heartbeat_ms": None,
            "schedule_to_close_ms": None,
            "schedule_to_start_ms": None,
        }
        self.local_calls[seq] = fn
        self._commands.append(Command("StepScheduled", body, location, local_call=fn))
        future = self.loop.create_future()
        self._steps[seq] = (future, None)
        return future

    async def durable_sleep(self, seconds: float, location: str) -> None:
        if seconds <= 0:
            return
        self._location_hint = location  # asyncio.sleep calls call_at (our timer) synchronously
        await asyncio.sleep(seconds)

    def _start_timer(self, when: float, handle: asyncio.TimerHandle) -> None:
        delay = when - self.loop.time()
        if not delay <= MAX_DURATION_S:  # nan too: no record holds such a fire time
            raise WorkflowError(
                f"workflow {self.workflow_type!r} asked for a timer {delay!r} s away "
                f"({user_location()}): a sleep or timeout may last at most 100,000 years"
            )
        seq = self.next_seq()
        self._timers[seq] = handle
        self._timer_seqs[id(handle)] = seq
        fire_at_us = int(round(when * 1e6))
        location, self._location_hint = self._location_hint or user_location(), ""
        self._commands.append(
            Command("TimerStarted", {"seq": seq, "fire_at_us": fire_at_us}, location)
        )

    def _cancel_timer(self, handle: asyncio.TimerHandle) -> None:
        seq = self._timer_seqs.pop(id(handle), None)
        if seq is None or self._timers.pop(seq, None) is None:
            return  # fired already, or never durable
        body = {"seq": seq, "fire_at_us": int(round(handle.when() * 1e6))}
        self._commands.append(Command("TimerCancelled", body, user_location()))


_FIRST = {"WorkflowStarted": 0, "SignalReceived": 1, "UpdateAccepted": 1}


def _delivery_order(event: dict[str, Any]) -> int:
    return _FIRST.get(event["body"][0], 2)


async def _raise(exc: BaseException) -> Any:
    raise exc


async def _awaiting(awaitable: Any) -> Any:
    return await awaitable


def bind_check(
    fn: Callable[..., Any], skip: int, args: list[Any], kwargs: dict[str, Any], where: str
) -> None:
    """Arguments that do not match the signature fail the run with a clear message."""
    signature, fewest, most = _signature_after(fn, skip)
    if not kwargs and fewest <= len(args) <= most:
        return  # positional arguments only, as many as it takes: Signature.bind costs ~40 µs
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"arguments do not match {where}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _signature_after(fn: Callable[..., Any], skip: int) -> tuple[inspect.Signature, int, int]:
    """The signature after ``skip`` leading parameters, with the counts of positional
    arguments that surely bind (-1 when a keyword-only parameter has no default)."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())[skip:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    fewest = sum(1 for p in positional if p.default is p.empty)
    most = sys.maxsize if any(p.kind == p.VAR_POSITIONAL for p in params) else len(positional)
    if any(p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in params):
        fewest, most = 1, 0  # never binds from positional arguments alone: let bind say why
    return signature.replace(parameters=params), fewest, most


def _ms(delta: Any) -> int | None:
    return None if delta is None else whole_ms(delta)


def _bind_local(
    step: Step[Any, Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[], Any]:
    call_args = (name, *args) if step.dynamic else args
    if step.is_async:

        async def call_async() -> Any:
            return await step.fn(*call_args, **kwargs)

        return call_async

    def call_in_thread() -> Any:
        return step.fn(*call_args, **kwargs)

    return call_in_thread
