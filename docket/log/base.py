"""The log interface the engine is written against; the embedded and Kafka logs implement it.

A log holds topics of numbered partitions; each partition is an append-only sequence of
records with gap-free offsets. The engine needs four things from it: append records and
commit consumer offsets as one atomic unit, read a partition from an offset, know when new
records may have arrived, and own partitions within a consumer group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# record headers, in order (names may repeat, as in Kafka)
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record as read back from the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    ts_us: int
    headers: Headers = ()  # user topics', and Kafka history's batch end (streams/unconfirmed.py)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to append; the writer always names the partition (see partitioner.py)."""

    topic: str
    partition: int
    key: str
    value: bytes
    headers: Headers = ()


# (group, topic, partition) -> next offset to read
Commits = Mapping[tuple[str, str, int], int]

# who must hold the leases of committed partitions: one member, or a member per group (a
# processor's append that also commits its co-located worker's task offsets)
Owner = str | Mapping[str, str]


def owner_in(owner: Owner, group: str) -> str:
    """The member that must hold ``group``'s leases for an append by ``owner``."""
    return owner if isinstance(owner, str) else owner.get(group, "")


class Log(Protocol):
    namespace: str  # where this log's topics, groups and state live (see layout.py)
    partitions: int
    # Readers never see part of an append (SQLite). Kafka's read_uncommitted readers can see
    # part of a transaction a crash cut short: only inputs on the log are then processed
    # again, so a worker must not hand its reports to the processor in memory (handoff.py).
    reads_whole_appends: bool

    def append(
        self,
        records: Sequence[OutRecord],
        commits: Commits | None = None,
        *,
        owner: Owner | None = None,
        atomic: bool = True,
        sync: bool = True,
    ) -> None:
        """Append ``records`` and store ``commits`` atomically: all of it or none of it.

        With ``owner``, fail with PartitionFencedError unless ``owner`` (or, given a member
        per group, that group's member) still holds the lease of every committed
        (group, topic, partition). ``atomic=False`` lets a backend store
        the records first and the commits after, when the caller tolerates its input coming
        back once more (a worker's reports: the processor dedupes them); Kafka then skips a
        transaction. ``sync=False`` lets a backend skip flushing to disk when nothing is
        acknowledged on the strength of this append alone: a client's request, answered only
        once the processor's own (flushed) append, which comes after it, holds the outcome.
        """

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        """Records of one partition from ``offset`` on, at most ``limit`` of them."""

    def poll(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        """`read` for loops that take a `change_token` each round; may skip the backend when
        nothing can have arrived since that token."""

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next appended record of this partition will get."""

    def committed(self, group: str, topic: str, partition: int) -> int:
        """The group's committed offset for this partition (0 if none)."""

    def change_token(self) -> object:
        """An opaque token to take *before* reading; see wait_for_append."""

    async def wait_for_append(self, token: object, timeout: float) -> None:
        """Return once records may have been appended since ``token`` was taken, or after
        ``timeout`` seconds. Taking the token before the read closes the lost-wakeup race."""

    def heartbeat(self, group: str, member: str) -> list[int]:
        """Keep ``member`` alive in ``group``; return the partitions assigned to it."""

    def acquire(self, group: str, partitions: Iterable[int], member: str) -> list[int]:
        """Take the leases of ``partitions`` that are free or expired; return those now held."""

    def release(self, group: str, partitions: Iterable[int], member: str) -> None:
        """Give up leases after a rebalance, so others take over at once."""

    def leave(self, group: str, member: str) -> None:
        """Leave the group on shutdown, giving up every lease."""

    def topics(self, prefix: str) -> list[str]:
        """The topics whose names start with ``prefix`` (sorted)."""

    def live_groups(self, prefix: str) -> list[str]:
        """The groups whose names start with ``prefix`` and that have live members now."""

    def partitions_of(self, topic: str) -> int:
        """The partition count of a user topic (one whose name does not start with
        ``docket.``): the count it has, or, for a topic that does not exist yet, the
        namespace's count, with which it is created now. Docket's own topics answer the
        namespace's count."""

    def size_group(self, group: str, partitions: int) -> None:
        """Make ``group`` own ``partitions`` partitions instead of the namespace's count (a
        group that consumes a user topic); call it before the group's first heartbeat."""

    def close(self) -> None: ...


class AppendWaiters:
    """The loops of this process waiting for an append (`Log.wait_for_append`): each waits
    on a future that the next append, or a timer, completes."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future[None]] = set()

    async def wait(self, seconds: float) -> None:
        """Return after the next `wake_all`, or after ``seconds``. A plain future and
        call_later, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancellation
        that races with the inner wait, and then the caller's task never stops."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.add(waiter)
        timer = loop.call_later(seconds, wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            # timed out: no append took it off (an idle engine's pollers would pile up
            # futures, hundreds a second, until this process appended something)
            self._waiting.discard(waiter)

    def wake_all(self) -> None:
        waiting, self._waiting = self._waiting, set()
        for waiter in waiting:
            wake(waiter)


def wake(waiter: asyncio.Future[None]) -> None:
    """Complete ``waiter`` unless it is done already (woken, timed out or cancelled)."""
    if not waiter.done():
        waiter.set_result(None)


class GroupCommit:
    """Coalesces appends made in the same event-loop tick into one log transaction.

    Clients start many workflows concurrently; without this each start would cost its own
    fsync'd transaction.
    """

    def __init__(self, log: Log) -> None:
        self._log = log
        self._pending: list[OutRecord] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._sync = False

    def append(self, records: Sequence[OutRecord], *, sync: bool = True) -> asyncio.Future[None]:
        """Append with the others of this tick; ``sync`` as in `Log.append` (the batch is
        flushed to disk if any of its appends asks for it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._flush)
        self._pending.extend(records)
        self._waiters.append(future)
        self._sync = self._sync or sync
        return future

    def _flush(self) -> None:
        records, waiters, sync = self._pending, self._waiters, self._sync
        self._pending, self._waiters, self._sync = [], [], False
        try:
            self._log.append(records, sync=sync)
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
