"""Pending timers live in RocksDB, ordered by due time: they cost disk, not memory."""

from __future__ import annotations

import struct
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
    return [_request(topics, f"wf-{i}", FAR_FUTURE_US + i, partitions=partitions)
            for i in range(start, start + count)]


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


def _request(topics: Topics, name: str, fire_at_us: int, *, cancel: bool = False,
             partitions: int = 1) -> OutRecord:
    fire = {"command_id": f"timer:{name}", "workflow_id": name, "ts_us": 0,
            "body": ("FireTimer", {"run_id": "r", "kind": "sleep", "seq": 1, "attempt": 0,
                                   "fire_at_us": fire_at_us})}
    request = {"timer_id": f"{name}/r/sleep/1/0", "workflow_id": name, "fire_at_us": fire_at_us,
               "command": b"" if cancel else COMMANDS.encode(fire), "cancel": cancel}
    return OutRecord(topics.timers, partition(name, partitions), name, TIMERS.encode(request))


def _fired(log: EmbeddedLog, topics: Topics) -> list[str]:
    return [COMMANDS.decode(r.value)["workflow_id"] for r in log.read(topics.commands, 0, 0, 1000)]


async def test_scans_skip_fired_timers_yet_miss_none_indexed_behind_them(tmp_path: Path) -> None:
    """Scans of the due index start after the timers fired so far (streams/timers.py: their
    tombstones would make every scan slower, `python -m bench timer-index`). A timer indexed
    later with an earlier due time, one cancelled, and a restart must not fool that."""
    topics = Topics("floor")
    log = EmbeddedLog(tmp_path, namespace="floor", partitions=1)
    now = SystemClock().now_us()
    log.append([_request(topics, f"early-{i}", now - 1_000_000 + i) for i in range(3)])
    log.append([_request(topics, "later", FAR_FUTURE_US), _request(topics, "dropped", FAR_FUTURE_US + 1)])

    def start() -> TimerService:
        return TimerService(log, topics, tmp_path / "state", SystemClock(), member_id("timers"))

    service = start()
    await service.group.sync()
    assert service.index_once() and service.fire_due() and not service.fire_due()
    assert _fired(log, topics) == ["early-0", "early-1", "early-2"]
    assert service.stores[0].first_due() == FAR_FUTURE_US
    # due before every timer fired so far, and before the first pending one
    log.append([_request(topics, "behind", now - 2_000_000),
                _request(topics, "dropped", FAR_FUTURE_US + 1, cancel=True)])
    assert service.index_once() and service.fire_due()
    assert _fired(log, topics)[3:] == ["behind"]
    assert service.stores[0].first_due() == FAR_FUTURE_US
    service.close()  # leaves the group: closes its stores

    again = start()  # a restart scans from the first key once more
    await again.group.sync()
    assert not again.index_once() and not again.fire_due()
    assert [key for key in again.stores[0].due.keys()] == [
        struct.pack(">Q", FAR_FUTURE_US) + b"later/r/sleep/1/0"
    ]
    again.close()
    log.close()
