"""Pending timers live in RocksDB, ordered by due time: they cost disk, not memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from docket.clock import SystemClock
from docket.codec.records import COMMANDS, TIMERS
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog, member_id
from docket.log.partitioner import partition
from docket.log.topics import Topics
from docket.streams.timers import TimerService

PENDING = 100_000
FAR_FUTURE_US = 4_102_444_800_000_000  # 2100-01-01


def _requests(topics: Topics, partitions: int, start: int, count: int) -> list[OutRecord]:
    records = []
    for i in range(start, start + count):
        workflow_id = f"wf-{i}"
        fire = {"command_id": f"timer:{i}", "workflow_id": workflow_id, "ts_us": 0,
                "body": ("FireTimer", {"run_id": "r", "kind": "sleep", "seq": 1, "attempt": 0,
                                       "fire_at_us": FAR_FUTURE_US + i})}
        request = {"timer_id": f"{workflow_id}/r/sleep/1/0", "workflow_id": workflow_id,
                   "fire_at_us": FAR_FUTURE_US + i, "command": COMMANDS.encode(fire)}
        records.append(OutRecord(topics.timers, partition(workflow_id, partitions), workflow_id,
                                 TIMERS.encode(request)))
    return records


async def test_a_hundred_thousand_pending_timers_hold_no_python_memory(tmp_path: Path) -> None:
    topics = Topics("scale")
    log = EmbeddedLog(tmp_path, namespace="scale", partitions=4)
    for start in range(0, PENDING, 20_000):
        log.append(_requests(topics, 4, start, 20_000))
    service = TimerService(log, topics, tmp_path / "state", SystemClock(), member_id("timers"))
    await service.group.sync()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        while service.index_once():
            pass
        assert not service.fire_due(), "none of them is due"
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    indexed = sum(sum(1 for _ in store.due.keys()) for store in service.stores.values())
    assert indexed == PENDING
    # per pending timer, the service keeps nothing in Python: a handful of bytes at most
    assert after - before < 2_000_000, f"{after - before} bytes of Python memory for {PENDING} timers"
    assert sum(service.offsets.values()) == PENDING  # the checkpoint covers them all
    first = min(d for d in (s.first_due() for s in service.stores.values()) if d is not None)
    assert first == FAR_FUTURE_US
    service.close()
    for partition_number in list(service.stores):
        service.stores.pop(partition_number).db.close()
    log.close()
