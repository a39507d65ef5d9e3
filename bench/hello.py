"""W1 hello: a one-step workflow.

Throughput: ``--n`` workflows (default 2000), at most ``--concurrency`` (64) in flight, each
``start`` then ``result``; workflows/s over the wall time of the whole batch.
Latency: ``--latency-n`` (200) sequential runs, each timed from the call to ``start`` to
the return of ``result`` (ms). A few warm-up runs come first and are not timed.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import docket
from bench.apps import hello
from bench.common import bounded, engine, engine_kwargs, engine_params, pct, r3, until_served
from bench.spread import Helpers, concurrencies, run_share

WARMUP = 5


async def one_right(timeout: float, client: docket.Client, name: str) -> bool:
    """One hello workflow from start to result; whether the result was right."""
    handle = await client.start(hello, name)
    return await handle.result(timeout=timeout) == f"Hello, {name}"


async def _spread(args: Any, eng: docket.Engine, helpers: Helpers) -> tuple[float, int]:
    """Throughput with the load spread over --processors engine+client processes
    (spread.py); the helpers stay up until the caller stops them."""
    job = functools.partial(one_right, args.timeout)
    await helpers.until_ready()
    await until_served(eng.settings.data_dir, args.processors, eng.settings.partitions)
    t0 = time.time()
    helpers.start()
    taken, errors = await run_share(eng.client, helpers.shares[0], job)
    own_end = time.time()
    helpers_end, helpers_took, helper_errors = await helpers.finished(args.timeout)
    missing = helpers.shares[0].n - taken - helpers_took  # none, unless the counter is broken
    return max(own_end, helpers_end) - t0, errors + helper_errors + abs(missing)


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc, m = args.n or 2000, args.concurrency or 64, args.latency_n or 200
    errors = 0
    async with engine(args) as eng, contextlib.AsyncExitStack() as stack:
        client = eng.client

        async def one(name: str) -> str:
            handle = await client.start(hello, name)
            return await handle.result(timeout=args.timeout)

        for i in range(WARMUP):
            await one(f"warm{i}")

        if args.spread:  # their engines serve half the partitions until the end
            job = functools.partial(one_right, args.timeout)
            helpers = stack.enter_context(
                Helpers(
                    eng.settings.data_dir,
                    engine_kwargs(args),
                    n,
                    concurrencies(conc, args.processors),
                    job,
                )
            )
            wall, errors = await _spread(args, eng, helpers)
        else:
            names = [f"w{i}" for i in range(n)]
            t0 = time.perf_counter()
            results = await bounded(conc, names, one)
            wall = time.perf_counter() - t0
            errors += sum(
                1 for name, r in zip(names, results, strict=True) if r != f"Hello, {name}"
            )

        lat: list[float] = []
        for i in range(m):
            s = time.perf_counter()
            try:
                r = await one(f"lat{i}")
            except Exception:  # counted, not raised
                r = None
            lat.append((time.perf_counter() - s) * 1000)
            errors += r != f"Hello, lat{i}"
    figures = {
        "workflows": n,
        "concurrency": conc,
        "wall_s": r3(wall),
        "workflows_per_s": r3(n / wall),
        "latency_n": m,
        "latency_p50_ms": r3(pct(lat, 50)),
        "latency_p99_ms": r3(pct(lat, 99)),
        "latency_mean_ms": r3(sum(lat) / len(lat)) if lat else None,
        "errors": errors,
    }
    params = {"n": n, "concurrency": conc, "latency_n": m, "warmup": WARMUP, **engine_params(args)}
    return figures, params
