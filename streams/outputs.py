"""What each recorded event sends out: tasks for workers, timer requests, replies to clients.

Every output is a pure function of the event and the state after it, with deterministic
ids (timer ids, idempotency keys, request ids), so re-processing a batch produces the same
records and readers can dedupe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docket.codec.records import COMMANDS, REPLIES, TASKS, TIMERS
from docket.emission import record_headers
from docket.execution.decide import Decision, closed_reply, reply
from docket.execution.fold import State
from docket.execution.ids import idempotency_key, run_id_for, timer_id
from docket.execution.relations import CHILD_OUTCOMES, Notice, report_child, report_signal
from docket.log.base import OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics

Scheduled = Callable[[State, dict[str, Any]], dict[str, Any]]


class Outputs:
    def __init__(self) -> None:
        self._history: list[tuple[str, bytes]] = []
        self._tasks: list[tuple[str, str, bytes]] = []
        self._timers: list[tuple[str, bytes]] = []
        self._replies: list[dict[str, Any]] = []  # encoded in `records`: local ones never are
        self._commands: list[tuple[str, bytes]] = []  # to other workflows (children, parents)
        self._emitted: list[OutRecord] = []  # to user topics; partition set by `records`

    def records(
        self,
        topics: Topics,
        partitions: int,
        partitions_of: Callable[[str], int] | None = None,
    ) -> list[OutRecord]:
        """Every output record; ``partitions_of(topic)`` is a user topic's own partition
        count (its records are routed over it, by their keys)."""
        out = [
            OutRecord(topics.history, partition_of(k, partitions), k, v) for k, v in self._history
        ]
        out += [
            OutRecord(topics.tasks(q), partition_of(k, partitions), k, v) for q, k, v in self._tasks
        ]
        out += [
            OutRecord(topics.timers, partition_of(k, partitions), k, v) for k, v in self._timers
        ]
        out += [
            OutRecord(
                topics.replies,
                partition_of(r["reply_to"], partitions),
                r["reply_to"],
                REPLIES.encode(r),
            )
            for r in self._replies
        ]
        out += [
            OutRecord(topics.commands, partition_of(k, partitions), k, v) for k, v in self._commands
        ]
        for r in self._emitted:
            count = partitions_of(r.topic) if partitions_of is not None else partitions
            out.append(OutRecord(r.topic, partition_of(r.key, count), r.key, r.value, r.headers))
        return out

    def extend(self, other: Outputs) -> None:
        self._history += other._history
        self._tasks += other._tasks
        self._timers += other._timers
        self._replies += other._replies
        self._commands += other._commands
        self._emitted += other._emitted

    def history(self, workflow_id: str, value: bytes) -> None:
        self._history.append((workflow_id, value))

    def command(self, notice: Notice, ts_us: int) -> None:
        """A command for another workflow (its ID picks the partition)."""
        workflow_id, command_id, body = notice
        record = {
            "command_id": command_id,
            "workflow_id": workflow_id,
            "ts_us": ts_us,
            "body": body,
        }
        self._commands.append((workflow_id, COMMANDS.encode(record)))

    def decision(self, decision: Decision, workflow_id: str, now_us: int) -> None:
        """What deciding a command sends besides its events' outputs (replies mostly)."""
        for answer in decision.replies:
            self.reply(answer)
        for notice in decision.commands:
            self.command(notice, now_us)
        for timer in decision.timers:
            self.timer(workflow_id, timer)

    def repeated_signal(self, state: State, command: dict[str, Any], now_us: int) -> None:
        """What a signal sends when it is dropped as a repeat: the acknowledgements its
        sender waits for, again (a signal source's records have no sender)."""
        body = command["body"][1]
        if body.get("reply_to"):
            self.reply(
                reply(
                    body["reply_to"],
                    command["command_id"],
                    state["workflow_id"],
                    state["run_id"],
                    "signaled",
                )
            )
        if body.get("sender") is not None:
            self.command(report_signal(body["sender"]), now_us)

    def reply(self, record: dict[str, Any]) -> None:
        self._replies.append(record)

    def take_replies(self, local: Callable[[str], bool]) -> list[dict[str, Any]]:
        """Take out the replies to clients for which ``local(client_id)`` is true: they are
        handed over in memory (see streams/local_replies.py) and never reach the log."""
        taken: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for r in self._replies:
            (taken if local(r["reply_to"]) else kept).append(r)
        self._replies = kept
        return taken

    def cancel_timer(self, workflow_id: str, timer_id_: str, fire_at_us: int) -> None:
        request = {
            "timer_id": timer_id_,
            "workflow_id": workflow_id,
            "fire_at_us": fire_at_us,
            "command": b"",
            "cancel": True,
        }
        self._timers.append((workflow_id, TIMERS.encode(request)))

    def cancel_run_timers(self, state: State, now_us: int) -> None:
        """Take a closing run's timers that are not due yet out of the timer index: its
        sleeps, its start delay, its run and execution timeouts. Fired they would change
        nothing, but a year's timeout of a run that ended in a second would keep its index
        entry for a year. (Step timers are left to fire. So is the run timeout of a run
        whose start delay has elapsed: the state no longer holds when the run began.)"""
        wid, run_id = state["workflow_id"], state["run_id"]
        due: list[tuple[str, int, int]] = [
            ("sleep", int(seq), fire_at_us) for seq, fire_at_us in state["timers"].items()
        ]
        run_timeout_us = (state["run_timeout_ms"] or 0) * 1000
        if state["start_at_us"]:  # cleared once the delay elapsed
            due.append(("start", 0, state["start_at_us"]))
            if run_timeout_us:
                due.append(("run_timeout", 0, state["start_at_us"] + run_timeout_us))
        elif run_timeout_us:  # (after a start delay this misses: a harmless no-op)
            due.append(("run_timeout", 0, state["started_us"] + run_timeout_us))
        if state["execution_deadline_us"]:
            due.append(("execution_timeout", 0, state["execution_deadline_us"]))
        for kind, seq, fire_at_us in due:
            if fire_at_us > now_us:  # a due one has fired, or is about to: nothing to delete
                self.cancel_timer(wid, timer_id(wid, run_id, kind, seq, 0), fire_at_us)

    def timer(self, workflow_id: str, timer: dict[str, Any]) -> None:
        """``timer``: timer_id, fire_at_us, kind, seq, attempt (and the run's id via workflow)."""
        fire = {
            "command_id": f"timer:{timer['timer_id']}",
            "workflow_id": workflow_id,
            "ts_us": timer["fire_at_us"],
            "body": (
                "FireTimer",
                {
                    "run_id": timer["run_id"],
                    "kind": timer["kind"],
                    "seq": timer["seq"],
                    "attempt": timer["attempt"],
                    "fire_at_us": timer["fire_at_us"],
                },
            ),
        }
        request = {
            "timer_id": timer["timer_id"],
            "workflow_id": workflow_id,
            "fire_at_us": timer["fire_at_us"],
            "command": COMMANDS.encode(fire),
            "cancel": False,
        }
        self._timers.append((workflow_id, TIMERS.encode(request)))

    def _relations(self, state: State, kind: str, body: dict[str, Any], now_us: int) -> None:
        """Commands to other workflows: start a child, signal a workflow, ask a child to
        cancel, and tell a parent that its child started or ended."""
        wid, run_id = state["workflow_id"], state["run_id"]
        if kind == "WorkflowStarted":
            if body.get("parent"):
                self.command(report_child(body["parent"], wid, run_id, "started"), now_us)
        elif kind in CHILD_OUTCOMES:
            outcome = CHILD_OUTCOMES[kind]
            notice = report_child(
                state["parent"],
                wid,
                run_id,
                outcome,
                result=state["result"],
                failure=state["failure"],
            )
            self.command(notice, now_us)
        elif kind == "ChildWorkflowScheduled":
            me = {"workflow_id": wid, "run_id": run_id, "seq": body["seq"]}
            start = {
                "workflow_type": body["workflow_type"],
                "args": body["args"],
                "kwargs": body["kwargs"],
                "task_queue": body["task_queue"],
                "id_reuse_policy": "allow_after_close",
                "reply_to": None,
                "start_delay_ms": None,
                "run_timeout_ms": body["run_timeout_ms"],
                "execution_timeout_ms": body["execution_timeout_ms"],
                "parent": me,
            }
            command_id = child_start_id(wid, run_id, body["seq"])
            self.command((body["workflow_id"], command_id, ("StartWorkflow", start)), now_us)
        elif kind == "ChildCancelRequested":
            child = state["children"].get(str(body["seq"]))
            if child is not None:
                self.command(_stop_child(wid, run_id, body["seq"], child, "CancelWorkflow"), now_us)
        elif kind == "ExternalSignalScheduled":
            signal = {
                "run_id": body["run_id"],
                "signal_name": body["signal_name"],
                "args": body["args"],
                "kwargs": body["kwargs"],
                "reply_to": None,
                "sender": {"workflow_id": wid, "run_id": run_id, "seq": body["seq"]},
            }
            command_id = f"signal:{wid}/{run_id}/{body['seq']}"
            self.command((body["workflow_id"], command_id, ("SignalWorkflow", signal)), now_us)

    def parent_closing(self, state: State, now_us: int) -> None:
        """Apply each open child's parent-close policy (before the parent's close is folded)."""
        for seq, child in state["children"].items():
            policy = child["parent_close_policy"]
            if policy == "abandon":
                continue
            kind = "TerminateWorkflow" if policy == "terminate" else "CancelWorkflow"
            notice = _stop_child(state["workflow_id"], state["run_id"], int(seq), child, kind)
            self.command(notice, now_us)

    def _run_timers(self, state: State, body: dict[str, Any], now_us: int) -> None:
        """A run's own timers: the end of its start delay, its run and execution timeouts."""
        begins_us = body.get("start_at_us") or now_us
        if body.get("start_at_us"):
            self._step_timer(state, "start", 0, 0, begins_us)
        if body.get("run_timeout_ms"):
            self._step_timer(state, "run_timeout", 0, 0, begins_us + body["run_timeout_ms"] * 1000)
        if body.get("execution_deadline_us"):
            self._step_timer(state, "execution_timeout", 0, 0, body["execution_deadline_us"])

    def _step_timer(self, state: State, kind: str, seq: int, attempt: int, fire_at_us: int) -> None:
        self.timer(
            state["workflow_id"],
            {
                "timer_id": timer_id(state["workflow_id"], state["run_id"], kind, seq, attempt),
                "run_id": state["run_id"],
                "fire_at_us": fire_at_us,
                "kind": kind,
                "seq": seq,
                "attempt": attempt,
            },
        )

    def _task(
        self,
        state: State,
        scheduled: dict[str, Any],
        attempt: int,
        details: dict[str, Any] | None,
        now_us: int,
    ) -> None:
        # its start-to-close and heartbeat timers start with the attempt, when the worker
        # reports it (decide.py); its schedule-to-start timer with the dispatch, now
        self._task_record(state, scheduled, attempt, heartbeat_details=details, cancel=False)
        if to_start_ms := scheduled.get("schedule_to_start_ms"):
            due = now_us + to_start_ms * 1000
            self._step_timer(state, "schedule_to_start", scheduled["seq"], attempt, due)

    def cancel_task(self, state: State, scheduled: dict[str, Any], attempt: int) -> None:
        """A notice on the step's task queue: the worker running this attempt cancels it."""
        self._task_record(
            state,
            scheduled,
            attempt,
            args=[],
            kwargs={},
            start_to_close_ms=None,
            heartbeat_ms=None,
            schedule_to_start_ms=None,
            heartbeat_details=None,
            cancel=True,
        )

    def _task_record(
        self, state: State, scheduled: dict[str, Any], attempt: int, **fields: Any
    ) -> None:
        """A record on the step's task queue for one attempt; ``fields`` override what it
        takes from the StepScheduled body (a cancel notice carries no arguments)."""
        wid, run_id, seq = state["workflow_id"], state["run_id"], scheduled["seq"]
        task = {
            "workflow_id": wid,
            "run_id": run_id,
            "workflow_type": state["workflow_type"],
            "seq": seq,
            "attempt": attempt,
            "step_name": scheduled["step_name"],
            "args": scheduled["args"],
            "kwargs": scheduled["kwargs"],
            "idempotency_key": idempotency_key(wid, run_id, seq, attempt),
            "start_to_close_ms": scheduled["start_to_close_ms"],
            "heartbeat_ms": scheduled["heartbeat_ms"],
            "schedule_to_start_ms": scheduled.get("schedule_to_start_ms"),
            **fields,
        }
        self._tasks.append((scheduled["task_queue"], wid, TASKS.encode(task)))

    def for_event(self, state: State, event: dict[str, Any], scheduled_step: Scheduled) -> None:
        kind, body = event["body"]
        now_us = event["ts_us"]
        if kind in _RELATIONS or (state["parent"] and kind in CHILD_OUTCOMES):
            self._relations(state, kind, body, now_us)
        if kind == "WorkflowStarted":
            self._run_timers(state, body, now_us)
            if body["reply_to"]:
                self.reply(
                    reply(
                        body["reply_to"],
                        event["command_id"],
                        state["workflow_id"],
                        state["run_id"],
                        "started",
                    )
                )
        elif kind == "StepScheduled":
            deadline_us = state["steps"].get(str(body["seq"]), {}).get("deadline_us")
            if deadline_us is not None:  # the whole step's timer: attempt 0
                self._step_timer(state, "schedule_to_close", body["seq"], 0, deadline_us)
            if not body["local"]:
                self._task(state, body, 1, None, now_us)
        elif kind == "StepRetried":
            step = state["steps"][str(body["seq"])]
            if not step["local"]:
                self._task(
                    state,
                    scheduled_step(state, step),
                    body["attempt"],
                    step["heartbeat_details"],
                    now_us,
                )
        elif kind == "StepAttemptFailed":
            self._step_timer(state, "retry", body["seq"], body["attempt"], body["retry_at_us"])
        elif kind == "StepCancelRequested":
            step = state["steps"].get(str(body["seq"]))
            if step is not None and not step["local"] and step["retry_at_us"] is None:
                self.cancel_task(state, scheduled_step(state, step), step["attempt"])
        elif kind == "TimerCancelled":
            wid, run_id = state["workflow_id"], state["run_id"]
            self.cancel_timer(
                wid, timer_id(wid, run_id, "sleep", body["seq"], 0), body["fire_at_us"]
            )
        elif kind == "TimerStarted":
            self._step_timer(state, "sleep", body["seq"], 0, body["fire_at_us"])
        elif kind == "RecordEmitted":
            headers = record_headers(
                state["workflow_id"], state["run_id"], body["seq"], body["headers"]
            )
            record = OutRecord(body["topic"], -1, body["key"], body["value"], headers)
            self._emitted.append(record)
        elif kind == "WatcherAdded":
            self.reply(
                reply(
                    body["reply_to"],
                    event["command_id"],
                    state["workflow_id"],
                    state["run_id"],
                    "watching",
                )
            )
        elif kind == "WorkflowContinuedAsNew":  # the chain goes on: waiters follow it
            for watcher in state["watchers"]:
                self.reply(
                    reply(
                        watcher,
                        f"result:{state['run_id']}",
                        state["workflow_id"],
                        body["new_run_id"],
                        "continued_as_new",
                    )
                )
        elif kind in (
            "WorkflowCompleted",
            "WorkflowFailed",
            "WorkflowTerminated",
            "WorkflowCancelled",
            "WorkflowTimedOut",
        ):
            for watcher in state["watchers"]:
                self.reply(closed_reply(state, watcher, f"result:{state['run_id']}"))


_RELATIONS = frozenset(
    {"WorkflowStarted", "ChildWorkflowScheduled", "ChildCancelRequested", "ExternalSignalScheduled"}
)


def child_start_id(parent_id: str, parent_run: str, seq: int) -> str:
    """The command id of a parent's start of its child at ``seq`` (the child's run id
    derives from it)."""
    return f"start-child:{parent_id}/{parent_run}/{seq}"


def _stop_child(
    parent_id: str, parent_run: str, seq: int, child: dict[str, Any], kind: str
) -> Notice:
    """Terminate or cancel a child on its parent's behalf. It names the child's run even
    before the child's start is reported: that run's id derives from the start the parent
    sent. Without one, the notice would reach whatever run holds the ID, say an unrelated
    one that made the child's start fail; with one, it finds no such run and does nothing."""
    why = "its parent closed" if kind == "TerminateWorkflow" else "its parent cancelled it"
    run_id = child["run_id"] or run_id_for(child_start_id(parent_id, parent_run, seq))
    body = {"run_id": run_id, "reason": f"{why} ({parent_id})", "reply_to": None}
    command_id = f"{kind}:{parent_id}/{parent_run}/{seq}"
    return child["workflow_id"], command_id, (kind, body)
