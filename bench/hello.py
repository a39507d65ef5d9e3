"""W1 hello: a one-step workflow.

Throughput: ``--n`` workflows (default 2000), at most ``--concurrency`` (64) in flight, each
``start`` then ``result``; workflows/s over the wall time of the whole batch.
Latency: ``--latency-n`` (200) sequential runs, each timed from the call to ``start`` to
the return of ``result`` (ms). A few warm-up runs come first and are not timed.
"""

from __future__ import annotations

import time
from typing import Any

from bench.apps import hello
from bench.common import bounded, engine, engine_params, pct, r3

WARMUP = 5


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc, m = args.n or 2000, args.concurrency or 64, args.latency_n or 200
    errors = 0
    async with engine(args) as eng:
        client = eng.client

        async def one(name: str) -> str:
            handle = await client.start(hello, name)
            return await handle.result(timeout=args.timeout)

        for i in range(WARMUP):
            await one(f"warm{i}")

        names = [f"w{i}" for i in range(n)]
        t0 = time.perf_counter()
        results = await bounded(conc, names, one)
        wall = time.perf_counter() - t0
        errors += sum(1 for name, r in zip(names, results, strict=True) if r != f"Hello, {name}")

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
