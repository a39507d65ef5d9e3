"""Partition ownership for one role (processor, timers, a worker queue) in a consumer group.

Every ``sync`` heartbeats the member, releases partitions no longer assigned to it (after
the batch in hand, since sync runs between batches) and takes the leases of newly
assigned ones, calling ``on_assign`` so the owner can restore state before work starts.

A lease can pass while its old holder still has the partition's state store open: a process
paused past the session timeout (SIGSTOP, a debugger, a machine that slept) loses its leases
but keeps RocksDB's file lock until it runs again, notices, and lets go. The new owner keeps
the lease (that is what tells the old one it lost) and tries again at each sync, instead of
stopping its whole engine over a partition it will get a second later.

A partition can also stay a while after it is no longer assigned: a worker that runs steps
of it keeps it, and so its lease, until those steps are reported and their task offsets
committed (``settling``). Released at once, it would let the new owner read the tasks of
those steps from the committed offset and run them a second time, at the same time or
after they finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

from docket.errors import StateStoreLockedError
from docket.log.base import Log

log = logging.getLogger("docket")

SYNC_INTERVAL_S = 1.0
WARN_EVERY_S = 60.0


class PartitionGroup:
    def __init__(
        self,
        log_: Log,
        group: str,
        member: str,
        on_assign: Callable[[int], Awaitable[None]],
        on_revoke: Callable[[int], None],
        settling: Callable[[int], bool] = lambda partition: False,
    ) -> None:
        self.log = log_
        self.group = group
        self.member = member
        self.owned: set[int] = set()
        # owned, no longer assigned, kept while `settling` says work taken from it is unsettled
        self.leaving: set[int] = set()
        # leased, but the old holder still has the store open: partition -> (since, warned)
        self.waiting: dict[int, tuple[float, float]] = {}
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._settling = settling
        self.next_sync = 0.0

    async def sync(self) -> None:
        assigned = set(self.log.heartbeat(self.group, self.member))
        self.leaving = {p for p in self.owned - assigned if self._settling(p)}
        for partition in sorted(self.owned - assigned - self.leaving):
            self._revoke(partition)
        if gone := sorted(set(self.waiting) - assigned):  # the paused owner is back, say
            self.log.release(self.group, gone, self.member)
            log.info("%s: %s no longer waits for partitions %s", self.group, self.member, gone)
        held = set(self.log.acquire(self.group, sorted(assigned | self.leaving), self.member))
        for partition in sorted(self.owned - held):  # lost a lease we thought we had
            self._revoke(partition)
        self.waiting = {p: w for p, w in self.waiting.items() if p in held}
        for partition in sorted(held - self.owned):
            try:
                await self._on_assign(partition)
            except StateStoreLockedError as exc:
                self._still_waiting(partition, exc)
                continue
            if self.waiting.pop(partition, None) is not None:
                log.warning(
                    "%s: %s could open partition %d at last", self.group, self.member, partition
                )
            self.owned.add(partition)
            log.info("%s: %s took partition %d", self.group, self.member, partition)

    def _still_waiting(self, partition: int, exc: StateStoreLockedError) -> None:
        """Say so at once, then every WARN_EVERY_S: a process paused for good keeps it."""
        now = time.monotonic()
        since, warned = self.waiting.get(partition, (now, -WARN_EVERY_S))
        if now - warned >= WARN_EVERY_S:
            warned = now
            log.warning(
                "%s: %s holds the lease of partition %d but has waited %.0f s to open its "
                "state: %s. Its last owner lost the lease without closing it: is it paused "
                "(SIGSTOP, a debugger)? It lets go when it runs again (kill -CONT %s); "
                "kill -9 ends it. Trying again every %.0f s%s",
                self.group,
                self.member,
                partition,
                now - since,
                exc,
                exc.holder or "<pid>",
                SYNC_INTERVAL_S,
                " (the holder is this process: a store left open here is a bug in Docket)"
                if exc.holder == os.getpid()
                else "",
            )
        self.waiting[partition] = (since, warned)

    async def sync_if_due(self, now: float) -> None:
        """`sync` at most every SYNC_INTERVAL_S (``now`` is the event loop's time)."""
        if now >= self.next_sync:
            await self.sync()
            self.next_sync = now + SYNC_INTERVAL_S

    def _revoke(self, partition: int) -> None:
        self._on_revoke(partition)
        self.owned.discard(partition)
        self.leaving.discard(partition)
        self.log.release(self.group, [partition], self.member)
        log.info("%s: %s gave up partition %d", self.group, self.member, partition)

    def fenced(self) -> None:
        """Another member took a partition over: drop everything; the next sync re-acquires."""
        for partition in sorted(self.owned):
            self._on_revoke(partition)
        self.owned.clear()
        self.leaving.clear()

    def leave(self) -> None:
        for partition in sorted(self.owned):
            self._on_revoke(partition)
        self.owned.clear()
        self.leaving.clear()
        self.waiting.clear()
        self.log.leave(self.group, self.member)
