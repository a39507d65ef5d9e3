"""Docket's benchmark harness: ``python -m bench WORKLOAD [options]`` from the repo root.

Workloads mirror the peers' W1..W5 (``/work/shared/peers``) so ratios are comparable:

- ``hello``   W1: a one-step workflow; throughput with 64 in flight, then p50/p99
              start-to-result latency of sequential runs.
- ``chain``   W2: ten sequential steps per workflow; steps/s with 32 in flight.
- ``timers``  W3: many concurrent workflows each sleeping durably; fire lateness.
- ``replay``  W5-like: record histories, then replay them against the code; events/s.
- ``signals`` W4: 2000 signals into one execution, sequential then 64 in flight; signals/s
              and the time until a query sees them all.
- ``query``   p50/p99 of sequential queries to a running workflow, then queries/s with 64
              in flight.
- ``all``     every workload above, each in its own process (fresh RSS and warm-up).

Every run prints exactly one JSON line (figures, peak RSS, versions, parameters) on stdout
and never asserts: wrong results are counted in the line (``errors``) instead. Each run uses
a fresh temporary data directory, removed afterwards, and only the public API
(``docket.Engine``, ``engine.client``; ``docket.replay`` for replay).
"""
