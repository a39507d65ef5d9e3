"""An engine process with ``prefer_local=True`` that starts workflows of its own: the app
the multi-process tests run two of on one data directory, and stop or kill.

    python tests/crash/prefer_local_app.py DATA_DIR NAME COUNT

It runs a full `docket.Engine` with ``prefer_local=True`` on ``DATA_DIR``, waits until the
processes on the data directory have split the partitions (each partition's processor,
timer and worker leases with one process, some of them with this one), starts ``COUNT``
workflows without an ID, writes their IDs one a line to ``NAME.ids`` beside ``DATA_DIR``
and prints ``READY``. It then waits for their results (``DONE`` once it has them all) and
runs on, serving its partitions, until killed, or until SIGTERM, which stops the engine
cleanly (``STOPPED``, exit code 0).

Every step attempt appends ``<workflow_id> <seq> <attempt> <pid>`` to the file named by
``STEP_LOG`` before its work, in one ``O_APPEND`` write: it survives ``kill -9``, so the
test counts where and how often each step began. ``STEP_S`` and ``SLEEP_S`` set how long
the first step (of the second half of the workflows; the first half's is quick, and their
tasks come first: see tests/crash/test_crash_task_prefix.py) and the durable sleep last.
``nap``, a workflow with no step, is for a client elsewhere to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import docket

app = docket.App("prefer-local-procs")

GROUPS = ("processor", "timers", "worker.default")
PARTITIONS = 4  # the Settings default


@app.step
async def record(index: int, seconds: float) -> int:
    ctx = docket.step_context()
    line = f"{ctx.workflow_id} {ctx.seq} {ctx.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ["STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    await asyncio.sleep(seconds)
    return index


@app.workflow
async def step_sleep_steps(ctx: docket.WorkflowContext, step_s: float, sleep_s: float) -> int:
    """A slow step, a durable sleep, then two quick steps: returns 1 + 2 + 3."""
    total = await ctx.step(record, 1, step_s)
    await ctx.sleep(sleep_s)
    total += await ctx.step(record, 2, 0.0)
    return total + await ctx.step(record, 3, 0.0)


@app.workflow
async def nap(ctx: docket.WorkflowContext, sleep_s: float) -> str:
    """A durable sleep and no step: it needs its partition's processor and timers only."""
    await ctx.sleep(sleep_s)
    return "rested"


def split(data_dir: Path) -> bool:
    """Each partition's leases are with one process in every group, some with this one."""
    uri = f"file:{data_dir / 'log.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT grp, partition, owner FROM leases").fetchall()
    pids: dict[int, set[str]] = {}
    for group, partition, owner in rows:
        if group.removeprefix("docket.default.") in GROUPS:
            pids.setdefault(partition, set()).add(owner.split(":")[1])
    complete = len(rows) == len(GROUPS) * PARTITIONS and len(pids) == PARTITIONS
    mine = {str(os.getpid())}
    return complete and all(len(p) == 1 for p in pids.values()) and mine in pids.values()


async def main(data_dir: Path, name: str, count: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    step_s = float(os.environ.get("STEP_S", "1.0"))
    sleep_s = float(os.environ.get("SLEEP_S", "1.0"))
    async with docket.Engine(app, data_dir=data_dir, prefer_local=True) as engine:
        while not split(data_dir):
            await asyncio.sleep(0.02)
        handles = [  # the first half with a quick first step: soon in their sleep
            await engine.client.start(step_sleep_steps, step_s * (i >= count // 2), sleep_s)
            for i in range(count)
        ]
        ids = data_dir.parent / f"{name}.ids"
        ids.write_text("".join(f"{h.workflow_id}\n" for h in handles))
        print("READY", flush=True)
        results = asyncio.gather(*(h.result() for h in handles))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([results, stopping], return_when=asyncio.FIRST_COMPLETED)
        if results.done():
            print("DONE", results.result(), flush=True)
        else:
            results.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await results
        await stopping
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
