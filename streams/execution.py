"""The execution processor: commands in, history events and outputs out, state folded.

For each poll batch over the partitions it owns:
1. read commands from every owned partition, from the group's committed offset;
2. decode them (an undecodable record is logged with its offset and skipped, never retried
   forever), group them by workflow ID, and for each workflow: decide events from the
   commands, activate the workflow code with the events it waits for, record what the code
   asked for, and run local steps inline (activating again with their results);
3. append every output (history events, tasks, timer requests, replies) **and** the new
   consumer offsets as one atomic log transaction, fenced on the partition leases;
4. write one RocksDB WriteBatch per partition with the changed executions, the new history
   events and the checkpoint (the history offset the store now reflects).
A crash between 3 and 4 leaves the store behind the log; `assign` catches it up by folding
history from the checkpoint, which is the same path a new owner takes after a rebalance.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

from docket.app import App
from docket.clock import Clock
from docket.codec.records import COMMANDS, EVENTS, STATES
from docket.errors import (
    NondeterminismError,
    PartitionFencedError,
    SerializationError,
)
from docket.execution.decide import RESOLUTIONS, decide
from docket.execution.fold import RUN_CHAIN_KEPT, RUNNING, State, apply, clone
from docket.faults import fault
from docket.log.base import Commits, Log
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.runtime.deadlock import DEFAULT_TIMEOUT_S, DeadlockGuard
from docket.runtime.instance import Command, WorkflowInstance
from docket.runtime.matching import replay
from docket.streams import unconfirmed
from docket.streams.batch import Batch, PartitionCursor, StopExecution, write_stores
from docket.streams.closing import before_fold
from docket.streams.handoff import CommandInbox
from docket.streams.host import PartitionGroup
from docket.streams.local_calls import run_attempt
from docket.streams.local_replies import LocalReplies
from docket.streams.requests import (
    REQUESTS,
    answer_query,
    check_signal,
    decide_update,
    refuse_stopped,
)
from docket.streams.restore import open_owned
from docket.streams.source_dedupe import SourceDedupe

log = logging.getLogger("docket")

ROLE = "processor"
MAX_BATCH = 2000
IDLE_WAIT_S = 0.05


class ExecutionProcessor:
    def __init__(
        self,
        app: App,
        log_: Log,
        topics: Topics,
        state_dir: Path,
        clock: Clock,
        member: str,
        *,
        cache_size: int = 10_000,
        deadlock_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.log = log_
        self.topics = topics
        self.state_dir = state_dir
        self.clock = clock
        self.partitions: dict[int, PartitionCursor] = {}
        self.group_name = topics.group(ROLE)
        self.group = PartitionGroup(log_, self.group_name, member, self._assign, self._revoke)
        self.cache_size = cache_size
        self.deadlock = DeadlockGuard(deadlock_timeout_s)  # see docket/runtime/deadlock.py
        self._instances: OrderedDict[str, WorkflowInstance] = OrderedDict()
        self._states: OrderedDict[str, State] = OrderedDict()
        self.blocked: dict[str, str] = {}  # workflow_id -> why it stopped, in this process's life
        self._resume: set[str] = set()  # stopped executions to retry (once) after a restart
        self._stopped: set[str] = set()  # executions whose state holds deferred commands
        self._stopping = False
        self.inbox = CommandInbox(log_, topics, lambda p: p in self.partitions)
        self.busy = self._appended = False  # a batch is in hand (not yet durable); it is on the log
        self.local_replies = LocalReplies()  # clients in this process (local_replies.py)
        self.sourced = SourceDedupe(
            lambda wid, run_id, after: self.partitions[
                partition_of(wid, self.log.partitions)
            ].store.history(wid, run_id, after_event_id=after)
        )

    # -- ownership ------------------------------------------------------------------------------

    async def _assign(self, partition: int) -> None:
        owner = (self.group_name, self.group.member, self.sourced.received_unconfirmed)
        path = self.state_dir / f"p{partition}"
        store, history_end = open_owned(self.log, self.topics, path, partition, *owner)
        offset = self.log.committed(self.group_name, self.topics.commands, partition)
        self.partitions[partition] = PartitionCursor(store, offset, history_end)
        stopped = store.stopped_ids()
        self._stopped.update(stopped)
        self._resume.update(stopped)  # try each once with the code this process runs
        if stopped:
            log.warning(
                "partition %d: %d stopped executions will be retried: %s",
                partition,
                len(stopped),
                ", ".join(stopped[:5]) + (" ..." if len(stopped) > 5 else ""),
            )

    def _revoke(self, partition: int) -> None:
        part = self.partitions.pop(partition, None)
        if part is not None:
            part.store.close()
        n = self.log.partitions
        for cache in (self._instances, self._states, self.blocked):
            for wid in [w for w in cache if partition_of(w, n) == partition]:
                del cache[wid]
        for ids in (self._stopped, self._resume):
            ids.difference_update({w for w in ids if partition_of(w, n) == partition})

    def close(self) -> None:
        """Stop taking handed commands, give up the partitions, close every store still open."""
        self.inbox.close()
        self.group.leave()
        for partition in list(self.partitions):
            self._revoke(partition)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                await self.group.sync_if_due(loop.time())
                token = self.log.change_token()
                try:
                    worked = await self.poll_once()
                except PartitionFencedError as exc:
                    log.warning("%s", exc)
                    self.group.fenced()
                    self._instances.clear()
                    self._states.clear()
                    continue
                if not worked and not self.inbox:
                    await self.inbox.wait(token, IDLE_WAIT_S)
        finally:  # also when it failed: senders append from now on, nobody would take them
            self.inbox.close()

    async def poll_once(self) -> bool:
        """Process one batch; False if there was nothing to read."""
        handed, worker_commits = self.inbox.take_all()
        self.busy, self._appended = True, False  # busy: see WorkflowEnvironment.idle
        try:
            return await self._poll(handed, worker_commits)
        except BaseException:  # not made durable: append them as their senders would have
            if (handed or worker_commits) and not self._appended:  # else: recorded already
                self.inbox.give_back(handed, worker_commits)
            raise
        finally:
            self.busy = False

    async def _poll(
        self, handed: list[dict[str, Any]], worker_commits: dict[tuple[str, str, int], int]
    ) -> bool:
        commands_topic = self.topics.commands
        inputs: list[tuple[int, int, dict[str, Any]]] = []
        commits: dict[tuple[str, str, int], int] = {}
        for partition, part in self.partitions.items():
            records = self.log.poll(commands_topic, partition, part.offset, MAX_BATCH)
            if not records:
                continue
            commits[(self.group_name, commands_topic, partition)] = records[-1].offset + 1
            for record in records:
                try:
                    inputs.append((partition, record.offset, COMMANDS.decode(record.value)))
                except SerializationError as exc:
                    log.error(
                        "skipping undecodable record at %s[%d] offset %d: %s",
                        commands_topic,
                        partition,
                        record.offset,
                        exc,
                    )
        n = self.log.partitions
        inputs += [(partition_of(r["workflow_id"], n), -1, r) for r in handed]  # -1: not on the log
        resumes = [
            w for w in self._resume if partition_of(w, self.log.partitions) in self.partitions
        ]
        if not commits and not resumes and not inputs and not worker_commits:
            return False
        now_us = self.clock.now_us()
        batch = Batch()
        by_workflow: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for partition, offset, command in inputs:
            if partition_of(command["workflow_id"], self.log.partitions) != partition:
                log.error(
                    "skipping command %s at %s[%d] offset %d: workflow %r belongs on partition "
                    "%d (was it produced without Docket's partitioner?)",
                    command["command_id"],
                    commands_topic,
                    partition,
                    offset,
                    command["workflow_id"],
                    partition_of(command["workflow_id"], self.log.partitions),
                )
                continue
            by_workflow[command["workflow_id"]].append(command)
        for workflow_id in resumes:
            by_workflow.setdefault(workflow_id, [])
        for workflow_id, commands in by_workflow.items():
            self._resume.discard(workflow_id)
            await self._process_isolated(workflow_id, commands, now_us, batch)
        self._commit(batch, commits, worker_commits)
        return True

    async def _process_isolated(
        self, workflow_id: str, commands: list[dict[str, Any]], now_us: int, batch: Batch
    ) -> None:
        """Process one workflow's commands apart from the batch, and merge only on success."""
        before = self._state(workflow_id, batch)  # not changed below: work happens on a clone
        if workflow_id in self.blocked:  # stopped earlier in this process's life
            terminations = [c for c in commands if c["body"][0] == "TerminateWorkflow"]
            if not terminations:
                self._defer(workflow_id, before, commands, self.blocked[workflow_id], now_us, batch)
                return
            commands = terminations  # a stopped run can still be terminated (nothing else runs)
            self.blocked.pop(workflow_id)
        terminating = any(c["body"][0] == "TerminateWorkflow" for c in commands)
        own = Batch()
        state = clone(before) if before is not None else None
        if state is not None:
            own.states[workflow_id] = state  # _process works on this clone
        if state is not None and state["deferred"] and not terminating:  # resume what waited
            deferred = [COMMANDS.decode(raw) for raw in state["deferred"]]
            state, _ = self._record(
                state,
                workflow_id,
                state["run_id"],
                "DeferredResumed",
                {"count": len(deferred)},
                0,
                now_us,
                "",
                own,
            )
            own.states[workflow_id] = state
            commands = deferred + commands
            log.info("workflow_id=%s: resuming %d deferred commands", workflow_id, len(deferred))
        try:
            try:
                await self._process(workflow_id, state, commands, now_us, own)
            except (PartitionFencedError, StopExecution):
                raise
            except Exception as exc:  # a fault inside Docket stops this execution only
                raise self._stop_execution(workflow_id, exc) from exc
        except StopExecution as stop:
            self._defer(
                workflow_id,
                before,
                commands[len(before["deferred"]) if before else 0 :],
                stop.reason,
                now_us,
                batch,
            )
            return
        batch.merge(own)

    def _defer(
        self,
        workflow_id: str,
        state: State | None,
        commands: list[dict[str, Any]],
        reason: str,
        now_us: int,
        batch: Batch,
    ) -> None:
        """Keep a stopped execution's commands in its history, unprocessed; refuse requests."""
        kept = []
        for command in commands:
            if command["body"][0] in REQUESTS:
                refusal = refuse_stopped(command, workflow_id, state, reason)
                if refusal is not None:
                    batch.out.reply(refusal)
                continue
            kept.append(COMMANDS.encode(command))
        if state is None or state["status"] != RUNNING or not kept:
            return
        state, _ = self._record(
            state,
            workflow_id,
            state["run_id"],
            "CommandsDeferred",
            {"reason": reason, "commands": kept},
            0,
            now_us,
            "",
            batch,
        )
        batch.states[workflow_id] = state
        self._cache_state(workflow_id, state)

    def _commit(self, batch: Batch, commits: Commits, worker_commits: Commits) -> None:
        fault("before_append")
        local = batch.out.take_replies(self.local_replies.__contains__) if self.local_replies else []
        records = batch.out.records(self.topics, self.log.partitions, self.log.partitions_of)
        n = self.log.partitions
        touched = set(batch.events) | {partition_of(w, n) for w in batch.states}
        commits = {  # every partition written gets its lease checked (fenced), moved or not
            **{
                (self.group_name, self.topics.commands, p): self.partitions[p].offset
                for p in touched
            },
            **commits,
        }
        own = commits  # on Kafka with the history ends too (see streams/unconfirmed.py)
        if not self.log.reads_whole_appends:
            ends = {p: self.partitions[p].history_end + len(e) for p, e in batch.events.items()}
            records, own = unconfirmed.mark(records, commits, self.group_name, self.topics, ends)
        if not worker_commits:
            self.log.append(records, own, owner=self.group.member)
        else:  # the co-located worker's task offsets ride along, fenced on its leases
            try:
                owners = self.inbox.owner_map(self.group_name, self.group.member)
                self.log.append(records, {**own, **worker_commits}, owner=owners)
            except PartitionFencedError:  # the worker's leases, or ours? Ours raise again:
                self.log.append(records, own, owner=self.group.member)
                self.inbox.worker_fenced()
        self._appended = True
        fault("after_append_before_writebatch")
        offsets = {p: o for (g, _, p), o in commits.items() if g == self.group_name}
        try:
            write_stores(batch, self.partitions, offsets, self._stopped, n)
        finally:  # what they answer is on the log
            self.local_replies.deliver(local)
        fault("after_writebatch")

    # -- one workflow -----------------------------------------------------------------------------

    def _state(self, workflow_id: str, batch: Batch) -> State | None:
        state = batch.states.get(workflow_id) or self._states.get(workflow_id)
        if state is None:
            part = self.partitions[partition_of(workflow_id, self.log.partitions)]
            raw = part.store.execution(workflow_id)
            state = STATES.decode(raw) if raw else None
        return state

    async def _process(
        self,
        workflow_id: str,
        state: State | None,
        commands: list[dict[str, Any]],
        now_us: int,
        batch: Batch,
    ) -> None:
        """Process one workflow's commands on ``state``, a copy of its state (None before its
        first run) that this may change."""
        activation = (state["last_activation"] if state else 0) + 1
        resolutions: list[dict[str, Any]] = []
        local_retries: list[dict[str, Any]] = []

        async def settle() -> None:
            """Run the workflow code on what has arrived so far."""
            nonlocal state, activation, resolutions, local_retries
            for retry in local_retries:
                if state is None or state["status"] != RUNNING:
                    break
                state, events = await self._retry_local(state, retry, activation, now_us, batch)
                resolutions.extend(events)
            local_retries = []
            while resolutions and state is not None and state["status"] == RUNNING:
                run_id = state["run_id"]
                state, resolutions = await self._activate(
                    state, resolutions, activation, now_us, batch
                )
                activation = activation + 1 if state["run_id"] == run_id else 1
            resolutions = []
            if state is not None:
                activation = max(activation, state["last_activation"] + 1)

        def run_exists(run_id: str) -> bool:
            return self._run_exists(workflow_id, run_id, batch)

        for command in commands:
            if state is not None and self.sourced.repeated(state, command, batch.runs):
                batch.out.repeated_signal(state, command, now_us)  # a repeat from the log
                continue
            if command["body"][0] == "QueryWorkflow":
                await settle()  # a query sees everything accepted before it
                guard = self.deadlock.running(workflow_id, query=True)
                query = functools.partial(self._query_instance, batch=batch)
                batch.out.reply(answer_query(state, command, query, run_exists, guard))
                continue
            if command["body"][0] == "UpdateWorkflow":
                await settle()  # the validator sees everything accepted before
                decision = decide_update(
                    state,
                    command,
                    instance_for=lambda s: self._live_instance(s, batch),
                    recorded_event=lambda s, event_id: self._event_at(s, event_id, batch),
                    run_exists=run_exists,
                    guard=self.deadlock.running(workflow_id, query=True),
                )
            else:
                decision = decide(
                    state,
                    command,
                    now_us,
                    known_workflow=self._known,
                    run_exists=run_exists,
                    scheduled_step=lambda s, step: self._scheduled(s, step, batch),
                    check_signal=lambda s, body: check_signal(self.app, s, body),
                    default_queue=self._default_queue,
                    earlier_run=lambda run_id: self._earlier_run(workflow_id, run_id, batch),
                )
            if decision.events and decision.events[0][0] == "WorkflowTerminated":
                self._instances.pop(workflow_id, None)
                self.blocked.pop(workflow_id, None)
            if decision.events and decision.events[0][0] == "WorkflowStarted":
                self._instances.pop(workflow_id, None)
                self.blocked.pop(workflow_id, None)
                state, activation, resolutions = None, 1, []
            for kind, body in decision.events:
                event_activation = activation if kind in RESOLUTIONS else 0
                state, event = self._record(
                    state,
                    workflow_id,
                    decision.run_id or "",
                    kind,
                    body,
                    event_activation,
                    now_us,
                    command["command_id"],
                    batch,
                )
                if kind in RESOLUTIONS:
                    resolutions.append(event)
                elif kind == "StepRetried" and state["steps"][str(body["seq"])]["local"]:
                    local_retries.append(body)
            batch.out.decision(decision, workflow_id, now_us)
        await settle()
        if state is not None:
            batch.states[workflow_id] = state
            self._cache_state(workflow_id, state)

    def _record(
        self,
        state: State | None,
        workflow_id: str,
        run_id: str,
        kind: str,
        body: dict[str, Any],
        activation: int,
        now_us: int,
        command_id: str,
        batch: Batch,
    ) -> tuple[State, dict[str, Any]]:
        event_id = (state["last_event_id"] if state else 0) + 1
        event = {
            "workflow_id": workflow_id,
            "run_id": run_id,
            "event_id": event_id,
            "activation": activation,
            "ts_us": now_us,
            "command_id": command_id,
            "body": (kind, body),
        }
        value = EVENTS.encode(event)
        before_fold(
            batch.out, state, kind, body, now_us, lambda s, step: self._scheduled(s, step, batch)
        )
        state = apply(state, event)
        partition = partition_of(workflow_id, self.log.partitions)
        batch.events[partition].append((workflow_id, run_id, event_id, value))
        batch.out.history(workflow_id, value)
        batch.recorded[(workflow_id, run_id, event_id)] = event
        batch.runs[(workflow_id, run_id)].append(event)
        batch.out.for_event(state, event, lambda s, step: self._scheduled(s, step, batch))
        return state, event

    async def _activate(
        self,
        state: State,
        resolutions: list[dict[str, Any]],
        activation: int,
        now_us: int,
        batch: Batch,
    ) -> tuple[State, list[dict[str, Any]]]:
        workflow_id = state["workflow_id"]
        try:
            instance = self._instance(state, batch, activation)  # a replay is not timed
            with self.deadlock.running(workflow_id):
                commands = instance.activate(resolutions, now_us)
        except Exception as exc:  # one execution's fault must not stop the partition
            raise self._stop_execution(workflow_id, exc) from exc
        run_id = state["run_id"]
        local: list[Command] = []
        continued: dict[str, Any] | None = None
        for command in commands:
            state, _ = self._record(
                state,
                workflow_id,
                run_id,
                command.kind,
                command.body,
                activation,
                now_us,
                "",
                batch,
            )
            if command.local_call is not None:
                local.append(command)
            elif command.kind == "WorkflowContinuedAsNew":
                continued = command.body
        if self.cache_size and not instance.closed:
            self._instances[workflow_id] = instance
            self._instances.move_to_end(workflow_id)
            while len(self._instances) > self.cache_size:
                self._instances.popitem(last=False)
        else:
            self._instances.pop(workflow_id, None)
            if instance.closed:
                instance.dispose()
        if continued is not None:  # the new run starts now: nothing can slip in between
            return self._start_continued(state, continued, now_us, batch)
        if state["status"] != RUNNING:  # closed with local steps still pending (in tasks it
            return state, []  # never awaited): nothing would take their results, they never run
        next_resolutions: list[dict[str, Any]] = []
        for command in local:
            state, events = await self._run_local(
                state, command.body, command.local_call, 1, activation + 1, now_us, batch
            )
            next_resolutions.extend(events)
        return state, next_resolutions

    def _start_continued(
        self, closed: State, body: dict[str, Any], now_us: int, batch: Batch
    ) -> tuple[State, list[dict[str, Any]]]:
        """Record the first events of the run that continue-as-new starts: its start (with
        the chain and the clients waiting for the chain's outcome) and the signals the old
        run had not consumed. They are the new run's first activation."""
        workflow_id, new_run_id = closed["workflow_id"], body["new_run_id"]
        started = {
            "workflow_type": body["workflow_type"],
            "args": body["args"],
            "kwargs": body["kwargs"],
            "task_queue": body["task_queue"],
            "reply_to": None,
            "run_chain": [*closed["run_chain"], closed["run_id"]][-RUN_CHAIN_KEPT:],
            "watchers": closed["watchers"],
            "start_at_us": None,
            "run_timeout_ms": closed["run_timeout_ms"],  # each run gets the same time
            "execution_deadline_us": closed["execution_deadline_us"],  # the chain shares it
            "parent": closed["parent"],  # a child continued as new is still its parent's
        }
        state, event = self._record(
            None, workflow_id, new_run_id, "WorkflowStarted", started, 1, now_us, "", batch
        )
        resolutions = [event]
        for signal in body["signals"]:
            state, event = self._record(
                state, workflow_id, new_run_id, "SignalReceived", signal, 1, now_us, "", batch
            )
            resolutions.append(event)
        return state, resolutions

    async def _run_local(
        self,
        state: State,
        scheduled: dict[str, Any],
        call: Any,
        attempt: int,
        activation: int,
        now_us: int,
        batch: Batch,
    ) -> tuple[State, list[dict[str, Any]]]:
        """Run a local step attempt inline and decide its outcome like a worker's report."""
        command = await run_attempt(state, scheduled, call, attempt, now_us)
        decision = decide(  # when the attempt ended: a retry must begin before the deadline
            state,
            command,
            max(now_us, self.clock.now_us()),
            known_workflow=self._known,
            scheduled_step=lambda s, step: self._scheduled(s, step, batch),
        )
        resolutions = []
        for event_kind, event_body in decision.events:
            event_activation = activation if event_kind in RESOLUTIONS else 0
            state, event = self._record(
                state,
                state["workflow_id"],
                state["run_id"],
                event_kind,
                event_body,
                event_activation,
                now_us,
                "",
                batch,
            )
            if event_kind in RESOLUTIONS:
                resolutions.append(event)
        return state, resolutions

    async def _retry_local(
        self, state: State, retry: dict[str, Any], activation: int, now_us: int, batch: Batch
    ) -> tuple[State, list[dict[str, Any]]]:
        step = state["steps"].get(str(retry["seq"]))
        if step is None or step["attempt"] != retry["attempt"]:  # failed since (its deadline)
            return state, []
        try:
            instance = self._instance(state, batch, activation)
        except Exception as exc:  # one execution's fault must not stop the partition
            raise self._stop_execution(state["workflow_id"], exc) from exc
        self._instances[state["workflow_id"]] = instance
        call = instance.local_calls[retry["seq"]]
        scheduled = self._scheduled(state, state["steps"][str(retry["seq"])], batch)
        return await self._run_local(
            state, scheduled, call, retry["attempt"], activation, now_us, batch
        )

    def _stop_execution(self, workflow_id: str, exc: Exception) -> StopExecution:
        """Stop one execution where it is: nothing of this batch is recorded for it, and its
        commands wait (CommandsDeferred) until a processor with fixed code resumes them."""
        self._instances.pop(workflow_id, None)
        self._states.pop(workflow_id, None)
        if isinstance(exc, NondeterminismError):
            reason = str(exc)
            log.error("%s", exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
            log.error(
                "workflow_id=%s stopped: running its code failed inside Docket; its commands "
                "wait until the engine restarts with fixed code",
                workflow_id,
                exc_info=exc,
            )
        self.blocked[workflow_id] = reason
        return StopExecution(reason)

    def _instance(self, state: State, batch: Batch, activation: int) -> WorkflowInstance:
        workflow_id, run_id = state["workflow_id"], state["run_id"]
        instance = self._instances.get(workflow_id)
        if instance is not None and instance.run_id == run_id:
            return instance
        definition = self.app.find_workflow(state["workflow_type"])
        if definition is None:
            raise NondeterminismError(
                f"workflow type {state['workflow_type']!r} of workflow_id={workflow_id} is not "
                "registered in this app any more; register it again to let the execution continue"
            )
        instance = WorkflowInstance(
            definition,
            workflow_id,
            run_id,
            state["workflow_type"],
            state["task_queue"],
            self.app.find_step,
        )
        # a run's first activation has no earlier history: skip the store scan
        stored = [EVENTS.decode(v) for v in self._history_values(state)] if activation > 1 else []
        events = stored + batch.runs.get((workflow_id, run_id), [])  # this batch's: already dicts
        earlier = [e for e in events if e["activation"] != activation]
        if earlier:  # else a new run: nothing to bring it up to
            replay(instance, earlier)
        return instance

    def _history_values(self, state: State) -> list[bytes]:
        workflow_id, run_id = state["workflow_id"], state["run_id"]
        part = self.partitions[partition_of(workflow_id, self.log.partitions)]
        return list(part.store.history(workflow_id, run_id))

    def _scheduled(self, state: State, step: dict[str, Any], batch: Batch) -> dict[str, Any]:
        """The StepScheduled body of a pending step (from this batch, or from the store)."""
        body: dict[str, Any] = self._event_at(state, step["scheduled_event_id"], batch)["body"][1]
        return body

    def _event_at(self, state: State, event_id: int, batch: Batch) -> dict[str, Any]:
        """An event of the current run (from this batch, or from the store)."""
        key = (state["workflow_id"], state["run_id"], event_id)
        event = batch.recorded.get(key)
        if event is None:
            part = self.partitions[partition_of(key[0], self.log.partitions)]
            raw = next(part.store.history(key[0], key[1], after_event_id=event_id - 1))
            event = EVENTS.decode(raw)
        return event

    def _live_instance(self, state: State, batch: Batch) -> WorkflowInstance:
        """The workflow code up to date with everything recorded, kept for the next activation."""
        instance = self._instance(state, batch, state["last_activation"] + 1)
        if self.cache_size and not instance.closed:
            self._instances[state["workflow_id"]] = instance
        return instance

    def _query_instance(self, state: State, batch: Batch) -> WorkflowInstance:
        instance = self._instance(state, batch, state["last_activation"] + 1)
        if instance.closed:  # replayed to its end: keep nothing in the cache
            self._instances.pop(state["workflow_id"], None)
        return instance

    def _earlier_run(
        self, workflow_id: str, run_id: str, batch: Batch
    ) -> tuple[State, dict[str, Any]] | None:
        """An earlier run folded from its history, and its last event (rarely needed: a
        client waiting on a run that has since continued as new or been replaced)."""
        part = self.partitions[partition_of(workflow_id, self.log.partitions)]
        events = [EVENTS.decode(v) for v in part.store.history(workflow_id, run_id)]
        events += batch.runs.get((workflow_id, run_id), [])
        if not events or events[0]["body"][0] != "WorkflowStarted":
            return None
        state: State | None = None
        for event in events:
            state = apply(state, event)
        assert state is not None
        return state, events[-1]

    def _run_exists(self, workflow_id: str, run_id: str, batch: Batch) -> bool:
        if (workflow_id, run_id) in batch.runs:
            return True
        part = self.partitions[partition_of(workflow_id, self.log.partitions)]
        return next(part.store.history(workflow_id, run_id), None) is not None

    def _default_queue(self, workflow_type: str) -> str:
        definition = self.app.find_workflow(workflow_type)
        return definition.task_queue if definition is not None else self.app.task_queue

    def _known(self, workflow_type: str) -> bool:
        return self.app.find_workflow(workflow_type) is not None

    def _cache_state(self, workflow_id: str, state: State) -> None:
        if state["status"] != RUNNING:  # rarely asked again: the cyclic GC would walk it
            self._states.pop(workflow_id, None)
            return
        self._states[workflow_id] = state
        self._states.move_to_end(workflow_id)
        while len(self._states) > max(self.cache_size, 1000):
            self._states.popitem(last=False)


__all__ = ["ROLE", "ExecutionProcessor"]
