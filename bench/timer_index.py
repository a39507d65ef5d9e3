"""``timer-index``: what the timer service's scans cost once many timers have fired.

The service keeps due timers in RocksDB keyed by due time, and deletes each one it fires.
RocksDB keeps a deleted key's tombstone until a compaction reaches it, so a scan that
starts at the first key of the index steps over every timer fired since. This drives the
real `TimerService` on the embedded log, without an engine:

- ``fire_per_s``: ``--n`` (200,000) timer requests, all due, indexed and fired by the
  service's own cycle (index, fire) until none is left.
- ``idle_cycle_ms`` (the headline): then one idle cycle (index, fire, and the first due
  time of every partition, as `TimerService.run` does before it sleeps), median of 200,
  with one timer still pending far in the future. A scan that stepped over the fired
  timers' tombstones would grow with ``--n``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.common import r3, temp_data_dir
from docket.clock import SystemClock
from docket.codec.records import COMMANDS, TIMERS
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog, member_id
from docket.log.partitioner import partition
from docket.log.topics import Topics
from docket.streams.timers import TimerService

PARTITIONS = 4
FAR_FUTURE_US = 4_102_444_800_000_000  # 2100-01-01


def _requests(topics: Topics, start: int, count: int, fire_at_us: int) -> list[OutRecord]:
    records = []
    for i in range(start, start + count):
        workflow_id = f"wf-{i}"
        fire = {
            "command_id": f"timer:{i}",
            "workflow_id": workflow_id,
            "ts_us": 0,
            "body": (
                "FireTimer",
                {"run_id": "r", "kind": "sleep", "seq": 1, "attempt": 0, "fire_at_us": fire_at_us},
            ),
        }
        request = {
            "timer_id": f"{workflow_id}/r/sleep/1/0",
            "workflow_id": workflow_id,
            "fire_at_us": fire_at_us + i,
            "command": COMMANDS.encode(fire),
            "cancel": False,
        }
        key = partition(workflow_id, PARTITIONS)
        records.append(OutRecord(topics.timers, key, workflow_id, TIMERS.encode(request)))
    return records


def _idle_cycle(service: TimerService) -> float:
    t = time.perf_counter()
    service.index_once()
    service.fire_due()
    for store in service.stores.values():
        store.first_due()
    return time.perf_counter() - t


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n = args.n or 200_000
    topics = Topics("bench")
    with temp_data_dir(args) as data_dir:
        log = EmbeddedLog(data_dir, namespace="bench", partitions=PARTITIONS)
        due_us = SystemClock().now_us() - 60_000_000
        for start in range(0, n, 20_000):
            log.append(_requests(topics, start, min(20_000, n - start), due_us))
        log.append(_requests(topics, n, 1, FAR_FUTURE_US))
        service = TimerService(log, topics, data_dir / "state", SystemClock(), member_id("timers"))
        await service.group.sync()
        t0 = time.perf_counter()
        while service.index_once() | service.fire_due():
            pass
        fire_s = time.perf_counter() - t0
        cycles = [_idle_cycle(service) for _ in range(200)]
        fired, pending = service.fired, sum(
            1 for store in service.stores.values() for _ in store.due.keys()
        )
        service.close()
        for number in list(service.stores):
            service.stores.pop(number).db.close()
        log.close()
    figures = {
        "timers": n,
        "fire_per_s": round(n / fire_s),
        "idle_cycle_ms": r3(statistics.median(cycles) * 1e3),
        "idle_cycle_max_ms": r3(max(cycles) * 1e3),
        "errors": (fired != n) + (pending != 1),
    }
    return figures, {"n": n, "partitions": PARTITIONS}
