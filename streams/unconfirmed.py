"""History that a processor's transaction wrote but may not have committed, and what it owes.

On Kafka a `kill -9` can cut a processor's transaction short after some of its records
reached the broker and before the rest did. Docket's readers are ``read_uncommitted``
(docs/concepts.md says why), so those history records count: `restore` folds them and
they become the workflow's history. Their outputs may be missing, though (the next step's
task, a timer request, a reply), and the batch's inputs, which come back because their
offsets did not commit, are now duplicates that the processor drops. Nothing would ever
write those outputs: the workflow would wait forever.

So on a log that does not read whole appends, each history record of a batch carries the
history end its partition reaches with that batch (header ``docket.batch-end``), and the
batch's transaction commits that end as the processor group's offset on the history topic.
A new owner of the partition looks at its last history record: if that record's end is
past the committed one, the batch that wrote it did not commit. That batch's events are
folded as usual, and their outputs are appended again, unless they reached the log before
the kill. Outputs are a pure function of the event and the state around it
(`streams/outputs.py`), so they are the same bytes: a task that arrived is not written
twice, and its step does not run twice. The new owner then commits the end it restored to,
so that what came before counts as settled.

Only the last batch can be owed: a writer starts a batch once its previous one committed,
and a new owner settles the partition (as above) before it writes.

Ends are the processor's count of the partition's history (`PartitionCursor.history_end`):
they grow with every batch that writes there, across owners, since a new owner counts on
from the end it restored to. They are not offsets of the history topic, only numbers that
grow: outside lag monitors show the processor group "behind" on it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from docket.execution.fold import State, apply
from docket.log.base import Commits, Log, LogRecord, OutRecord
from docket.log.topics import Topics
from docket.streams.closing import before_fold
from docket.streams.outputs import Outputs

logger = logging.getLogger("docket")

BATCH_END = "docket.batch-end"
SCAN_CHUNK = 500
CLOCK_SLACK_US = 2_000_000  # owners on other machines: their clocks may differ this much

# (workflow_id, run_id, event_id) -> the event, for what the store does not hold yet
EventLookup = Callable[[str, str, int], dict[str, Any]]


def mark(
    records: Sequence[OutRecord],
    commits: Commits,
    group: str,
    topics: Topics,
    ends: Mapping[int, int],
) -> tuple[list[OutRecord], dict[tuple[str, str, int], int]]:
    """A batch's records and commits as appended: each history record carrying the end
    its partition reaches, and those ends committed as ``group``'s history offsets."""
    headers = {p: ((BATCH_END, str(end).encode()),) for p, end in ends.items()}
    marked = [
        OutRecord(r.topic, r.partition, r.key, r.value, headers[r.partition])
        if r.topic == topics.history
        else r
        for r in records
    ]
    return marked, {**commits, **{(group, topics.history, p): end for p, end in ends.items()}}


def batch_end(record: LogRecord) -> int | None:
    """The end a history record's batch took its partition to; None on unmarked records
    (the embedded log's, and those written before Docket marked them)."""
    for name, value in record.headers:
        if name == BATCH_END:
            return int(value)
    return None


def owed_outputs(log_: Log, topics: Topics, group: str, partition: int) -> OwedOutputs | None:
    """What restoring ``partition`` must repair: the outputs of its last batch if that did
    not commit, else None."""
    last = _last_record(log_, topics.history, partition)
    trailing = batch_end(last) if last is not None else None
    if trailing is None:
        return None
    committed = log_.committed(group, topics.history, partition)
    if trailing <= committed:
        return None
    if committed == 0:  # nothing committed: the partition's first batch, or an expired offset
        first = log_.read(topics.history, partition, 0, 1)
        if not first or batch_end(first[0]) != trailing:
            logger.warning(
                "partition %d: the processor group %r has no offset on %s (did it expire?); "
                "its last history is taken as committed",
                partition,
                group,
                topics.history,
            )
            return None
    return OwedOutputs(log_, topics, trailing)


