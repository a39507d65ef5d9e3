"""Where one hello workflow's latency goes: ``python -m bench.timeline [--n 200]``.

Runs sequential hello workflows on a fresh embedded engine and marks each stage by wrapping
a few internals (log appends, the processor's batches and store writes, the worker's task,
the client's taking of a reply). Prints the median time from each mark to the next, in the
order they happen. A diagnostic, not a benchmark: the wrappers cost a little themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from typing import Any

import docket
from bench.apps import app, hello
from docket import client as client_module
from docket import worker as worker_module
from docket.log import embedded
from docket.streams import execution

WARMUP = 20
_marks: list[tuple[str, float]] = []


def _mark(name: str) -> None:
    _marks.append((name, time.perf_counter()))


def _instrument() -> None:
    append = embedded.EmbeddedLog.append

    def marked_append(self: Any, records: Any, commits: Any = None, **kw: Any) -> None:
        topics = ",".join(sorted({r.topic.rsplit(".", 1)[-1] for r in records}))
        flushed = "" if kw.get("sync", True) else " (no fsync)"
        _mark(f"append {topics}{' + offsets' if commits else ''}{flushed}: begins")
        append(self, records, commits, **kw)
        _mark("append: committed")

    poll_once = execution.ExecutionProcessor.poll_once

    async def marked_poll(self: Any) -> bool:
        started = time.perf_counter()
        worked = await poll_once(self)
        if worked:
            _marks.append(("processor batch: begins", started))
        return worked

    write_stores = execution.write_stores

    def marked_write(*args: Any) -> None:
        write_stores(*args)
        _mark("processor: state stores written")

    run_task = worker_module.Worker._run_task

    async def marked_task(self: Any, *args: Any) -> None:
        _mark("worker: task begins")
        await run_task(self, *args)
        _mark("worker: step done, reported")

    take_reply = client_module.Client.take_reply

    def marked_take_reply(self: Any, reply: dict[str, Any]) -> None:
        _mark(f"client: reply '{reply['kind']}' taken")
        take_reply(self, reply)

    embedded.EmbeddedLog.append = marked_append  # type: ignore[method-assign]
    execution.ExecutionProcessor.poll_once = marked_poll  # type: ignore[method-assign]
    execution.write_stores = marked_write
    worker_module.Worker._run_task = marked_task  # type: ignore[method-assign]
    client_module.Client.take_reply = marked_take_reply  # type: ignore[method-assign]


async def _run(n: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        async with docket.Engine(app, data_dir=data_dir) as engine:
            client = engine.client
            for i in range(WARMUP):
                await (await client.start(hello, f"warm{i}")).result()
            stages: dict[tuple[int, str], list[float]] = defaultdict(list)
            totals = []
            for i in range(n):
                _marks.clear()
                began = time.perf_counter()
                _mark("client: start() called")
                handle = await client.start(hello, f"t{i}")
                _mark("client: start() returned")
                await handle.result()
                _mark("client: result() returned")
                totals.append((time.perf_counter() - began) * 1000)
                previous = began
                for index, (name, at) in enumerate(sorted(_marks, key=lambda m: m[1])):
                    stages[(index, name)].append((at - previous) * 1000)
                    previous = at
    print(f"start to result, p50 over {n}: {statistics.median(totals):.3f} ms")
    print("median ms since the previous mark:")
    for (index, name), values in sorted(stages.items()):
        if len(values) > n // 2:  # the usual path (a stage seen in most runs)
            print(f"  {statistics.median(values):6.3f}  {index:2}. {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sequential workflows timed")
    args = parser.parse_args()
    _instrument()
    asyncio.run(_run(args.n))


if __name__ == "__main__":
    main()
