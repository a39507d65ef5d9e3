"""Query latency and throughput against one running ``bench.apps.Progress`` execution that
has run ``--steps`` (10) steps and stays open (its live instance is what answers).

- ``latency_*_ms``: ``--latency-n`` (500) sequential ``handle.query`` calls, each timed
  from the call to the answer. A query is not recorded in history, but it does travel the
  log (a command in, a reply out), so this is the round trip of a read-only command.
- ``queries_per_s``: ``--n`` (2000) queries with at most ``--concurrency`` (64) in flight,
  over the wall time of the batch.
- ``closed_latency_*_ms``: after the run finishes, ``CLOSED_N`` sequential queries, which a
  closed run answers by replaying its history (a different, colder path).

Every answer must be ``--steps`` (how far the run got); anything else counts in ``errors``.
A few untimed queries come first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.apps import Progress
from bench.common import bounded, engine, engine_params, pct, r3

WARMUP = 5
CLOSED_N = 20


async def timed(handle: Any, m: int, expected: int) -> tuple[list[float], int]:
    """``m`` sequential queries: (latencies in ms, wrong or failed answers)."""
    lat: list[float] = []
    errors = 0
    for _ in range(m):
        s = time.perf_counter()
        try:
            answer = await handle.query(Progress.progress)
        except Exception:  # counted, not raised
            answer = None
        lat.append((time.perf_counter() - s) * 1000)
        errors += answer != expected
    return lat, errors


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc, m, k = args.n or 2000, args.concurrency or 64, args.latency_n or 500, args.steps
    async with engine(args) as eng:
        handle = await eng.client.start(Progress, k)
        errors, t_work = 0, time.perf_counter()
        while await handle.query(Progress.progress) != k:  # until it has done its work
            if time.perf_counter() - t_work > args.timeout:
                errors += 1
                break
            await asyncio.sleep(0.01)
        await timed(handle, WARMUP, k)  # untimed
        lat, wrong = await timed(handle, m, k)
        errors += wrong

        t0 = time.perf_counter()
        answers = await bounded(conc, range(n), lambda _: handle.query(Progress.progress))
        wall = time.perf_counter() - t0
        errors += sum(1 for a in answers if a != k)

        await handle.signal(Progress.finish)
        try:
            errors += await handle.result(timeout=args.timeout) != k
        except Exception:  # counted, not raised
            errors += 1
        closed, wrong = await timed(handle, CLOSED_N, k)
        errors += wrong
    figures = {
        "steps": k,
        "latency_n": m,
        "latency_p50_ms": r3(pct(lat, 50)),
        "latency_p99_ms": r3(pct(lat, 99)),
        "latency_mean_ms": r3(sum(lat) / len(lat)) if lat else None,
        "queries": n,
        "concurrency": conc,
        "wall_s": r3(wall),
        "queries_per_s": r3(n / wall),
        "closed_latency_n": CLOSED_N,
        "closed_latency_p50_ms": r3(pct(closed, 50)),
        "closed_latency_p99_ms": r3(pct(closed, 99)),
        "errors": errors,
    }
    params = {
        "n": n,
        "concurrency": conc,
        "latency_n": m,
        "steps": k,
        "warmup": WARMUP,
        **engine_params(args),
    }
    return figures, params
