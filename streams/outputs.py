"""What each recorded event sends out: tasks for workers, timer requests, replies to clients.

Every output is a pure function of the event and the state after it, with deterministic
ids (timer ids, idempotency keys, request ids), so re-processing a batch produces the same
records and readers can dedupe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docket.codec.records import COMMANDS, REPLIES, TASKS, TIMERS
from docket.execution.decide import closed_reply, reply
from docket.execution.fold import State
from docket.execution.ids import idempotency_key, timer_id
from docket.log.base import OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics

Scheduled = Callable[[State, dict[str, Any]], dict[str, Any]]


class Outputs:
    def __init__(self) -> None:
        self._history: list[tuple[str, bytes]] = []
        self._tasks: list[tuple[str, str, bytes]] = []
        self._timers: list[tuple[str, bytes]] = []
        self._replies: list[tuple[str, bytes]] = []

    def records(self, topics: Topics, partitions: int) -> list[OutRecord]:
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
            OutRecord(topics.replies, partition_of(k, partitions), k, v) for k, v in self._replies
        ]
        return out

    def extend(self, other: Outputs) -> None:
        self._history += other._history
        self._tasks += other._tasks
        self._timers += other._timers
        self._replies += other._replies

    def history(self, workflow_id: str, value: bytes) -> None:
        self._history.append((workflow_id, value))

    def reply(self, record: dict[str, Any]) -> None:
        self._replies.append((record["reply_to"], REPLIES.encode(record)))

    def cancel_timer(self, workflow_id: str, timer_id_: str, fire_at_us: int) -> None:
        request = {
            "timer_id": timer_id_,
            "workflow_id": workflow_id,
            "fire_at_us": fire_at_us,
            "command": b"",
            "cancel": True,
        }
        self._timers.append((workflow_id, TIMERS.encode(request)))

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
        now_us: int,
        details: dict[str, Any] | None,
    ) -> None:
        seq = scheduled["seq"]
        wid, run_id = state["workflow_id"], state["run_id"]
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
            "heartbeat_details": details,
            "cancel": False,
        }
        self._tasks.append((scheduled["task_queue"], wid, TASKS.encode(task)))
        if scheduled["start_to_close_ms"]:
            self._step_timer(
                state,
                "start_to_close",
                seq,
                attempt,
                now_us + scheduled["start_to_close_ms"] * 1000,
            )
        if scheduled["heartbeat_ms"]:
            self._step_timer(
                state, "heartbeat", seq, attempt, now_us + scheduled["heartbeat_ms"] * 1000
            )

    def cancel_task(self, state: State, scheduled: dict[str, Any], attempt: int) -> None:
        """A notice on the step's task queue: the worker running this attempt cancels it."""
        wid, run_id, seq = state["workflow_id"], state["run_id"], scheduled["seq"]
        notice = {
            "workflow_id": wid,
            "run_id": run_id,
            "workflow_type": state["workflow_type"],
            "seq": seq,
            "attempt": attempt,
            "step_name": scheduled["step_name"],
            "args": [],
            "kwargs": {},
            "idempotency_key": idempotency_key(wid, run_id, seq, attempt),
            "start_to_close_ms": None,
            "heartbeat_ms": None,
            "heartbeat_details": None,
            "cancel": True,
        }
        self._tasks.append((scheduled["task_queue"], wid, TASKS.encode(notice)))

    def for_event(self, state: State, event: dict[str, Any], scheduled_step: Scheduled) -> None:
        kind, body = event["body"]
        now_us = event["ts_us"]
        if kind == "WorkflowStarted":
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
            if not body["local"]:
                self._task(state, body, 1, now_us, None)
        elif kind == "StepRetried":
            step = state["steps"][str(body["seq"])]
            if not step["local"]:
                self._task(
                    state,
                    scheduled_step(state, step),
                    body["attempt"],
                    now_us,
                    step["heartbeat_details"],
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
        ):
            for watcher in state["watchers"]:
                self.reply(closed_reply(state, watcher, f"result:{state['run_id']}"))
