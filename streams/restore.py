"""Bring a partition's state store up to the end of its history: the one recovery path.

After a crash between a batch's log append and its WriteBatch, and when a process takes a
partition over, the store is behind the log. Folding the history topic from the store's
checkpoint catches it up; events the store already holds are skipped, so folding twice is
harmless. On Kafka, history from a transaction that did not commit is folded too, and what
its events owed others is appended again (`streams/unconfirmed.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docket.codec.records import EVENTS, STATES
from docket.execution.fold import State, apply
from docket.log.base import Log
from docket.log.topics import Topics
from docket.state.store import PartitionStore
from docket.streams.unconfirmed import OwedOutputs, owed_outputs, settle

log = logging.getLogger("docket")

READ_BATCH = 2000
PROGRESS_S = 5.0


def restore(
    log_: Log,
    history_topic: str,
    store: PartitionStore,
    partition: int,
    owed: OwedOutputs | None = None,
) -> int:
    """Fold history from the store's checkpoint to the end of the log; return the end.

    A long restore (a new machine taking a partition over) says how far it is every
    PROGRESS_S seconds; it commits every batch, so an interrupted one resumes there.
    With ``owed`` (the partition's new owner), the outputs of unconfirmed history are
    appended before the store moves past it."""
    offset = store.checkpoint()
    folded = 0
    started = reported = time.monotonic()
    folding: dict[tuple[str, str, int], dict[str, Any]] = {}  # owed's: not in the store yet

    def lookup(wid: str, run_id: str, event_id: int) -> dict[str, Any]:
        event = folding.get((wid, run_id, event_id))
        if event is None:
            event = EVENTS.decode(next(store.history(wid, run_id, after_event_id=event_id - 1)))
        return event

    while True:
        records = log_.read(history_topic, partition, offset, READ_BATCH)
        if not records:
            break
        batch = store.batch()
        states: dict[str, State | None] = {}
        folding.clear()
        for record in records:
            event = EVENTS.decode(record.value)
            wid = event["workflow_id"]
            if wid not in states:
                raw = store.execution(wid)
                states[wid] = STATES.decode(raw) if raw else None
            state = states[wid]
            if already_folded(state, event):
                continue
            if owed is not None and owed.owes(record):
                states[wid] = owed.fold(record, state, event, lookup)
            else:
                states[wid] = apply(state, event)
            if owed is not None:
                folding[(wid, event["run_id"], event["event_id"])] = event
            batch.put_event(wid, event["run_id"], event["event_id"], record.value)
            folded += 1
        for wid, state in states.items():
            if state is not None:
                batch.put_execution(wid, STATES.encode(state))
                batch.mark_stopped(wid, bool(state["deferred"]))
        offset = records[-1].offset + 1
        if owed is not None:
            owed.append()
        batch.commit(offset)
        if time.monotonic() - reported >= PROGRESS_S:
            reported = time.monotonic()
            log.info(
                "partition %d: restoring from the log, %d history events so far (offset %d), "
                "%.0f s",
                partition,
                folded,
                offset,
                reported - started,
            )
    if folded:
        log.info(
            "partition %d: restored %d history events from the log in %.1f s",
            partition,
            folded,
            time.monotonic() - started,
        )
    if owed is not None and owed.events:
        log.warning(
            "partition %d: %d history events came from a transaction that did not commit; "
            "%d of the records they sent out (tasks, timers, replies) were missing and were "
            "appended again",
            partition,
            owed.events,
            owed.appended,
        )
    return offset


def open_owned(
    log_: Log,
    topics: Topics,
    path: Path,
    partition: int,
    group: str,
    member: str,
    received_unconfirmed: Callable[[str, str], None],
) -> tuple[PartitionStore, int]:
    """Open the partition's store for its new owner and `restore` it: the store and where
    its history ends. Where appends can be seen in part (Kafka), it also repairs the last
    batch if that did not commit, and settles the partition (`streams/unconfirmed.py`).
    ``received_unconfirmed(workflow_id, command_id)`` hears of each signal that batch
    received. A failed restore closes the store again, so a later try can open it."""
    store = PartitionStore.open(path, partition)
    try:
        if log_.reads_whole_appends:
            return store, restore(log_, topics.history, store, partition)
        owed = owed_outputs(log_, topics, group, partition)
        end = restore(log_, topics.history, store, partition, owed)
        for workflow_id, command_id in owed.signals if owed is not None else ():
            received_unconfirmed(workflow_id, command_id)
        settle(log_, topics, group, partition, end, member)
        return store, end
    except BaseException:
        store.close()
        raise


def already_folded(state: State | None, event: dict[str, Any]) -> bool:
    if state is None:
        return False
    if event["body"][0] == "WorkflowStarted":
        return bool(state["run_id"] == event["run_id"])
    return bool(state["run_id"] != event["run_id"] or event["event_id"] <= state["last_event_id"])


__all__ = ["already_folded", "restore", "open_owned"]
