"""``--spread``: the load comes from every engine process, as in an app deployed as N
processes that each embed an engine and start workflows (gunicorn workers, say).

With ``--processors N`` alone the bench process runs the whole client and one engine, so it
saturates its core while the `docket run`s beside it wait for work. Here the bench starts
N-1 helper processes (this module, run with multiprocessing's ``spawn``), each with an
engine on the same data directory and its own client. All start on one signal; each runs
its share of the workflows with its share of the in-flight limit and reports when it
finished, and every engine stays up until all are done (each serves the others'
workflows on its partitions).
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
from bench.common import NAMESPACE, bounded

# one workflow of the workload: (client, name) -> whether its result was right
Job = Callable[[docket.Client, str], Awaitable[bool]]


@dataclass(frozen=True)
class Share:
    names: list[str]
    concurrency: int


def shares(n: int, concurrency: int, processes: int) -> list[Share]:
    """Split ``n`` workflows and the in-flight limit as evenly as they go."""
    return [
        Share(
            [f"w{i}" for i in range(p, n, processes)],
            concurrency // processes + (p < concurrency % processes),
        )
        for p in range(processes)
    ]


async def run_share(client: docket.Client, share: Share, job: Job) -> int:
    """Errors in this share (wrong results and failures)."""
    results = await bounded(share.concurrency, share.names, lambda name: job(client, name))
    return sum(1 for r in results if r is not True)


def _helper(
    data_dir: str, args: dict[str, Any], share: Share, job: Job, ready: Any, go: Any, out: Any
) -> None:
    async def main() -> None:
        async with docket.Engine(app, data_dir=Path(data_dir), namespace=NAMESPACE, **args) as eng:
            ready.put(None)
            await asyncio.to_thread(go["start"].wait)
            errors = await run_share(eng.client, share, job)
            out.put((time.time(), errors))
            await asyncio.to_thread(go["stop"].wait)  # the others may need our partitions

    asyncio.run(main())


class Helpers:
    """N-1 helper processes, each an engine and a client with its share."""

    def __init__(self, data_dir: Path, engine_args: dict[str, Any], parts: list[Share], job: Job):
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent has a running loop
        self._ready, self._out = ctx.Queue(), ctx.Queue()
        self._go = {"start": ctx.Event(), "stop": ctx.Event()}
        self._procs = [
            ctx.Process(
                target=_helper,
                args=(str(data_dir), engine_args, part, job, self._ready, self._go, self._out),
                daemon=True,
            )
            for part in parts
        ]
        for proc in self._procs:
            proc.start()

    async def until_ready(self, timeout: float = 60.0) -> None:
        for _ in self._procs:
            await asyncio.to_thread(self._ready.get, True, timeout)  # queue.Empty if not

    def start(self) -> None:
        self._go["start"].set()

    async def finished(self, timeout: float) -> tuple[float, int]:
        """The last helper's finish time (epoch s) and the helpers' errors; queue.Empty if
        one has not reported within ``timeout`` (it died, or hangs)."""
        reports = [await asyncio.to_thread(self._out.get, True, timeout) for _ in self._procs]
        return max((t for t, _ in reports), default=0.0), sum(e for _, e in reports)

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
