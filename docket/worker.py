"""The worker: runs step tasks from ``tasks.<queue>`` and reports outcomes to ``commands``.

Async steps run on the event loop, sync steps in a thread pool (of as many threads), at
most ``max_concurrency`` at a time. Outcomes of every step that finished since the last
flush go out in one log transaction together with the task offsets they settle (the
contiguous prefix of finished tasks per partition), so a crash re-delivers only
unfinished tasks: steps run at least once, and each attempt carries an idempotency key.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

from docket.app import App
from docket.codec.failure import to_failure
from docket.codec.payload import Payload, decode_args, from_payload, to_payload
from docket.codec.records import TASKS
from docket.command_sink import CommandSink, command_records
from docket.errors import (
    ApplicationError,
    CancelledError,
    PartitionFencedError,
    SerializationError,
    TimeoutError,
    WorkflowError,
)
from docket.execution.failures import step_timeout_message
from docket.execution.fold import CLOSING_EVENTS
from docket.execution.ids import task_token
from docket.faults import fault
from docket.log.base import Log
from docket.log.topics import Topics
from docket.streams.host import SYNC_INTERVAL_S, PartitionGroup
from docket.user_code import call_without_exit, cancelled_from_outside, without_exit

log = logging.getLogger("docket")

MAX_READ = 500

# events after which a step's task has nothing left to do (StepAttemptFailed: for its attempt)
_STEP_OVER = frozenset({"StepCompleted", "StepFailed", "StepAttemptFailed"})


def _over(task: dict[str, Any], events: list[dict[str, Any]] | None) -> bool:
    """Whether ``events`` (the task's run's history) record its attempt as over."""
    for event in events or ():
        kind, body = event["body"]
        if kind in CLOSING_EVENTS or (
            kind in _STEP_OVER
            and body["seq"] == task["seq"]
            and (kind != "StepAttemptFailed" or body["attempt"] == task["attempt"])
        ):
            log.info(
                "skipping task of step %r seq %d attempt %d of workflow_id=%s: its history "
                "records it over (%s); it was finished but not committed",
                task["step_name"],
                task["seq"],
                task["attempt"],
                task["workflow_id"],
                kind,
            )
            return True
    return False


class CompleteAsync(BaseException):  # noqa: N818 - control flow, not an error
    """Raised by `StepContext.complete_async`: the attempt stays pending after the step
    function returns. A BaseException, so ``except Exception`` in the step lets it through."""


@dataclass
class StepContext:
    """What a running step can know about itself: read it with `docket.step_context()`."""

    workflow_id: str
    run_id: str
    workflow_type: str
    step_name: str
    seq: int
    attempt: int
    idempotency_key: str
    heartbeat_details: Any
    _send: Callable[[StepContext, Any], None] | None = field(repr=False, default=None)
    _later: Callable[[float, Callable[[], None]], None] | None = field(repr=False, default=None)
    _heartbeat_ms: int | None = field(repr=False, default=None)
    _last_sent: float = field(repr=False, default=0.0)
    _latest: Any = field(repr=False, default=None)
    _unsent: bool = field(repr=False, default=False)
    _flush_scheduled: bool = field(repr=False, default=False)
    cancel_requested: bool = field(repr=False, default=False)
    _task: asyncio.Task[Any] | None = field(repr=False, default=None)

    def heartbeat(self, details: Any = None) -> None:
        """Report progress, and ``details`` the next attempt can resume from.

        Required within the step's heartbeat timeout when it has one. Sends are throttled
        to about twice per timeout (once a second without one), so a tight loop can call
        it freely; the latest details are never dropped: they go out when the throttle
        interval ends, or before the attempt's failure is reported. Safe from threads.
        Local steps have no heartbeat timeout: there it only records the latest details.
        Raises `docket.errors.CancelledError` once the workflow has cancelled this step (async
        steps are also cancelled at their current await), and `SerializationError` for
        details that cannot be encoded.
        """
        if self._send is not None:  # encoded now: a bad value is the caller's error, here,
            # not the throttle timer's later (it would be lost, and the step never told)
            where = f"heartbeat details of step {self.step_name!r}"
            details = None if details is None else to_payload(details, where=where)
        self._latest = details
        self._unsent = True
        if self.cancel_requested:
            raise CancelledError(
                f"step {self.step_name!r} (seq {self.seq}) was cancelled by its workflow"
            )
        if self._send is None:
            return
        interval = (self._heartbeat_ms / 2000) if self._heartbeat_ms else 1.0
        wait = self._last_sent + interval - time.monotonic()
        if wait <= 0:
            self.flush_heartbeat()
        elif not self._flush_scheduled and self._later is not None:
            self._flush_scheduled = True
            self._later(wait, self.flush_heartbeat)

    @property
    def task_token(self) -> str:
        """Identifies this attempt to `Client.complete_step`, `fail_step` and
        `heartbeat_step`, from any process: hand it to whoever will finish the step."""
        return task_token(self.workflow_id, self.run_id, self.seq, self.attempt)

    def complete_async(self) -> NoReturn:
        """End the step function without finishing the attempt: something else completes it
        later with `task_token`. Its start-to-close and heartbeat timeouts still run: a
        token used after them, or after the run closed, is refused."""
        raise CompleteAsync()

    def flush_heartbeat(self) -> None:
        self._flush_scheduled = False
        if self._unsent and self._send is not None:
            self._unsent = False
            self._last_sent = time.monotonic()
            self._send(self, self._latest)


current_step: contextvars.ContextVar[StepContext] = contextvars.ContextVar("docket_step")


def step_context() -> StepContext:
    """The context of the step attempt running in this task or thread."""
    try:
        return current_step.get()
    except LookupError:
        raise WorkflowError("step_context() was called outside a running step") from None


def _attempt(task: dict[str, Any]) -> tuple[str, str, int, int]:
    """The step attempt a task record (or a cancel notice) is for."""
    return task["workflow_id"], task["run_id"], task["seq"], task["attempt"]


class _Partition:
    def __init__(self, offset: int, end: int) -> None:
        self.next_read = offset
        # tasks appended before this worker took the partition: each may be one a worker
        # finished (its step recorded as completed) but could not commit, being behind a
        # step that still ran when that worker died
        self.redelivered_before = end
        self.in_flight: set[int] = set()  # read, not yet finished: waiting or running
        self.waiting: deque[tuple[int, dict[str, Any]]] = deque()  # (offset, task), read ahead
        self.committed = offset  # as far as this worker's own appends know

    def committable(self) -> int:
        return min(self.in_flight) if self.in_flight else self.next_read

    def unsettled(self) -> bool:
        """Steps of it still run here, or finished ones are not committed by this worker."""
        running = len(self.in_flight) - len(self.waiting)
        return running > 0 or self.committable() != self.committed


class Worker:
    def __init__(
        self,
        app: App,
        log_: Log,
        topics: Topics,
        member: str,
        *,
        queues: set[str] | None = None,
        max_concurrency: int = 200,
    ) -> None:
        self.app = app
        self.log = log_
        self.topics = topics
        self.queues = sorted(queues or app.queues())
        self.max_concurrency = max_concurrency
        # a thread for every step it may run at once: an attempt is started (and timed)
        # when it is dispatched, so a sync step must not then wait for a thread
        # (threads start as needed: async steps need none)
        self._threads = ThreadPoolExecutor(max_concurrency, thread_name_prefix="docket-step")
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._groups = {
            q: PartitionGroup(
                log_,
                topics.group(f"worker.{q}"),
                member,
                self._assigner(q),
                self._revoker(q),
                self._settler(q),
            )
            for q in self.queues
        }
        self._running = 0
        self._outbox: list[dict[str, Any]] = []  # commands reporting outcomes
        self.reports_to: CommandSink | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running_steps: dict[tuple[str, str, int, int], StepContext] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.completed = 0
        # runs' recorded histories by (workflow_id, run_id) (None: the store has no such
        # run), set by the engine: how a re-delivered task is known to be over
        self.histories_of: (
            Callable[[set[tuple[str, str]]], dict[tuple[str, str], list[dict[str, Any]] | None]]
            | None
        ) = None

    def _assigner(self, queue: str) -> Any:
        async def assign(partition: int) -> None:
            topic = self.topics.tasks(queue)
            offset = self.log.committed(self.topics.group(f"worker.{queue}"), topic, partition)
            end = self.log.end_offset(topic, partition)
            self._partitions[(queue, partition)] = _Partition(offset, end)

        return assign

    def _revoker(self, queue: str) -> Any:
        def revoke(partition: int) -> None:
            self._partitions.pop((queue, partition), None)

        return revoke

    def _settler(self, queue: str) -> Any:
        def settling(partition: int) -> bool:
            part = self._partitions.get((queue, partition))
            return part is not None and part.unsettled()

        return settling

    async def sync_groups(self) -> None:
        """Join (or re-check) the group of every task queue and take assigned partitions."""
        for group in self._groups.values():
            await group.sync()

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        loop = self._loop
        next_sync = 0.0
        while not stop.is_set():
            if loop.time() >= next_sync:
                await self.sync_groups()
                next_sync = loop.time() + 1.0
            token = self.log.change_token()
            dispatched = self._dispatch()
            flushed = self._flush()
            if dispatched or flushed:
                await asyncio.sleep(0)
                continue
            self._done.clear()
            waits = {
                asyncio.ensure_future(self._done.wait()),
                asyncio.ensure_future(self.log.wait_for_append(token, 0.05)),
            }
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)  # let the cancellations land
        await self.drain()

    async def drain(self) -> None:
        """Finish the steps in hand and report them (graceful shutdown).

        The groups go on syncing meanwhile: a step can outlast the session timeout, and a
        worker that stopped heartbeating would lose its partitions to another process,
        which would run the steps again from the committed offsets while they run here."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SYNC_INTERVAL_S)
            await self.sync_groups()
        self._flush()

    def idle(self) -> bool:
        """No step running or waiting, nothing to report, and every owned task partition read
        to its end."""
        if self._running or self._outbox or any(p.waiting for p in self._partitions.values()):
            return False
        return all(
            part.next_read >= self.log.end_offset(self.topics.tasks(queue), partition)
            for (queue, partition), part in self._partitions.items()
        )

    def close(self) -> None:
        for group in self._groups.values():
            group.leave()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> bool:
        dispatched = False
        for (queue, partition), part in list(self._partitions.items()):
            self._read_ahead(queue, partition, part)
            if partition in self._groups[queue].leaving:  # its tasks wait for the next owner
                continue
            while part.waiting and self._running < self.max_concurrency:
                offset, task = part.waiting.popleft()
                self._running += 1
                t = asyncio.ensure_future(self._run_task(queue, partition, offset, task))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
                dispatched = True
        return dispatched

    def _read_ahead(self, queue: str, partition: int, part: _Partition) -> None:
        """Read a task partition beyond what there is room to run: its tasks wait (up to
        MAX_READ), and its cancel notices apply at once. A worker at max_concurrency must
        still hear them: for the steps it runs, and for the tasks waiting behind them."""
        limit = MAX_READ - len(part.waiting)
        if limit <= 0:
            return
        topic = self.topics.tasks(queue)
        read: list[tuple[int, dict[str, Any]]] = []
        for record in self.log.poll(topic, partition, part.next_read, limit):
            part.next_read = record.offset + 1
            try:
                read.append((record.offset, TASKS.decode(record.value)))
            except SerializationError as exc:
                log.error(
                    "skipping undecodable task at %s[%d] offset %d: %s",
                    topic,
                    partition,
                    record.offset,
                    exc,
                )
        over = self._recorded_over(
            [t for offset, t in read if offset < part.redelivered_before and not t["cancel"]]
        )
        for offset, task in read:
            if task["cancel"]:
                self._cancel(task, part)
                continue
            if id(task) in over:
                continue  # its offset counts as finished: nothing holds the commit back
            part.in_flight.add(offset)
            part.waiting.append((offset, task))

    def _recorded_over(self, tasks: list[dict[str, Any]]) -> set[int]:
        """The tasks (by id()) whose attempt the history already records as over
        (completed, failed, failed for a retry), or whose run as closed. A worker commits a
        partition's offset only up to its first unfinished task, so one killed while a long
        step ran left the later tasks it finished uncommitted: read again, they would run
        again. Only what the history records counts; a store behind the log (a crash
        between the append and the store write) lacks the event, and the task runs, as
        before. The histories come in one read of the store for them all."""
        if not tasks or self.histories_of is None:
            return set()
        histories = self.histories_of({(t["workflow_id"], t["run_id"]) for t in tasks})
        return {
            id(task)
            for task in tasks
            if _over(task, histories.get((task["workflow_id"], task["run_id"])))
        }

    def _flush(self) -> bool:
        leaving = self._leaving_unsettled()
        if not self._outbox and not leaving:
            return False
        reports, self._outbox = self._outbox, []
        settled = {where: part.committable() for where, part in self._partitions.items()}
        commits = {
            (self.topics.group(f"worker.{q}"), self.topics.tasks(q), p): offset
            for (q, p), offset in settled.items()
        }
        sink = self.reports_to
        if sink is not None and not leaving:  # a leaving partition's offsets: our own append
            handed = [r for r in reports if sink.owns(r["workflow_id"])]
            if handed:
                others = [r for r in reports if not sink.owns(r["workflow_id"])]
                if others:  # durable before the sink commits the offsets that settle them
                    self.log.append(command_records(self.topics, self.log.partitions, others))
                owners = {g.group: g.member for g in self._groups.values()}
                sink.take(handed, commits, owners, self._fenced)
                return True
        records = command_records(self.topics, self.log.partitions, reports)
        try:
            # not atomic: a report whose task offset did not commit is sent again after a
            # crash, and the processor ignores the second one (Kafka saves a transaction)
            member = next(iter(self._groups.values())).member
            self.log.append(records, commits, owner=member, atomic=False)
        except PartitionFencedError as exc:
            # the outcomes are still worth reporting: the processor ignores stale ones
            log.warning("%s", exc)
            self.log.append(records)
            self._fenced()
            return True
        for where, offset in settled.items():
            self._partitions[where].committed = offset
        return True

    def _leaving_unsettled(self) -> bool:
        """A partition to hand over has steps finished here whose offsets this worker has
        not committed (they went to the processor beside it, or nowhere yet)."""
        leaving = (
            self._partitions[(queue, partition)]
            for queue, group in self._groups.items()
            for partition in group.leaving
        )
        return any(part.committable() != part.committed for part in leaving)

    def _fenced(self) -> None:
        for group in self._groups.values():
            group.fenced()

    async def _run_task(
        self, queue: str, partition: int, offset: int, task: dict[str, Any]
    ) -> None:
        base = {"run_id": task["run_id"], "seq": task["seq"], "attempt": task["attempt"]}
        details = from_payload(task["heartbeat_details"]) if task["heartbeat_details"] else None
        ctx = StepContext(
            task["workflow_id"],
            task["run_id"],
            task["workflow_type"],
            task["step_name"],
            task["seq"],
            task["attempt"],
            task["idempotency_key"],
            details,
            self.send_heartbeat,
            self._call_later,
            task["heartbeat_ms"],
        )
        key = (task["workflow_id"], task["run_id"], task["seq"], task["attempt"])
        self._running_steps[key] = ctx
        # start-to-close and heartbeat count from now; schedule-to-start is met (decide.py)
        if task["start_to_close_ms"] or task["heartbeat_ms"] or task["schedule_to_start_ms"]:
            started = f"StartStep:{task['idempotency_key']}:{time.time_ns()}"
            self._report(task["workflow_id"], started, ("StartStep", base))
            self._done.set()
        ctx._task = asyncio.current_task()
        try:
            result = await self._call(task, ctx)
            body: dict[str, Any] = {
                **base,
                "result": to_payload(result, where=f"result of step {task['step_name']!r}"),
            }
            kind = "CompleteStep"
        except CompleteAsync:
            body, kind = {}, ""  # pending: a client reports it with the task token
        except asyncio.CancelledError as exc:
            failure: BaseException = exc  # unless cancelled, the step raised it itself
            if ctx.cancel_requested:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                failure = CancelledError(f"step {task['step_name']!r} was cancelled by its workflow")
            elif cancelled_from_outside():
                raise  # not ours (shutdown): let it propagate
            body = {**base, "failure": to_failure(failure)}
            kind = "FailStep"
        except Exception as exc:  # any failure is reported; the retry policy decides
            ctx.flush_heartbeat()  # the next attempt resumes from the latest details
            body = {**base, "failure": to_failure(exc)}
            kind = "FailStep"
        finally:
            self._running_steps.pop(key, None)
        ctx._send = None  # late heartbeats of a finished attempt are pointless
        ctx._task = None  # its task's context holds ctx: a cycle for the collector otherwise
        fault("worker_after_step")
        if kind:
            self._report(task["workflow_id"], f"{kind}:{task['idempotency_key']}", (kind, body))
        self.completed += 1
        self._running -= 1
        part = self._partitions.get((queue, partition))
        if part is not None:
            part.in_flight.discard(offset)
        self._done.set()

    async def _call(self, task: dict[str, Any], ctx: StepContext) -> Any:
        name = task["step_name"]
        what = f"step {name!r}"
        step = self.app.find_step(name)
        if step is None:
            raise ApplicationError(
                f"no step named {name!r} is registered on this worker (queue tasks of workflow "
                f"{task['workflow_type']!r}); register it, or add a dynamic step"
            )
        if step.dynamic:
            args = [name, *(from_payload(p) for p in task["args"])]
            kwargs = {k: from_payload(p) for k, p in task["kwargs"].items()}
        else:
            decoded, kwargs = decode_args(step.fn, task["args"], task["kwargs"], where=what)
            args = list(decoded)
        timeout = task["start_to_close_ms"] / 1000 if task["start_to_close_ms"] else None
        if step.is_async and timeout is None:  # run it in this task, the step context set on it
            current_step.set(ctx)
            return await without_exit(step.fn(*args, **kwargs), what)
        context = contextvars.copy_context()
        context.run(current_step.set, ctx)
        loop = asyncio.get_running_loop()
        if step.is_async:
            running: asyncio.Future[Any] = loop.create_task(
                without_exit(step.fn(*args, **kwargs), what), context=context
            )
        else:
            running = loop.run_in_executor(
                self._threads,
                lambda: context.run(call_without_exit, step.fn, what, *args, **kwargs),
            )
            if timeout is None:
                return await running
        try:
            async with asyncio.timeout(timeout) as scope:
                return await running  # cancelled at the deadline (a thread runs on regardless)
        except builtins.TimeoutError:
            if not scope.expired():
                raise  # the step's own TimeoutError: an ordinary failure
            # the same failure the processor's timer would record, whichever comes first
            limit_ms = task["start_to_close_ms"]
            message = step_timeout_message(name, ctx.attempt, "start_to_close", limit_ms)
            raise TimeoutError(message, kind="start_to_close") from None

    def _cancel(self, notice: dict[str, Any], part: _Partition) -> None:
        """The workflow no longer waits for this attempt: stop it if it runs here, and never
        start it if it waits here."""
        key = _attempt(notice)
        ctx = self._running_steps.get(key)
        if ctx is None:
            self._drop_waiting(key, part)  # or it finished already, or runs elsewhere
            return
        ctx.cancel_requested = True  # sync steps see it at their next heartbeat
        step = self.app.find_step(ctx.step_name)
        if step is not None and step.is_async and ctx._task is not None:
            ctx._task.cancel()  # async steps see it at their current await

    def _drop_waiting(self, key: tuple[str, str, int, int], part: _Partition) -> None:
        """Report a waiting task's attempt cancelled without running it (the workflow may
        still be waiting for its outcome)."""
        found = next((i for i, (_, t) in enumerate(part.waiting) if _attempt(t) == key), None)
        if found is None:
            return
        offset, task = part.waiting[found]
        del part.waiting[found]
        part.in_flight.discard(offset)
        cancelled = CancelledError(
            f"step {task['step_name']!r} was cancelled by its workflow before it started"
        )
        body = {
            "run_id": key[1],
            "seq": key[2],
            "attempt": key[3],
            "failure": to_failure(cancelled),
        }
        self._report(key[0], f"FailStep:{task['idempotency_key']}", ("FailStep", body))

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Schedule ``callback`` on the worker's loop, from any thread."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, callback)

    def _report(self, workflow_id: str, command_id: str, body: tuple[str, dict[str, Any]]) -> None:
        command = {
            "command_id": command_id,
            "workflow_id": workflow_id,
            "ts_us": time.time_ns() // 1000,
            "body": body,
        }
        self._outbox.append(command)

    def send_heartbeat(self, ctx: StepContext, payload: Payload | None) -> None:
        body = (
            "HeartbeatStep",
            {"run_id": ctx.run_id, "seq": ctx.seq, "attempt": ctx.attempt, "details": payload},
        )

        def enqueue() -> None:
            self._report(ctx.workflow_id, f"heartbeat:{ctx.idempotency_key}:{time.time_ns()}", body)
            self._done.set()

        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            enqueue()
        else:
            self._loop.call_soon_threadsafe(enqueue)
