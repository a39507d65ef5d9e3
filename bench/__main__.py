"""``python -m bench WORKLOAD [options]``: one JSON line per run on stdout (see bench/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

from bench.common import cpu_s, emit, quiet_logs

WORKLOADS = ("hello", "chain", "timers", "replay", "signals", "query", "timer-index")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Docket benchmarks (peers' W1..W5). Prints one JSON line per run.",
    )
    p.add_argument("workload", choices=(*WORKLOADS, "all"))
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="workflows (default: hello 2000, chain 300, timers 500, replay 200); "
        "signals: signals per phase (2000); query: queries with --concurrency in flight (2000)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="workflows in flight (default: hello 64, chain/replay 32; timers: 64 starts; "
        "signals: 64 signal calls; query: 64 queries)",
    )
    p.add_argument(
        "--latency-n",
        type=int,
        default=None,
        help="sequential calls timed for latency (hello: 200 runs; query: 500 queries)",
    )
    p.add_argument(
        "--steps", type=int, default=10, help="chain/replay: steps per workflow; query: steps run"
    )
    p.add_argument("--sleep", type=float, default=2.0, help="timers: seconds each workflow sleeps")
    p.add_argument(
        "--rounds", type=int, default=10, help="replay: replay rounds (best and median reported)"
    )
    p.add_argument(
        "--partitions", type=int, default=None, help="partitions per topic (engine default: 4)"
    )
    p.add_argument(
        "--processors",
        type=int,
        default=1,
        help="engine processes sharing the partitions: the bench's own plus N-1 `docket run`s "
        "(processor, timers and worker each) on the same data dir or Kafka cluster",
    )
    p.add_argument(
        "--client-only",
        action="store_true",
        help="the bench process runs only the client: --processors `docket run`s do the work",
    )
    p.add_argument(
        "--spread",
        action="store_true",
        help="hello: each of the --processors N processes runs an engine and 1/N of the "
        "workflows and of the in-flight limit (an app deployed as N processes)",
    )
    p.add_argument(
        "--prefer-local",
        action="store_true",
        help="engines run with prefer_local: a workflow started without an ID runs in the "
        "process that started it (with --spread, each process's share stays in it)",
    )
    p.add_argument(
        "--worker-concurrency", type=int, default=200, help="steps a worker runs at once"
    )
    p.add_argument(
        "--cache-size",
        type=int,
        default=None,
        help="live workflow instances cached (engine default 10000; 0 = replay every activation)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one result")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the workload this many times, each in a fresh process (one line each)",
    )
    p.add_argument(
        "--data-root", default=None, help="where temporary data dirs go (default: $TMPDIR)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the data dir (its path goes to stderr)"
    )
    return p


async def _run(workload: str, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    if workload == "hello":
        from bench import hello as mod
    elif workload == "chain":
        from bench import chain as mod
    elif workload == "timers":
        from bench import timers as mod
    elif workload == "replay":
        from bench import replay as mod
    elif workload == "signals":
        from bench import signals as mod
    elif workload == "timer-index":
        from bench import timer_index as mod
    else:
        from bench import query as mod
    return await mod.run(args)


def _all(args: argparse.Namespace, argv: list[str]) -> int:
    """Each workload in its own process, so peak RSS and warm-up are per workload."""
    passthrough = []
    for flag in (
        "partitions",
        "processors",
        "worker_concurrency",
        "cache_size",
        "timeout",
        "repeat",
        "data_root",
    ):
        value = getattr(args, flag)
        if value is not None:
            passthrough += [f"--{flag.replace('_', '-')}", str(value)]
    status = 0
    for workload in WORKLOADS:
        done = subprocess.run([sys.executable, "-m", "bench", workload, *passthrough], check=False)
        status = status or done.returncode
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.spread and (args.workload != "hello" or args.processors < 2 or args.client_only):
        parser().error("--spread is for hello with --processors 2 or more, without --client-only")
    if args.spread and (args.concurrency or 64) < args.processors:
        parser().error("--spread needs --concurrency of at least --processors (one each)")
    quiet_logs()
    if args.workload == "all":
        return _all(args, argv)
    if args.repeat > 1:  # one process per run, so each line's peak RSS is its own
        once = [a for a in argv if not a.startswith("--repeat")]
        if "--repeat" in argv:
            i = argv.index("--repeat")
            once = argv[:i] + argv[i + 2 :]
        status = 0
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, "-m", "bench", *once], check=False)
            status = status or done.returncode
        return status
    t0, c0 = time.perf_counter(), cpu_s()
    figures, params = asyncio.run(_run(args.workload, args))
    emit(args.workload, figures, params, t0, c0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
