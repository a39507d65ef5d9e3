"""The app of `test_crash_worker_timeout.py`, run by real `docket` processes as
``-A worker_timeout_app:app``: one workflow, whose one step is on its own task queue
(``remote``) with a 2 s start-to-close timeout and room for a second attempt.

Every run of the step first creates a marker file ``attempt<N>.<pid>.<ns>`` in the
directory named by ``WORKER_TIMEOUT_MARKERS``, so the test can count the runs of each
attempt, per worker process, across ``kill -9``. The first run of attempt 1 then holds on
for ``hold_s`` seconds (its worker is killed meanwhile); any other run returns at once,
with the attempt and the pid that ran it.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

import docket

app = docket.App("crash-worker-timeout")

MARKERS_ENV = "WORKER_TIMEOUT_MARKERS"
REMOTE = "remote"
START_TO_CLOSE = timedelta(seconds=2)


@app.step(
    task_queue=REMOTE,
    start_to_close_timeout=START_TO_CLOSE,
    retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2),
)
async def remote_step(hold_s: float) -> str:
    ctx = docket.step_context()
    markers = Path(os.environ[MARKERS_ENV])
    delivered_again = any(markers.glob(f"attempt{ctx.attempt}.*"))
    (markers / f"attempt{ctx.attempt}.{os.getpid()}.{time.time_ns()}").touch()
    if ctx.attempt == 1 and not delivered_again:
        await asyncio.sleep(hold_s)
    return f"attempt {ctx.attempt} in pid {os.getpid()}"


@app.workflow
async def remote_once(ctx: docket.WorkflowContext, hold_s: float) -> str:
    return await ctx.step(remote_step, hold_s)
