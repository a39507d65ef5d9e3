"""W2 chain: ``--steps`` (10) sequential steps per workflow, ``--n`` (300) workflows, at most
``--concurrency`` (32) in flight; steps/s (and workflows/s) over the batch's wall time."""

from __future__ import annotations

import time
from typing import Any

from bench.apps import chain
from bench.common import bounded, engine, engine_params, r3

WARMUP = 3


async def run_chains(eng: Any, n: int, conc: int, steps: int, timeout: float) -> tuple[float, int]:
    """Run ``n`` chains; return (wall seconds, wrong results)."""
    client = eng.client

    async def one(_: int) -> int:
        handle = await client.start(chain, steps)
        return await handle.result(timeout=timeout)

    t0 = time.perf_counter()
    results = await bounded(conc, range(n), one)
    wall = time.perf_counter() - t0
    return wall, sum(1 for r in results if r != steps)


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc, k = args.n or 300, args.concurrency or 32, args.steps
    async with engine(args) as eng:
        await run_chains(eng, WARMUP, WARMUP, k, args.timeout)
        wall, errors = await run_chains(eng, n, conc, k, args.timeout)
    figures = {
        "workflows": n,
        "steps_per_workflow": k,
        "concurrency": conc,
        "wall_s": r3(wall),
        "workflows_per_s": r3(n / wall),
        "steps_per_s": r3(n * k / wall),
        "errors": errors,
    }
    params = {"n": n, "concurrency": conc, "steps": k, "warmup": WARMUP, **engine_params(args)}
    return figures, params
