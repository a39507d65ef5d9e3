"""Reports of a co-located worker, taken straight into the execution processor's next batch.

A worker in the same process as the processor that owns a workflow's partition need not
append its step outcome to ``commands`` (one encode, one fsync'd transaction) for the
processor to read back and decode: it hands the report over here. The processor's next
batch folds it like a command read from the log and appends its history events together
with the worker's task offsets, in its one transaction. The report itself never reaches
``commands``; its ``StepCompleted`` (or ``StepAttemptFailed``...) event in ``history``,
with the report's command id, is the durable record.

Nothing acknowledged is lost: until that append, the task's offset is not committed, so a
crash re-delivers the task and the step runs again, as it would have if the worker had
crashed before its own append (steps run at least once). Reports the processor cannot
take (it stopped, lost the partition, or its batch failed) are appended to ``commands``
as the worker would have, so they are never dropped.

Saves per step: a command encode and decode, one log transaction, and one wake-up hop
(see bench/README.md for the figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from docket.errors import PartitionFencedError
from docket.log.base import Commits, Log, wake
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.worker import report_records


class ReportInbox:
    """Implements `docket.worker.ReportSink` for one execution processor."""

    def __init__(self, log_: Log, topics: Topics, owned: Callable[[int], bool]) -> None:
        self.log = log_
        self.topics = topics
        self._owned = owned  # whether the processor holds this partition now
        self.accepting = True
        self.reports: list[dict[str, Any]] = []
        self.commits: dict[tuple[str, str, int], int] = {}
        self.owners: dict[str, str] = {}  # worker group -> member, for the lease checks
        self._on_fenced: list[Callable[[], None]] = []
        self._wakeup: asyncio.Future[None] | None = None

    # -- the worker's side (docket.worker.ReportSink) ----------------------------------------------

    def owns(self, workflow_id: str) -> bool:
        return self.accepting and self._owned(partition_of(workflow_id, self.log.partitions))

    def take(
        self,
        reports: list[dict[str, Any]],
        commits: Commits,
        owners: Mapping[str, str],
        on_fenced: Callable[[], None],
    ) -> None:
        self.reports.extend(reports)
        self.commits.update(commits)  # a later flush's offsets supersede an earlier one's
        self.owners.update(owners)
        if on_fenced not in self._on_fenced:
            self._on_fenced.append(on_fenced)
        if self._wakeup is not None:
            wake(self._wakeup)

    # -- the processor's side -----------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self.reports or self.commits)

    def take_all(self) -> tuple[list[dict[str, Any]], dict[tuple[str, str, int], int]]:
        """What was handed over since the last call: the reports of workflows whose
        partition the processor still holds, and the task offsets. Reports of partitions
        that went elsewhere meanwhile are appended to ``commands`` now, before the
        processor's append commits the offsets."""
        reports, commits = self.reports, self.commits
        self.reports, self.commits = [], {}
        n = self.log.partitions
        kept: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
        for report in reports:
            (kept if self._owned(partition_of(report["workflow_id"], n)) else lost).append(report)
        if lost:
            self.give_back(lost, {})
        return kept, commits

    def owner_map(self, group: str, member: str) -> dict[str, str]:
        """Who must hold which leases for an append that carries the worker's offsets."""
        return {**self.owners, group: member}

    def worker_fenced(self) -> None:
        """The worker's leases failed the append's check (the processor's held)."""
        for callback in self._on_fenced:
            callback()

    def give_back(
        self, reports: list[dict[str, Any]], commits: Mapping[tuple[str, str, int], int]
    ) -> None:
        """Append reports the processor could not make durable to ``commands``, then the
        worker's offsets, as the worker would have."""
        records = report_records(self.topics, self.log.partitions, reports)
        try:
            self.log.append(records, commits, owner=self.owners, atomic=False)
        except PartitionFencedError:  # the reports still count: the processor dedupes them
            self.log.append(records)
            self.worker_fenced()

    def close(self) -> None:
        """Stop taking reports (the worker appends them itself from now on), and append
        those not yet taken."""
        self.accepting = False
        if self:
            reports, commits = self.reports, self.commits
            self.reports, self.commits = [], {}
            self.give_back(reports, commits)

    async def wait(self, token: object, timeout: float) -> None:
        """Idle until the log changes past ``token``, a report arrives, or ``timeout``."""
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        waiting = loop.create_task(self.log.wait_for_append(token, timeout))
        waiting.add_done_callback(lambda _: wake(wakeup))
        try:
            await wakeup
        finally:
            self._wakeup = None
            waiting.cancel()
