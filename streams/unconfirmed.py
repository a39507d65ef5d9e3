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
When a partition is restored, a record whose end is past the committed one comes from a
transaction that did not commit, and its event's outputs are appended again, unless they
reached the log before the kill. Outputs are a pure function of the event and the state
around it (`streams/outputs.py`), so the same bytes: a task that arrived is not written
twice, and its step does not run twice.

Ends are the processor's count of the partition's history (`PartitionCursor.history_end`):
they grow with every batch that writes there, across owners, since a new owner counts on
from the end it restored to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from docket.execution.fold import State, apply
from docket.log.base import Commits, Log, LogRecord, OutRecord
from docket.log.topics import Topics
from docket.streams.closing import before_fold
from docket.streams.outputs import Outputs

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


class OwedOutputs:
    """The outputs of one partition's unconfirmed history, gathered as restore folds it."""

    def __init__(self, log_: Log, topics: Topics, committed_end: int) -> None:
        self.log = log_
        self.topics = topics
        self.committed_end = committed_end
        self._out = Outputs()
        self._since_us: int | None = None  # the earliest unconfirmed append gathered
        self.events = 0
        self.appended = 0

    def owes(self, record: LogRecord) -> bool:
        end = batch_end(record)
        return end is not None and end > self.committed_end

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
        before_fold(self._out, state, kind, body, event["ts_us"], scheduled)
        state = apply(state, event)
        self._out.for_event(state, event, scheduled)
        self.events += 1
        self._since_us = min(self._since_us or record.ts_us, record.ts_us)
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
        """The records at the end of the partition appended from ``since_us`` on. A
        transaction's records all carry its append's time, and the writers of a partition
        of Docket's topics are the processors that owned it one after another, so this
        reads back from the end only until records are older (a user topic may have other
        writers: their records are read too, and only matter if identical)."""
        found: set[tuple[str, bytes]] = set()
        end = self.log.end_offset(topic, partition)
        while end > 0:
            start = max(0, end - SCAN_CHUNK)
            chunk = self._between(topic, partition, start, end)
            found.update((r.key, r.value) for r in chunk if r.ts_us >= since_us)
            if not chunk or chunk[0].ts_us < since_us:
                break
            end = start
        return found

    def _between(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        """The records from offset ``start`` up to ``end`` (a read may return fewer)."""
        out: list[LogRecord] = []
        while start < end:
            records = [
                r for r in self.log.read(topic, partition, start, end - start) if r.offset < end
            ]
            if not records:
                break
            out += records
            start = records[-1].offset + 1
        return out


__all__ = ["BATCH_END", "OwedOutputs", "batch_end", "mark"]
