"""``--spread``: the load comes from every engine process, as in an app deployed as N
processes that each embed an engine and start workflows (gunicorn workers, say).

With ``--processors N`` alone the bench process runs the whole client and one engine, so it
saturates its core while the `docket run`s beside it wait for work. Here the bench starts
N-1 helper processes (this module, run with multiprocessing's ``spawn``), each with an
engine on the same data directory and its own client. All start on one signal; each keeps
its share of the in-flight limit busy, taking the next workflow from a counter they
share, as a load balancer hands the next request to a process with room for it. So the
run ends when the work does, not when the slower process gets through a fixed half (a
fixed split left one process idle for the last 5-10% of the run). Every engine stays up
until all are done (each serves the others' workflows on its partitions).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docket
from bench.apps import app
from bench.common import NAMESPACE

# one workflow of the workload: (client, name) -> whether its result was right
Job = Callable[[docket.Client, str], Awaitable[bool]]


@dataclass(frozen=True)
class Share:
    """One process's part: ``concurrency`` runners taking workflows from the shared
    ``counter`` until ``n`` are taken."""

    concurrency: int
    n: int
    counter: Any  # a multiprocessing Value("q") shared by every process of the run


def concurrencies(concurrency: int, processes: int) -> list[int]:
    """Split the in-flight limit as evenly as it goes."""
    return [concurrency // processes + (p < concurrency % processes) for p in range(processes)]


async def run_share(client: docket.Client, share: Share, job: Job) -> tuple[int, int]:
    """How many workflows this process took, and their errors (wrong results, failures)."""

    def take() -> int | None:
        with share.counter.get_lock():
            index = int(share.counter.value)
            if index >= share.n:
                return None
            share.counter.value = index + 1
        return index

    taken = errors = 0

    async def runner() -> None:
        nonlocal taken, errors
        while (index := take()) is not None:
            taken += 1
            try:
                right = await job(client, f"w{index}")
            except Exception:  # counted, not raised
                right = False
            errors += right is not True

    await asyncio.gather(*(runner() for _ in range(share.concurrency)))
    return taken, errors


def _helper(
    data_dir: str, args: dict[str, Any], share: Share, job: Job, ready: Any, go: Any, out: Any
) -> None:
    async def main() -> None:
        async with docket.Engine(app, data_dir=Path(data_dir), namespace=NAMESPACE, **args) as eng:
            ready.put(None)
            await asyncio.to_thread(go["start"].wait)
            taken, errors = await run_share(eng.client, share, job)
            out.put((time.time(), taken, errors))
            await asyncio.to_thread(go["stop"].wait)  # the others may need our partitions

    asyncio.run(main())


class Helpers:
    """N-1 helper processes, each an engine and a client with its share; ``shares[0]`` is
    the bench process's own."""

    def __init__(
        self, data_dir: Path, engine_args: dict[str, Any], n: int, concurrency: list[int], job: Job
    ):
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent has a running loop
        self._ready, self._out = ctx.Queue(), ctx.Queue()
        self._go = {"start": ctx.Event(), "stop": ctx.Event()}
        counter = ctx.Value("q", 0)
        self.shares = [Share(c, n, counter) for c in concurrency]
        self._procs = [
            ctx.Process(
                target=_helper,
                args=(str(data_dir), engine_args, share, job, self._ready, self._go, self._out),
                daemon=True,
            )
            for share in self.shares[1:]
        ]
        for proc in self._procs:
            proc.start()

    async def until_ready(self, timeout: float = 60.0) -> None:
        for _ in self._procs:
            await asyncio.to_thread(self._ready.get, True, timeout)  # queue.Empty if not

    def start(self) -> None:
        self._go["start"].set()

    async def finished(self, timeout: float) -> tuple[float, int, int]:
        """The last helper's finish time (epoch s), how many workflows the helpers took and
        their errors; queue.Empty if one has not reported within ``timeout`` (it died, or
        hangs)."""
        reports = [await asyncio.to_thread(self._out.get, True, timeout) for _ in self._procs]
        return (
            max((t for t, _, _ in reports), default=0.0),
            sum(n for _, n, _ in reports),
            sum(e for _, _, e in reports),
        )

    def __enter__(self) -> Helpers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Let the helpers' engines stop (killed if they do not within 30 s)."""
        self._go["stop"].set()
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
