"""W3 timers: ``--n`` (500) concurrent workflows, each sleeping ``--sleep`` (2) seconds.

What is measured, per workflow (see ``bench.apps.sleeper``), all against the timer's due
time, which is exactly the fire time the engine recorded (activation clock + duration):

- ``lateness_*`` (the headline): the wall clock read by a recorded side effect that runs
  right after ``await ctx.sleep(...)`` returns, minus the due time. It is when the
  workflow code really observed the wake-up: timer-service scan delay + FireTimer append +
  processor poll + activation.
- ``processor_lateness_*``: ``ctx.now()`` after the sleep minus the due time: the
  processor's clock at the start of the batch that handled the fired timer (the same as
  above minus the time spent inside that batch before the workflow ran).
- ``client_lateness_*``: when the client got the result minus the due time (adds the
  completion's append, the reply and the client's read of the replies topic).

Starts go out with at most ``--concurrency`` (64, as the peers' W3) in flight, so the due
times are spread over the start phase (``start_phase_s``) in groups, like the peers'.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.apps import sleeper
from bench.common import bounded, engine, engine_params, pct, r3


def _summary(prefix: str, values: list[float]) -> dict[str, Any]:
    return {
        f"{prefix}p50_ms": r3(pct(values, 50)),
        f"{prefix}p99_ms": r3(pct(values, 99)),
        f"{prefix}max_ms": r3(max(values)) if values else None,
    }


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, secs, conc = args.n or 500, args.sleep, args.concurrency or 64
    late: list[float] = []
    late_proc: list[float] = []
    late_client: list[float] = []
    errors = 0
    async with engine(args) as eng:
        client = eng.client
        # warm-up: one short sleeper, so lazy initialisation is out of the way
        await (await client.start(sleeper, 0.05)).result(timeout=args.timeout)

        t0 = time.perf_counter()
        handles = await bounded(conc, range(n), lambda _: client.start(sleeper, secs))
        t_started = time.perf_counter()

        async def result(handle: Any) -> tuple[list[float], float]:
            value = await handle.result(timeout=args.timeout + secs)
            return value, time.time()

        outcomes = await asyncio.gather(
            *(result(h) for h in handles if not isinstance(h, BaseException)),
            return_exceptions=True,
        )
        wall = time.perf_counter() - t0
    errors += sum(1 for h in handles if isinstance(h, BaseException))
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            errors += 1
            continue
        (due, woke, observed), received = outcome
        late.append((observed - due) * 1000)
        late_proc.append((woke - due) * 1000)
        late_client.append((received - due) * 1000)
    figures = {
        "workflows": n,
        "sleep_s": secs,
        "start_concurrency": conc,
        "start_phase_s": r3(t_started - t0),
        "wall_s": r3(wall),
        **_summary("lateness_", late),
        **_summary("processor_lateness_", late_proc),
        **_summary("client_lateness_", late_client),
        "errors": errors,
    }
    params = {"n": n, "sleep_s": secs, "concurrency": conc, **engine_params(args)}
    return figures, params