def settle(log_: Log, topics: Topics, group: str, partition: int, end: int, owner: str) -> None:
    """Commit the history end a new owner restored to: what came before is committed, or
    repaired. (It also renews the offset, which Kafka expires when a group is idle.)"""
    log_.append([], {(group, topics.history, partition): end}, owner=owner)


class OwedOutputs:
    """The outputs of a partition's last batch, gathered as restore folds its history."""

    def __init__(self, log_: Log, topics: Topics, trailing_end: int) -> None:
        self.log = log_
        self.topics = topics
        self.trailing_end = trailing_end
        self._out = Outputs()
        self._since_us: int | None = None  # when that batch was appended
        self.events = 0
        self.appended = 0
        self.signals: list[tuple[str, str]] = []  # (workflow, command id) of SignalReceived

    def owes(self, record: LogRecord) -> bool:
        return batch_end(record) == self.trailing_end

    def fold(
        self, record: LogRecord, state: State | None, event: dict[str, Any], lookup: EventLookup
    ) -> State:
        """Fold ``record``'s event and gather what recording it sent out (as the processor's
        `_record` does: what the state before it owes, then what the event itself sends)."""

        def scheduled(state: State, step: dict[str, Any]) -> dict[str, Any]:
            found = lookup(state["workflow_id"], state["run_id"], step["scheduled_event_id"])
            body: dict[str, Any] = found["body"][1]
            return body

        kind, body = event["body"]
        if kind == "SignalReceived":
            self.signals.append((event["workflow_id"], event["command_id"]))
        before_fold(self._out, state, kind, body, event["ts_us"], scheduled)
        state = apply(state, event)
        self._out.for_event(state, event, scheduled)
        self.events += 1
        self._since_us = record.ts_us
        return state

    def append(self) -> None:
        """Append what was gathered and is not on the log already: before restore commits
        the store past those events."""
        records = self._out.records(self.topics, self.log.partitions, self.log.partitions_of)
        self._out = Outputs()
        if not records or self._since_us is None:
            return
        by_partition: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for r in records:
            by_partition[(r.topic, r.partition)].append(r)
        missing: list[OutRecord] = []
        for (topic, partition), owed in by_partition.items():
            there = self._recent(topic, partition, self._since_us - CLOCK_SLACK_US)
            missing += [r for r in owed if (r.key, r.value) not in there]
        if missing:
            self.log.append(missing)
            self.appended += len(missing)

    def _recent(self, topic: str, partition: int, since_us: int) -> set[tuple[str, bytes]]:
        """The records at the end of the partition, read back until a whole chunk is older
        than ``since_us``. The batch's records all carry its append's time; other writers
        of the partition (clients, timer services, other processors) have clocks of their
        own, so one older record does not end the search."""
        found: set[tuple[str, bytes]] = set()
        end = self.log.end_offset(topic, partition)
        while end > 0:
            start = max(0, end - SCAN_CHUNK)
            chunk = _between(self.log, topic, partition, start, end)
            found.update((r.key, r.value) for r in chunk)
            if not chunk or max(r.ts_us for r in chunk) < since_us:
                break
            end = start
        return found


def _last_record(log_: Log, topic: str, partition: int) -> LogRecord | None:
    end = log_.end_offset(topic, partition)
    while end > 0:  # commit markers take offsets too: the last ones may hold no record
        start = max(0, end - SCAN_CHUNK)
        chunk = _between(log_, topic, partition, start, end)
        if chunk:
            return chunk[-1]
        end = start
    return None


def _between(log_: Log, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
    """The records from offset ``start`` up to ``end`` (a read may return fewer)."""
    out: list[LogRecord] = []
    while start < end:
        records = [r for r in log_.read(topic, partition, start, end - start) if r.offset < end]
        if not records:
            break
        out += records
        start = records[-1].offset + 1
    return out


__all__ = ["BATCH_END", "OwedOutputs", "batch_end", "mark", "owed_outputs", "settle"]
