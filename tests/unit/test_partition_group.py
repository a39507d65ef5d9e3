"""PartitionGroup's bookkeeping when a new owner cannot open a store yet (streams/host.py).

The log is a small stand-in that records calls: what is tested is which leases the group
keeps, releases and retries, not the log (tests/contract covers the real one)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from docket.errors import StateStoreLockedError
from docket.log.base import Log
from docket.streams import host
from docket.streams.host import PartitionGroup


class Leases:
    def __init__(self, assigned: list[int]) -> None:
        self.assigned = assigned
        self.released: list[list[int]] = []

    def heartbeat(self, group: str, member: str) -> list[int]:
        return list(self.assigned)

    def acquire(self, group: str, partitions: list[int], member: str) -> list[int]:
        return list(partitions)

    def release(self, group: str, partitions: list[int], member: str) -> None:
        self.released.append(list(partitions))


class Stores:
    """on_assign/on_revoke: partitions in ``locked`` raise as a store held elsewhere does."""

    def __init__(self, locked: set[int]) -> None:
        self.locked = locked
        self.opened: list[int] = []
        self.closed: list[int] = []

    async def assign(self, partition: int) -> None:
        if partition in self.locked:
            raise StateStoreLockedError(f"partition {partition} is held", holder=4242)
        self.opened.append(partition)

    def revoke(self, partition: int) -> None:
        self.closed.append(partition)


def _group(leases: Leases, stores: Stores) -> PartitionGroup:
    return PartitionGroup(cast(Log, leases), "g", "m1", stores.assign, stores.revoke)


def test_a_held_store_keeps_the_lease_and_is_tried_again(caplog: Any) -> None:
    leases, stores = Leases([0, 1]), Stores(locked={1})
    group = _group(leases, stores)
    with caplog.at_level(logging.WARNING, logger="docket"):
        asyncio.run(group.sync())
        asyncio.run(group.sync())
    assert group.owned == {0} and set(group.waiting) == {1}
    assert leases.released == []  # the lease is what tells the paused owner it lost
    warnings = [r.getMessage() for r in caplog.records if "has waited" in r.getMessage()]
    assert len(warnings) == 1 and "kill -CONT 4242" in warnings[0]  # once, not every sync

    stores.locked.clear()  # the old owner let go
    with caplog.at_level(logging.WARNING, logger="docket"):
        asyncio.run(group.sync())
    assert group.owned == {0, 1} and group.waiting == {} and stores.opened == [0, 1]
    assert "could open partition 1 at last" in caplog.text


def test_the_wait_is_logged_again_after_a_minute(
    caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(host.time, "monotonic", lambda: clock[0])
    group = _group(Leases([3]), Stores(locked={3}))
    with caplog.at_level(logging.WARNING, logger="docket"):
        for step in range(5):
            clock[0] = 1000.0 + step * 30  # 0, 30, 60, 90, 120 s
            asyncio.run(group.sync())
    waited = [r.getMessage() for r in caplog.records if "has waited" in r.getMessage()]
    assert [w.split("has waited ")[1].split(" s")[0] for w in waited] == ["0", "60", "120"]


def test_a_waited_for_partition_no_longer_assigned_is_released() -> None:
    leases, stores = Leases([0, 1]), Stores(locked={1})
    group = _group(leases, stores)
    asyncio.run(group.sync())
    leases.assigned = [0]  # the paused owner came back and the group gave 1 to it
    asyncio.run(group.sync())
    assert leases.released == [[1]] and group.waiting == {} and group.owned == {0}
    assert stores.closed == []  # it never opened 1, so nothing to close


def test_leaving_forgets_the_waits(caplog: Any) -> None:
    leases, stores = Leases([0, 1]), Stores(locked={1})
    group = _group(leases, stores)
    leases.leave = lambda group, member: None  # type: ignore[attr-defined]
    asyncio.run(group.sync())
    group.leave()
    assert group.waiting == {} and group.owned == set() and stores.closed == [0]
