"""W4 signals: ``--n`` (2000) signals into one execution of ``bench.apps.SignalSink`` (a
class workflow whose ``@docket.signal`` handler appends to a list), in two phases, each
into a fresh execution so neither inherits the other's history:

- ``seq_*``: one ``await handle.signal(...)`` after another, as the peers' W4 sends them;
  each call returns once the signal is recorded, so its p50/p99 is a signal's round trip.
- ``conc_*``: at most ``--concurrency`` (64) ``handle.signal`` calls in flight, which is as
  fast as one client can push signals into one workflow.

``signals_per_s`` = n / time from the first call to the last return. Then ``count`` is
queried until it answers n (``query_ok``): ``until_query_s`` is the time from the first
signal to that answer (``query_ms``: from the last signal's return), ``query_attempts`` how
many queries it took (1 expected: a query sees every signal recorded before it). The run is
still open then, so the live instance answers; a ``close`` signal ends it and it returns
what arrived, which must be every signal exactly once (and, sent one at a time, in order):
anything else counts in ``errors``. ``closed_query_ms`` is one more query after that, which
a closed run answers by replaying its whole history. One small execution comes first,
untimed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.apps import SignalSink
from bench.common import bounded, engine, engine_params, pct, r3

WARMUP = 5


async def phase(eng: Any, n: int, conc: int, timeout: float) -> dict[str, Any]:
    """Send ``n`` signals to a new execution, ``conc`` at a time (1 = sequential awaits)."""
    handle = await eng.client.start(SignalSink)
    await handle.query(SignalSink.count)  # the execution is live before the clock starts
    lat: list[float] = []

    async def send(i: int) -> None:
        s = time.perf_counter()
        await handle.signal(SignalSink.add, i)
        lat.append((time.perf_counter() - s) * 1000)

    errors = 0
    t0 = time.perf_counter()
    if conc == 1:
        for i in range(n):
            try:
                await send(i)
            except Exception:  # counted, not raised
                errors += 1
    else:
        errors += sum(1 for r in await bounded(conc, range(n), send) if r is not None)
    sent = time.perf_counter() - t0

    attempts, count, deadline = 0, -1, time.perf_counter() + timeout
    while count < n and time.perf_counter() < deadline:
        attempts += 1
        count = await handle.query(SignalSink.count)
        if count < n:
            await asyncio.sleep(0.01)
    until_query = time.perf_counter() - t0
    try:
        await handle.signal(SignalSink.close)
        items = await handle.result(timeout=timeout)
    except Exception:  # counted, not raised
        items = None
    s = time.perf_counter()
    try:
        closed_count = await handle.query(SignalSink.count)  # answered by replaying history
    except Exception:  # counted, not raised
        closed_count = -1
    closed_ms = (time.perf_counter() - s) * 1000
    expected = list(range(n))
    ok = items == expected if conc == 1 else items is not None and sorted(items) == expected
    return {
        "send_wall_s": r3(sent),
        "signals_per_s": r3(n / sent),
        "signal_p50_ms": r3(pct(lat, 50)),
        "signal_p99_ms": r3(pct(lat, 99)),
        "query_count": count,
        "query_ok": count == n,
        "query_attempts": attempts,
        "until_query_s": r3(until_query),
        "query_ms": r3((until_query - sent) * 1000),
        "history_events": len(await handle.history()),
        "closed_query_ms": r3(closed_ms),
        "errors": errors + (count != n) + (not ok) + (closed_count != n),
    }


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc = args.n or 2000, args.concurrency or 64
    async with engine(args) as eng:
        await phase(eng, WARMUP, 1, args.timeout)
        seq = await phase(eng, n, 1, args.timeout)
        par = await phase(eng, n, conc, args.timeout)
    figures = {
        "signals": n,
        "concurrency": conc,
        **{f"seq_{k}": v for k, v in seq.items() if k != "errors"},
        **{f"conc_{k}": v for k, v in par.items() if k != "errors"},
        "errors": seq["errors"] + par["errors"],
    }
    params = {"n": n, "concurrency": conc, "warmup": WARMUP, **engine_params(args)}
    return figures, params
