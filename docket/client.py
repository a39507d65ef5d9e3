"""Client: start workflows, wait for results, describe, list, read history.

Everything goes through the log: a start is a StartWorkflow command, its answer comes back
on the ``replies`` topic (keyed by this client's id), and results arrive there too for
every run this client watches. Describe, history and list read the state stores.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar, overload

from docket.client_input import (
    check_workflow_id,
    duration_ms,
    handler_name,
    return_hint,
    utf8,
    within,
)
from docket.codec.failure import to_failure
from docket.codec.payload import encode_args, to_payload
from docket.codec.records import COMMANDS, REPLIES
from docket.command_sink import CommandSink, command_records, unfenced
from docket.config import Settings
from docket.definitions import Workflow
from docket.emission import encode_headers, encode_value, record_problem
from docket.errors import (
    ApplicationError,
    ClientError,
    ReplyTimeoutError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
)
from docket.execution.ids import new_request_id, new_workflow_id, parse_task_token
from docket.handles import UpdateHandle, WorkflowHandle
from docket.log.base import GroupCommit, Log, OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.reader import StateReader, WorkflowDescription
from docket.streams.replica import HistoryReplica

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# outcomes that arrived before anyone asked (a start whose result() comes later, or never):
# a miss costs one WatchWorkflow round trip, while every entry lengthens full GC collections
_MAX_OUTCOMES = 10_000
# replies to a signal or an update sent with a start that mean the run took it
_TAKEN = frozenset(("signaled", "update_accepted", "update_completed", "update_failed"))
_RUN_ENDS = ("completed", "failed", "terminated", "cancelled", "timed_out", "continued_as_new")


class IdReusePolicy(StrEnum):
    """What `Client.start` does when the workflow ID is already taken."""

    ALLOW_AFTER_CLOSE = "allow_after_close"  # a new run once the previous one has closed (default)
    REJECT_DUPLICATE = "reject_duplicate"  # never reuse an ID, even after close
    RETURN_EXISTING = "return_existing"  # hand back the existing run instead of failing
    USE_RUNNING = "use_running"  # hand back a running run; else start a new one


LOCAL_TRIES = 64  # IDs drawn for a local partition (owning 1 partition in 16: 1.6% miss)


@dataclass(frozen=True)
class _Start:
    """A StartWorkflow command ready to send, and what its reply needs to become a handle."""

    workflow_id: str
    command_id: str
    body: tuple[str, dict[str, Any]]
    name: str
    hint: Any
    policy: IdReusePolicy


class Client:
    def __init__(
        self, log: Log, topics: Topics, reader: StateReader, *, reply_timeout: float = 30.0
    ) -> None:
        self._log = log
        self._topics = topics
        self._reader = reader
        self.client_id = f"client-{new_request_id()}"
        self.reply_timeout = reply_timeout
        self._partition = partition_of(self.client_id, log.partitions)
        self._offset = log.end_offset(topics.replies, self._partition)
        self._writer = GroupCommit(log)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._run_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._outcomes: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._watching: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._owns_log = False
        self.commands_to: CommandSink | None = None  # set by an engine: see _submit
        # set by an engine with prefer_local: whether a workflow ID is on its partitions
        self.local_workflow_id: Callable[[str], bool] | None = None

    @classmethod
    def connect(cls, settings: Settings | None = None, **overrides: Any) -> Client:
        """A client in a process that runs no engine (a CLI, a web app): it appends commands
        to the log of an existing data directory and reads state stores read-only.

        ``overrides`` are `Settings` fields (``data_dir``, ``namespace``); the rest comes
        from ``DOCKET_*`` variables.
        """
        from docket.log.factory import open_log

        settings = settings or Settings.from_env(**overrides)
        log = open_log(settings, create=False)
        state_dir = settings.data_dir / "state" / log.namespace
        topics = Topics(log.namespace)
        replica = HistoryReplica(log, topics.history) if settings.bootstrap_servers else None
        client = cls(log, topics, StateReader(state_dir, log.partitions, replica=replica))
        client._owns_log = True
        return client

    async def emit(
        self, topic: str, value: Any, *, key: str, headers: Mapping[str, str | bytes] | None = None
    ) -> None:
        """Append a record to a user topic (e.g. one bound as a signal source); returns once it
        is durable. ``value`` and ``headers`` as for `WorkflowContext.emit`; ``key`` picks the
        partition, through Docket's partitioner over the topic's own partition count."""
        problem = record_problem(topic, key, headers, key_required=True)
        if problem is not None:
            raise ClientError(f"emit: {problem}")
        data = encode_value(value, where=f"the value emitted to topic {topic!r}")
        partition = partition_of(key, self._log.partitions_of(topic))
        extra = tuple(sorted(encode_headers(headers).items()))
        await self._writer.append([OutRecord(topic, partition, key, data, extra)])

    # -- starting -------------------------------------------------------------------------------

    @overload
    async def start(
        self, workflow: Workflow[P, R], /, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[R]: ...

    @overload
    async def start(
        self, workflow: str | type, /, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]: ...  # a class workflow: type checkers ignore class decorators

    async def start(self, workflow: Any, /, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Start a workflow (a registered workflow, or its name) and return its handle.

        Reserved keyword arguments (the rest go to the workflow): ``workflow_id`` (default: a
        new UUID), ``id_reuse_policy`` (an `IdReusePolicy`), ``task_queue``;
        ``start_delay`` (the run is recorded now, its code begins later), ``run_timeout``
        (each run of the chain) and ``execution_timeout`` (the whole chain, continue-as-new
        included), as timedeltas or seconds (up to 100,000 years): a timed-out run stops at
        once, with status ``timed_out`` and ``result()`` raising WorkflowFailedError caused by
        TimeoutError; and ``start_signal`` / ``start_signal_args`` for signal-with-start: the
        signal goes to the running run of ``workflow_id`` if there is one, whatever the
        policy, else to a run started for it (the policy, ``USE_RUNNING`` by default then,
        decides only whether a new run may start); start and signal are appended together
        and processed in that order.
        """
        start_signal = kwargs.pop("start_signal", None)
        start_signal_args = tuple(kwargs.pop("start_signal_args", ()))
        if start_signal is not None:
            kwargs.setdefault("id_reuse_policy", IdReusePolicy.USE_RUNNING)
        start = self._start_command(workflow, args, kwargs)
        if start_signal is None:
            reply = await self._request(start.workflow_id, start.command_id, start.body)
            return self._started(start, reply)
        name = handler_name(start_signal, "__docket_signal__")
        if (
            isinstance(workflow, Workflow)
            and workflow.cls is not None
            and name not in workflow.signals
        ):
            raise ClientError(
                f"workflow {workflow.name!r} has no signal {name!r}; nothing was started"
            )
        arg_payloads, kwarg_payloads = encode_args(start_signal_args, {}, where=f"signal {name!r}")
        signal_body = {
            "run_id": None,
            "signal_name": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "reply_to": self.client_id,
            "sender": None,  # sent by no workflow
        }
        handle, signal_reply = await self._with_start(start, ("SignalWorkflow", signal_body))
        self._raise_refusal(signal_reply, start.workflow_id, f"signal {name!r}")
        return handle

    async def update_with_start(
        self,
        workflow: Any,
        /,
        *args: Any,
        update: Any,
        update_args: tuple[Any, ...] = (),
        update_id: str | None = None,
        **kwargs: Any,
    ) -> UpdateHandle:
        """Update-with-start: send ``update`` to the running run of ``workflow_id``, starting
        one first if there is none (``id_reuse_policy``, ``USE_RUNNING`` by default, decides
        only whether a new run may start: a running run takes the update whatever it says,
        and a refused start refuses the update with it). Returns
        once the update is accepted: ``await result()`` for its value (often long before the
        workflow ends: "early return"), and ``.workflow`` is the run's handle. Other keyword
        arguments are those of `start`."""
        kwargs.setdefault("id_reuse_policy", IdReusePolicy.USE_RUNNING)
        name = handler_name(update, "__docket_update__")
        if (
            isinstance(workflow, Workflow)
            and workflow.cls is not None
            and name not in workflow.updates
        ):
            raise ClientError(
                f"workflow {workflow.name!r} has no update {name!r}; nothing was started"
            )
        start = self._start_command(workflow, args, kwargs)
        update_id = update_id or new_request_id()
        body = self._update_body(None, name, update_id, update_args, {})
        outcome = self._expect_outcome(update_id)
        try:
            handle, update_reply = await self._with_start(start, ("UpdateWorkflow", body))
        except BaseException:
            self._waiters.pop(f"update:{update_id}", None)
            raise
        return self._accepted(handle, name, update_id, update_reply, outcome, update)

    # -- asynchronous step completion -----------------------------------------------------------

    async def complete_step(self, task_token: str, result: Any = None) -> None:
        """Finish a step that called ``complete_async()``, with ``result`` as its return
        value. Raises WorkflowNotFoundError when the attempt is no longer pending (it timed
        out or was retried, or the run closed): nothing is recorded then."""
        await self._report_step(
            task_token, "CompleteStep", {"result": to_payload(result, where="step result")}
        )

    async def fail_step(self, task_token: str, error: BaseException | str) -> None:
        """Fail a step that called ``complete_async()``: the step's retry policy decides what
        happens next, as if the step had raised ``error`` (a message becomes an
        ApplicationError)."""
        exc = ApplicationError(error) if isinstance(error, str) else error
        await self._report_step(task_token, "FailStep", {"failure": to_failure(exc)})

    async def heartbeat_step(self, task_token: str, details: Any = None) -> None:
        """Keep a step that called ``complete_async()`` alive past its heartbeat timeout,
        optionally with progress ``details``."""
        payload = None if details is None else to_payload(details, where="heartbeat details")
        await self._report_step(task_token, "HeartbeatStep", {"details": payload})

    async def _report_step(self, task_token: str, kind: str, fields: dict[str, Any]) -> None:
        try:
            workflow_id, run_id, seq, attempt = parse_task_token(task_token)
        except ValueError as exc:
            raise ClientError(f"{exc} (use StepContext.task_token)") from None
        body = {
            "run_id": run_id,
            "seq": seq,
            "attempt": attempt,
            **fields,
            "reply_to": self.client_id,
        }
        reply = await self._request(workflow_id, new_request_id(), (kind, body))
        self._raise_refusal(reply, workflow_id, f"{kind} by task token")

    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> WorkflowHandle[Any]:
        """A handle on an existing workflow (its latest run unless ``run_id`` is given)."""
        return WorkflowHandle(self, workflow_id, run_id, result_type)

    # -- reading --------------------------------------------------------------------------------

    async def describe(self, workflow_id: str) -> WorkflowDescription:
        return self._reader.describe(workflow_id)

    async def list(
        self, *, status: str | None = None, workflow_type: str | None = None
    ) -> list[WorkflowDescription]:
        """Executions (latest run per workflow ID), optionally filtered; oldest start first."""
        from docket.reader import describe_state

        found = [
            describe_state(s)
            for s in self._reader.states()
            if (status is None or s["status"] == status)
            and (workflow_type is None or s["workflow_type"] == workflow_type)
        ]
        return sorted(found, key=lambda d: (d.started_at, d.workflow_id))

    # -- plumbing -------------------------------------------------------------------------------

    def _start_command(
        self, workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Start:
        workflow_id = kwargs.pop("workflow_id", None)
        if workflow_id is None:  # not given; "" is refused below, never replaced by a new ID
            workflow_id = self._new_workflow_id()
        raw_policy = kwargs.pop("id_reuse_policy", IdReusePolicy.ALLOW_AFTER_CLOSE)
        try:
            policy = IdReusePolicy(raw_policy)
        except ValueError:
            choices = ", ".join(p.value for p in IdReusePolicy)
            raise ClientError(f"id_reuse_policy {raw_policy!r} is not one of: {choices}") from None
        if isinstance(workflow, Workflow):
            name, hint, queue = workflow.name, workflow.return_hint, workflow.task_queue
        elif isinstance(workflow, str):
            name, hint, queue = workflow, None, ""  # the engine's app decides
        else:
            raise ClientError(
                f"start() needs a registered workflow or a workflow name, got {workflow!r}"
            )
        queue = kwargs.pop("task_queue", None) or queue
        if not isinstance(queue, str) or not utf8(queue) or not utf8(name):
            raise ClientError(
                f"workflow name {name!r} and task_queue {queue!r} must be strings without lone "
                "surrogates; nothing was started"
            )
        check_workflow_id(workflow_id)
        timing = {
            f"{option}_ms": duration_ms(kwargs.pop(option, None), option)
            for option in ("start_delay", "run_timeout", "execution_timeout")
        }
        if not all(map(utf8, kwargs)):  # the names of a record's map of arguments
            raise ClientError(
                f"keyword argument names {sorted(kwargs)!r} of workflow {name!r} must be "
                "strings without lone surrogates; nothing was started"
            )
        arg_payloads, kwarg_payloads = encode_args(tuple(args), kwargs, where=f"workflow {name!r}")
        body = {
            "workflow_type": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "task_queue": queue,
            "id_reuse_policy": policy.value,
            "reply_to": self.client_id,
            "parent": None,  # every field, as decoding fills them: it may be handed over as is
            **timing,
        }
        return _Start(workflow_id, new_request_id(), ("StartWorkflow", body), name, hint, policy)

    def _new_workflow_id(self) -> str:
        """A random ID; with the engine's ``prefer_local``, one on a partition its processor
        owns (drawn again until it is: about as many tries as there are engine processes;
        after `LOCAL_TRIES`, or if it owns none, wherever the last one falls)."""
        workflow_id = new_workflow_id()
        local = self.local_workflow_id
        if local is not None:
            for _ in range(LOCAL_TRIES):
                if local(workflow_id):
                    break
                workflow_id = new_workflow_id()
        return workflow_id

    def _started(self, start: _Start, reply: dict[str, Any]) -> WorkflowHandle[Any]:
        """The handle for a start's reply, or the error it means."""
        kind, workflow_id = reply["kind"], start.workflow_id
        if kind == "started":
            self._watching.add(reply["run_id"])
        elif kind == "already_started":
            raise WorkflowAlreadyStartedError(
                f"workflow_id={workflow_id!r} already has run {reply['run_id']} and the ID-reuse policy "
                f"{start.policy.value!r} forbids another; pick another ID, wait for it to close, or use "
                "IdReusePolicy.RETURN_EXISTING",
                workflow_id=workflow_id,
                run_id=reply["run_id"],
            )
        elif kind == "rejected":
            raise ClientError(
                f"start of {start.name!r} as workflow_id={workflow_id!r} was rejected: "
                f"{reply['failure']['message']}"
            )
        return WorkflowHandle(self, workflow_id, reply["run_id"], start.hint, known=True)

    async def _with_start(
        self, start: _Start, then: tuple[str, dict[str, Any]]
    ) -> tuple[WorkflowHandle[Any], dict[str, Any]]:
        """Append a start and a second command together: one partition, processed in that
        order. Returns the run's handle and the second command's reply. A running run takes
        the second command whatever the ID-reuse policy says: the policy only decides
        whether a new run may start."""
        self._ensure_listener()
        loop = asyncio.get_running_loop()
        then_id = new_request_id()
        started: asyncio.Future[dict[str, Any]] = loop.create_future()
        answered: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters[start.command_id], self._waiters[then_id] = started, answered
        what = f"workflow_id={start.workflow_id!r}"
        try:
            await self._submit(
                [
                    self._command(start.workflow_id, start.command_id, start.body),
                    self._command(start.workflow_id, then_id, then),
                ]
            )
            start_reply = await self._wait(started, self.reply_timeout, what)
            then_reply = await self._wait(answered, self.reply_timeout, what)
        finally:
            self._waiters.pop(start.command_id, None)
            self._waiters.pop(then_id, None)
        if start_reply["kind"] == "already_started" and then_reply["kind"] in _TAKEN:
            # no new run, but the running one took the message: raising would tell the
            # caller that nothing happened
            running: WorkflowHandle[Any] = WorkflowHandle(
                self, start.workflow_id, start_reply["run_id"], start.hint, known=True
            )
            return running, then_reply
        return self._started(start, start_reply), then_reply

    def _update_body(
        self,
        run_id: str | None,
        name: str,
        update_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        arg_payloads, kwarg_payloads = encode_args(args, kwargs, where=f"update {name!r}")
        return {
            "run_id": run_id,
            "update_id": update_id,
            "update_name": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "reply_to": self.client_id,
        }

    def _expect_outcome(self, update_id: str) -> asyncio.Future[dict[str, Any]]:
        """Listen for an update's outcome before sending it: it may come with the acceptance."""
        self._ensure_listener()
        key = f"update:{update_id}"
        future = self._waiters.get(key)
        if future is None or future.done():
            future = self._waiters[key] = asyncio.get_running_loop().create_future()
        return future

    def _accepted(
        self,
        handle: WorkflowHandle[Any],
        name: str,
        update_id: str,
        reply: dict[str, Any],
        outcome: asyncio.Future[dict[str, Any]],
        update: Any,
    ) -> UpdateHandle:
        """The handle of an accepted update, or the refusal raised."""
        if reply["kind"] in ("update_completed", "update_failed"):  # a retry of a finished one
            self._waiters.pop(f"update:{update_id}", None)
            if not outcome.done():
                outcome.set_result(reply)
        elif reply["kind"] != "update_accepted":
            self._waiters.pop(f"update:{update_id}", None)
            self._raise_refusal(reply, handle.workflow_id, f"update {name!r}")
            raise ClientError(f"unexpected reply {reply['kind']!r} to update {name!r}")
        if handle.run_id is None:
            handle = WorkflowHandle(
                self, handle.workflow_id, reply["run_id"], handle._hint, known=True
            )
        return UpdateHandle(handle, name, update_id, outcome, return_hint(update))

    async def _message(
        self,
        kind: str,
        workflow_id: str,
        run_id: str | None,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """Send a signal or a query (``kind``) and return the reply, raising on refusal."""
        what = f"{kind} {name!r}"
        arg_payloads, kwarg_payloads = encode_args(args, kwargs, where=what)
        body = {
            "run_id": run_id,
            f"{kind}_name": name,
            "args": arg_payloads,
            "kwargs": kwarg_payloads,
            "reply_to": self.client_id,
        }
        if kind == "signal":
            body["sender"] = None  # sent by no workflow
        command = "SignalWorkflow" if kind == "signal" else "QueryWorkflow"
        reply = await self._request(workflow_id, new_request_id(), (command, body))
        self._raise_refusal(reply, workflow_id, what)
        return reply

    @staticmethod
    def _raise_refusal(reply: dict[str, Any], workflow_id: str, what: str) -> None:
        kind = reply["kind"]
        if kind == "not_found":
            raise WorkflowNotFoundError(f"{what} not delivered: {reply['failure']['message']}")
        if kind == "rejected":
            raise ClientError(
                f"{what} to workflow_id={workflow_id!r} was refused: {reply['failure']['message']}"
            )
        if kind == "query_failed":
            raise ClientError(
                f"{what} on workflow_id={workflow_id!r} failed: {reply['failure']['type']}: "
                f"{reply['failure']['message']}"
            )

    async def _request(
        self, workflow_id: str, command_id: str, body: tuple[str, dict[str, Any]]
    ) -> dict[str, Any]:
        self._ensure_listener()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = future
        try:
            await self._send(workflow_id, command_id, body)
            return await self._wait(future, self.reply_timeout, f"workflow_id={workflow_id!r}")
        finally:
            self._waiters.pop(command_id, None)

    async def _send(
        self, workflow_id: str, command_id: str, body: tuple[str, dict[str, Any]]
    ) -> None:
        await self._submit([self._command(workflow_id, command_id, body)])

    async def _submit(self, commands: Sequence[dict[str, Any]]) -> None:
        """Send one workflow's commands, in order: handed to the processor of this process
        when it owns the workflow (the engine's own client, docket/streams/handoff.py), else
        appended to ``commands``."""
        sink = self.commands_to
        if sink is not None and sink.owns(commands[0]["workflow_id"]):
            # encoded all the same, though the bytes go unused: that checks the caller's
            # input (a reason that is no string) and refuses it here, as an append would
            for command in commands:
                COMMANDS.encode(command)
            sink.take(commands, {}, {}, unfenced)
            return
        # not flushed to disk on its own: its reply comes after the processor's append, whose
        # flush takes this record along (the WAL is one file); unanswered, it was never acked
        records = command_records(self._topics, self._log.partitions, commands)
        await self._writer.append(records, sync=False)

    @staticmethod
    def _command(
        workflow_id: str, command_id: str, body: tuple[str, dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "command_id": command_id,
            "workflow_id": workflow_id,
            "ts_us": time.time_ns() // 1000,
            "body": body,
        }

    async def _wait(
        self, future: asyncio.Future[dict[str, Any]], timeout: float | None, what: str
    ) -> dict[str, Any]:
        try:
            return await within(future, timeout)
        except TimeoutError:
            raise ReplyTimeoutError(
                f"no answer about {what} within {timeout} s: is an engine running for namespace "
                f"{self._topics.namespace!r} on this data directory? ('docket run -A module:app')"
            ) from None

    async def _outcome(
        self, workflow_id: str, run_id: str | None, timeout: float | None
    ) -> dict[str, Any]:
        """How the run ends, following continue-as-new to the end of the chain."""
        if run_id is None:
            state = self._reader.state(workflow_id)
            if state is None:
                raise WorkflowNotFoundError(f"no workflow with workflow_id={workflow_id!r}")
            run_id = state["run_id"]
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            reply = await self._run_outcome(workflow_id, run_id, left, timeout)
            if reply["kind"] != "continued_as_new":
                return reply
            run_id = reply["run_id"]

    async def _run_outcome(
        self, workflow_id: str, run_id: str, left: float | None, timeout: float | None
    ) -> dict[str, Any]:
        done = self._outcomes.pop(run_id, None)  # taken: another ask watches again
        if done is not None:
            return done
        self._ensure_listener()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._run_waiters.setdefault(run_id, []).append(future)
        try:
            if run_id not in self._watching:
                reply = await self._request(
                    workflow_id,
                    new_request_id(),
                    ("WatchWorkflow", {"run_id": run_id, "reply_to": self.client_id}),
                )
                if reply["kind"] == "not_found":
                    raise WorkflowNotFoundError(f"no run {run_id} of workflow_id={workflow_id!r}")
                if reply["kind"] in _RUN_ENDS:
                    return reply
                self._watching.add(run_id)
            try:
                return await within(future, left)
            except TimeoutError:
                raise ReplyTimeoutError(
                    f"workflow_id={workflow_id!r} has no result after {timeout} s: it is still "
                    "running (see 'docket workflow describe'), or no engine is processing it"
                ) from None
        finally:
            waiters = self._run_waiters.get(run_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._run_waiters.pop(run_id, None)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        topic = self._topics.replies
        while True:
            token = self._log.change_token()
            records = self._log.poll(topic, self._partition, self._offset, 1000)
            if not records:
                await self._log.wait_for_append(token, 0.05)
                continue
            self._offset = records[-1].offset + 1
            for record in records:
                if record.key != self.client_id:
                    continue
                self.take_reply(REPLIES.decode(record.value))

    def take_reply(self, reply: dict[str, Any]) -> None:
        """Take one reply: read from ``replies``, or handed over in memory by a processor in
        this process (the engine's own client, see docket/streams/local_replies.py)."""
        request_id = reply["request_id"]
        waiter = (
            self._waiters.pop(request_id, None)  # an update's outcome: its handle holds the future
            if request_id.startswith("update:")
            else self._waiters.get(request_id)
        )
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        continued = reply["kind"] == "continued_as_new"
        if reply["kind"] in _RUN_ENDS and (not continued or request_id.startswith("result:")):
            run_id = reply["run_id"]
            if continued:  # about the old run (its run_id is the new one's)
                run_id = request_id.removeprefix("result:")
                self._watching.add(reply["run_id"])  # this client's watch carried over
            self._watching.discard(run_id)
            taken = False
            for future in self._run_waiters.pop(run_id, []):
                if not future.done():
                    future.set_result(reply)
                    taken = True
            if not taken:  # kept for a result() yet to come (one that waited has it: the
                # cache would only make the cyclic GC's full collections longer)
                self._outcomes[run_id] = reply
                while len(self._outcomes) > _MAX_OUTCOMES:
                    self._outcomes.popitem(last=False)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        self._reader.close()
        if self._owns_log:
            self._log.close()
