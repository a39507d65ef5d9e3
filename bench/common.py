"""Shared plumbing: a fresh engine on a temporary data dir, percentiles, the JSON line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any, TypeVar

import docket
from bench.apps import app

T = TypeVar("T")

NAMESPACE = "bench"


def pct(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (the peers' definition)."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, math.ceil(p / 100.0 * len(s)) - 1)
    return s[k]


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def loadavg() -> float | None:
    """The 1-minute load average: on a 2-core machine anything near 2 means the figures
    were measured next to other work (compare only within one quiet run)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _version(name: str) -> str | None:
    try:
        return pkg_version(name)
    except PackageNotFoundError:
        return None


def git_state() -> dict[str, Any] | None:
    """The commit of the Docket source measured, and whether docket/ or streams/ had
    uncommitted changes (figures are only comparable on the same code)."""
    root = Path(docket.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "docket", "streams"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "dirty": bool(dirty)}


def versions() -> dict[str, Any]:
    return {
        "docket": docket.__version__,
        "git": git_state(),
        "python": platform.python_version(),
        "fastavro": _version("fastavro"),
        "rocksdict": _version("rocksdict"),
        "sqlite": sqlite3.sqlite_version,
    }


def emit(
    workload: str, figures: dict[str, Any], params: dict[str, Any], t0: float, c0: float
) -> dict[str, Any]:
    line = {
        "workload": workload,
        # DOCKET_BOOTSTRAP_SERVERS puts the engine (and so the bench) on Kafka
        "backend": "kafka" if os.environ.get("DOCKET_BOOTSTRAP_SERVERS") else "embedded",
        **figures,
        "peak_rss_mb": peak_rss_mb(),
        "cpu_s": r3(cpu_s() - c0),
        "bench_elapsed_s": r3(time.perf_counter() - t0),
        "python": platform.python_version(),
        "loadavg_1m_at_end": loadavg(),
        "versions": versions(),
        "params": params,
    }
    print(json.dumps(line), flush=True)
    return line


@contextlib.contextmanager
def temp_data_dir(args: Any) -> Iterator[Path]:
    """A new temporary data directory, removed afterwards (unless ``--keep``)."""
    root = Path(args.data_root) if args.data_root else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="docket-bench-", dir=root))
    try:
        yield data_dir
    finally:
        if args.keep:
            print(f"# kept data dir {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def engine_kwargs(args: Any) -> dict[str, Any]:
    """The bench's engine settings, for any process that runs one (see spread.py)."""
    return {
        "partitions": args.partitions,
        "max_concurrency": args.worker_concurrency,
        "workflow_cache_size": args.cache_size,
        "prefer_local": getattr(args, "prefer_local", False),
    }


def make_engine(args: Any, data_dir: Path) -> docket.Engine:
    client_only = getattr(args, "client_only", False)
    eng = docket.Engine(
        app,
        data_dir=data_dir,
        namespace=NAMESPACE,
        processor=not client_only,
        worker=not client_only,
        **engine_kwargs(args),
    )
    args.effective_partitions = eng.settings.partitions  # what the engine really uses
    return eng


@contextlib.asynccontextmanager
async def engine(args: Any) -> AsyncIterator[docket.Engine]:
    """A fresh engine on a new temporary data directory, removed afterwards; with
    ``--processors N``, N-1 more engine processes share its partitions (N of them, and this
    process only a client, with ``--client-only``; none, with ``--spread``: the workload
    starts its own, see spread.py)."""
    client_only = getattr(args, "client_only", False)
    others = 0 if args.spread else args.processors - (0 if client_only else 1)
    with temp_data_dir(args) as data_dir:
        async with make_engine(args, data_dir) as eng:
            with more_engines(args, data_dir, others):
                if others:
                    await until_served(data_dir, args.processors, eng.settings.partitions)
                yield eng


@contextlib.contextmanager
def more_engines(args: Any, data_dir: Path, count: int) -> Iterator[None]:
    """``count`` `docket run` processes for the bench app on the bench's data dir (and on
    Kafka when DOCKET_BOOTSTRAP_SERVERS is set), stopped with SIGTERM afterwards."""
    env = {**os.environ, "DOCKET_DATA_DIR": str(data_dir), "DOCKET_NAMESPACE": NAMESPACE}
    command = [sys.executable, "-m", "docket.cli", "run", "-A", "bench.apps:app"]
    command += ["--concurrency", str(args.worker_concurrency)]
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(command, env=env, cwd=root, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until_served(
    data_dir: Path, processes: int, partitions: int, timeout: float = 60.0
) -> None:
    """Wait until ``processes`` processors hold all ``partitions`` between them (the
    other processes started): read off the embedded log's lease table; on Kafka, give them
    a few seconds."""
    if os.environ.get("DOCKET_BOOTSTRAP_SERVERS"):
        await asyncio.sleep(5)
        return
    group = f"docket.{NAMESPACE}.processor"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(data_dir / "log.sqlite3")) as db:
            query = "SELECT COUNT(DISTINCT owner), COUNT(*) FROM leases WHERE grp=?"
            owners, leased = db.execute(query, (group,)).fetchone()
            if owners >= processes and leased >= partitions:
                return
        await asyncio.sleep(0.1)


async def bounded(
    concurrency: int, items: Iterable[T], fn: Callable[[T], Awaitable[Any]]
) -> list[Any]:
    """Run ``fn`` over ``items`` with at most ``concurrency`` in flight; results in order.

    ``concurrency`` runners take the next item as each finishes one, as a client with that
    many connections would: a task per item, parked on a semaphore, would keep thousands
    of coroutines alive for the garbage collector to walk in the engine's process (a full
    collection took 60-90 ms with 10,000 of them). Errors are returned in place of results
    (a benchmark counts them, it does not stop)."""
    todo = list(items)
    results: list[Any] = [None] * len(todo)
    queue = iter(enumerate(todo))

    async def runner() -> None:
        for index, item in queue:  # shared: each runner takes the next one
            try:
                results[index] = await fn(item)
            except Exception as exc:  # counted by the caller
                results[index] = exc

    await asyncio.gather(*(runner() for _ in range(min(concurrency, len(todo)))))
    return results


def engine_params(args: Any) -> dict[str, Any]:
    return {
        "partitions": getattr(args, "effective_partitions", args.partitions),
        "processors": args.processors,
        "client_only": getattr(args, "client_only", False),
        "spread": args.spread,
        "prefer_local": getattr(args, "prefer_local", False),
        "worker_concurrency": args.worker_concurrency,
        "cache_size": 10_000 if args.cache_size is None else args.cache_size,
    }


def quiet_logs() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
