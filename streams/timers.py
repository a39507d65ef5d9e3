"""The timer service: the delay topic in, FireTimer commands out when they come due.

Due timers wait in RocksDB, keyed by (fire time, timer id), so a million pending timers cost
disk, not memory: the service only ever looks at the first key. Each cycle:

1. read new timer requests from the owned partitions of the timers topic and index them,
   with the topic offset as the checkpoint, in one WriteBatch;
2. take every timer due by now, append their commands to the commands topic in one
   transaction, then delete them in one WriteBatch. A crash between the two fires them
   again; the processor ignores a timer that already fired (FireTimer is idempotent);
3. sleep until the next due time, a new request, or the scan interval, whichever is first.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterator
from pathlib import Path

from rocksdict import Rdict, WriteBatch

from docket.clock import Clock
from docket.codec.records import COMMANDS, TIMERS
from docket.errors import SerializationError
from docket.faults import fault
from docket.log.base import Log, OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.state.store import open_rocksdb
from docket.streams.host import PartitionGroup

log = logging.getLogger("docket")

ROLE = "timers"
SCAN_INTERVAL_S = 0.05
MAX_FIRE = 5000
_BE = struct.Struct(">Q")
_CHECKPOINT = b"timers_offset"


class _TimerStore:
    def __init__(self, path: Path, partition: int) -> None:
        self.db: Rdict = open_rocksdb(path, partition, families=("due", "meta"))
        self.due = self.db.get_column_family("due")
        self.meta = self.db.get_column_family("meta")
        self.h_due = self.db.get_column_family_handle("due")
        self.h_meta = self.db.get_column_family_handle("meta")
        # No timer is indexed below this key, so scans seek to it. Fired timers are deleted
        # from the front of the index, and RocksDB keeps their tombstones until a
        # compaction reaches them: a scan from the first key would step over every timer
        # fired since (20 ms per scan after 100,000, several scans a cycle).
        self.floor = b""

    def index(self, batch: WriteBatch, key: bytes, command: bytes) -> None:
        batch.put(key, command, self.h_due)
        self.floor = min(self.floor, key)  # a timer due before the last fired one

    def pending(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, command) of every indexed timer, in due order."""
        for key, command in self.due.items(from_key=self.floor):
            assert isinstance(key, bytes) and isinstance(command, bytes)  # raw_mode
            yield key, command

    def fired(self, last: bytes) -> None:
        """Every timer up to ``last`` has been deleted."""
        self.floor = max(self.floor, last)

    def checkpoint(self) -> int:
        value = self.meta.get(_CHECKPOINT)
        return 0 if value is None else int(value)

    def close(self) -> None:
        """Close, and drop the column families (see PartitionStore.close)."""
        if "due" in self.__dict__:  # else closed already
            self.db.close()
            del self.due, self.meta, self.h_due, self.h_meta

    def first_due(self) -> int | None:
        for key, _ in self.pending():
            self.floor = key
            return int(_BE.unpack(key[:8])[0])
        return None


class TimerService:
    def __init__(
        self, log_: Log, topics: Topics, state_dir: Path, clock: Clock, member: str
    ) -> None:
        self.log = log_
        self.topics = topics
        self.state_dir = state_dir
        self.clock = clock
        self.stores: dict[int, _TimerStore] = {}
        self.offsets: dict[int, int] = {}
        self.group = PartitionGroup(log_, topics.group(ROLE), member, self._assign, self._revoke)
        self.wake = asyncio.Event()
        self.fired = 0

    async def _assign(self, partition: int) -> None:
        store = _TimerStore(self.state_dir / f"timers-p{partition}", partition)
        self.stores[partition] = store
        self.offsets[partition] = store.checkpoint()

    def _revoke(self, partition: int) -> None:
        store = self.stores.pop(partition, None)
        if store is not None:
            store.close()
        self.offsets.pop(partition, None)

    def close(self) -> None:
        self.group.leave()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await self.group.sync_if_due(loop.time())
            token = self.log.change_token()
            indexed = self.index_once()
            fired = self.fire_due()
            if indexed or fired:
                continue
            deadline = self.clock.now_us() + int(SCAN_INTERVAL_S * 1e6)
            first = min(
                (d for d in (s.first_due() for s in self.stores.values()) if d is not None),
                default=None,
            )
            if first is not None:
                deadline = min(deadline, first)
            self.wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline, self.wake))
            appended = asyncio.ensure_future(self.log.wait_for_append(token, SCAN_INTERVAL_S))
            await asyncio.wait({sleeper, appended}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            appended.cancel()
            await asyncio.gather(
                sleeper, appended, return_exceptions=True
            )  # let cancellations land

    def index_once(self) -> bool:
        """Step 1: move new timer requests into the due index."""
        worked = False
        for partition, store in self.stores.items():
            records = self.log.poll(
                self.topics.timers, partition, self.offsets[partition], MAX_FIRE
            )
            if not records:
                continue
            batch = WriteBatch(raw_mode=True)
            for record in records:
                try:
                    request = TIMERS.decode(record.value)
                except SerializationError as exc:
                    log.error(
                        "skipping undecodable timer at %s[%d] offset %d: %s",
                        self.topics.timers,
                        partition,
                        record.offset,
                        exc,
                    )
                    continue
                key = _BE.pack(request["fire_at_us"]) + request["timer_id"].encode()
                if request["cancel"]:  # no-op if it fired already
                    batch.delete(key, store.h_due)
                else:
                    store.index(batch, key, request["command"])
            self.offsets[partition] = records[-1].offset + 1
            batch.put(_CHECKPOINT, str(self.offsets[partition]).encode(), store.h_meta)
            store.db.write(batch)
            worked = True
        return worked

    def fire_due(self) -> bool:
        """Step 2: append the commands of due timers, then forget them."""
        now_us = self.clock.now_us()
        limit = _BE.pack(now_us + 1)
        due: list[tuple[_TimerStore, bytes, bytes]] = []
        for store in self.stores.values():
            for key, command in store.pending():
                if key >= limit or len(due) >= MAX_FIRE:
                    break
                due.append((store, key, command))
        if not due:
            return False
        records = []
        for _, key, command in due:
            try:
                workflow_id = COMMANDS.decode(command)["workflow_id"]
            except SerializationError as exc:  # dropped below with the rest: it can never fire
                log.error("dropping timer %r: its command cannot be decoded: %s", key[8:], exc)
                continue
            records.append(
                OutRecord(
                    self.topics.commands,
                    partition_of(workflow_id, self.log.partitions),
                    workflow_id,
                    command,
                )
            )
        self.log.append(records)
        fault("timer_after_fire_append")
        batches: dict[int, tuple[_TimerStore, WriteBatch]] = {}
        last: dict[int, bytes] = {}  # per store: due in key order, everything before goes too
        for store, key, _ in due:
            if id(store) not in batches:
                batches[id(store)] = (store, WriteBatch(raw_mode=True))
            batches[id(store)][1].delete(key, store.h_due)
            last[id(store)] = key
        for number, (store, batch) in batches.items():
            store.db.write(batch)
            store.fired(last[number])
        self.fired += len(due)
        return True
