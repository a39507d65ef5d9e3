"""Commands from this process, taken straight into the execution processor's next batch.

Two senders share the processor's process: the worker beside it, with its step reports,
and the engine's own client, with its requests (start, signal, query, update, cancel...).
Neither need append a command to ``commands`` (an encode and a transaction) for the
processor to read back and decode: when the processor owns the workflow's partition, the
sender hands the command over here. The processor's next batch folds it like a command
read from the log and appends what it recorded (with a worker's task offsets) in its one
transaction. The command itself never reaches ``commands``: the events it led to in
``history``, with its command id, are the durable record, and its sender hears back only
after that append (a client's reply, see local_replies.py).

Nothing acknowledged is lost. Until that append, a worker's task offset is not committed,
so a crash re-delivers the task and the step runs again, as it would have if the worker
had crashed before its own append (steps run at least once); a client's request is not
answered, and the client dies in the same crash. Commands the processor cannot take (it
stopped, lost the partition, or its batch failed) are appended to ``commands`` as their
sender would have, so they are never dropped.

Saves per command: an encode and a decode, the sender's log transaction, and one wake-up
hop (see bench/README.md for the figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from docket.command_sink import command_records
from docket.errors import PartitionFencedError
from docket.log.base import Commits, Log, wake
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics


class CommandInbox:
    """Implements `docket.command_sink.CommandSink` for one execution processor."""

    def __init__(self, log_: Log, topics: Topics, owned: Callable[[int], bool]) -> None:
        self.log = log_
        self.topics = topics
        self._owned = owned  # whether the processor holds this partition now
        self.accepting = True
        self.commands: list[dict[str, Any]] = []
        self.commits: dict[tuple[str, str, int], int] = {}
        self.owners: dict[str, str] = {}  # worker group -> member, for the lease checks
        self._on_fenced: list[Callable[[], None]] = []
        self._wakeup: asyncio.Future[None] | None = None

    # -- the senders' side (docket.command_sink.CommandSink) ---------------------------------

    def owns(self, workflow_id: str) -> bool:
        return self.accepting and self._owned(partition_of(workflow_id, self.log.partitions))

    def take(
        self,
        commands: Sequence[dict[str, Any]],
        commits: Commits,
        owners: Mapping[str, str],
        on_fenced: Callable[[], None],
    ) -> None:
        self.commands.extend(commands)
        self.commits.update(commits)  # a later flush's offsets supersede an earlier one's
        self.owners.update(owners)
        if on_fenced not in self._on_fenced:
            self._on_fenced.append(on_fenced)
        if self._wakeup is not None:
            wake(self._wakeup)

    # -- the processor's side -----------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self.commands or self.commits)

    def take_all(self) -> tuple[list[dict[str, Any]], dict[tuple[str, str, int], int]]:
        """What was handed over since the last call: the commands of workflows whose
        partition the processor still holds, and the task offsets. Commands of partitions
        that went elsewhere meanwhile are appended to ``commands`` now, before the
        processor's append commits the offsets."""
        commands, commits = self.commands, self.commits
        self.commands, self.commits = [], {}
        n = self.log.partitions
        kept: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
        for command in commands:
            (kept if self._owned(partition_of(command["workflow_id"], n)) else lost).append(command)
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
        self, commands: list[dict[str, Any]], commits: Mapping[tuple[str, str, int], int]
    ) -> None:
        """Append commands the processor could not make durable to ``commands``, then the
        worker's offsets, as their sender would have."""
        records = command_records(self.topics, self.log.partitions, commands)
        try:
            self.log.append(records, commits, owner=self.owners, atomic=False)
        except PartitionFencedError:  # the commands still count: the processor dedupes them
            self.log.append(records)
            self.worker_fenced()

    def close(self) -> None:
        """Stop taking commands (their senders append them from now on), and append those
        not yet taken."""
        self.accepting = False
        if self:
            commands, commits = self.commands, self.commits
            self.commands, self.commits = [], {}
            self.give_back(commands, commits)

    async def wait(self, token: object, timeout: float) -> None:
        """Idle until the log changes past ``token``, a command arrives, or ``timeout``."""
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        waiting = loop.create_task(self.log.wait_for_append(token, timeout))
        waiting.add_done_callback(lambda _: wake(wakeup))
        try:
            await wakeup
        finally:
            self._wakeup = None
            waiting.cancel()
