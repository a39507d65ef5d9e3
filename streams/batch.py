"""What one poll batch of the execution processor accumulates before it is made durable."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from docket.codec.records import STATES
from docket.execution.fold import State
from docket.log.partitioner import partition as partition_of
from docket.state.store import PartitionStore, StoreBatch
from docket.streams.outputs import Outputs


class PartitionCursor:
    def __init__(self, store: PartitionStore, offset: int, history_end: int) -> None:
        self.store = store
        self.offset = offset  # next command offset to read
        self.history_end = history_end  # next history offset; only this owner appends there


class Batch:
    """What one poll batch accumulates before it is made durable."""

    def __init__(self) -> None:
        self.out = Outputs()
        self.states: dict[str, State] = {}
        self.events: dict[int, list[tuple[str, str, int, bytes]]] = defaultdict(list)
        self.recorded: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(
            list
        )  # this batch's events

    def merge(self, other: Batch) -> None:
        """Take in what one workflow's processing produced (kept apart until it succeeded)."""
        self.out.extend(other.out)
        self.states.update(other.states)
        for partition, values in other.events.items():
            self.events[partition] += values
        self.recorded.update(other.recorded)
        for key, events in other.runs.items():
            self.runs[key] += events


class StopExecution(Exception):  # noqa: N818 - control flow inside the processor
    """The workflow code of one execution could not run; its commands are deferred."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def write_stores(
    batch: Batch,
    cursors: dict[int, PartitionCursor],
    offsets: dict[int, int],
    stopped: set[str],
    partitions: int,
) -> None:
    """Fold a batch the log now holds into the state stores: one WriteBatch per partition
    in ``offsets`` (each partition the batch read or wrote, with its next command offset),
    carrying the new events, the changed executions and the history checkpoint. Keeps
    ``stopped`` (the executions holding deferred commands) in step with the store."""
    stores: dict[int, StoreBatch] = {}
    for partition, offset in offsets.items():
        cursor = cursors[partition]
        stores[partition] = cursor.store.batch()
        cursor.history_end += len(batch.events.get(partition, ()))
        cursor.offset = offset
    for partition, events in batch.events.items():
        for wid, run_id, event_id, value in events:
            stores[partition].put_event(wid, run_id, event_id, value)
    for wid, state in batch.states.items():
        store_batch = stores[partition_of(wid, partitions)]
        store_batch.put_execution(wid, STATES.encode(state))
        if bool(state["deferred"]) != (wid in stopped):
            store_batch.mark_stopped(wid, bool(state["deferred"]))
            (stopped.add if state["deferred"] else stopped.discard)(wid)
    for partition, store_batch in stores.items():
        store_batch.commit(cursors[partition].history_end)
