"""A client in another process reads what its handle was told (docket/handles.py).

The engine appends a batch, replies included, and writes its state stores just after; a
client elsewhere reads the reply from the log and `describe()`/`history()` from the
stores, so it could ask in between: a run it had just started was not found (1 in 300
tries, by hand), a run whose result it had was still running. Here the engine pauses
0.3 s at that point of every batch (``DOCKET_FAULT_PAUSE_S``), which holds the window open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docket
from docket.reader import StateReader
from tests.engine.test_cli import HERE, _processor_owners, _until
from tests.engine.test_prefer_local import PARTITIONS, app, hello


def _slow_store_engine(data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    env.update(
        DOCKET_DATA_DIR=str(data_dir),
        DOCKET_FAULT="after_append_before_writebatch",
        DOCKET_FAULT_PAUSE_S="0.3",
        PYTHONPATH=str(HERE) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "docket.cli", "run", "-A", "cli_app:app"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


async def test_a_handle_in_another_process_reads_what_it_was_told(tmp_path: Path) -> None:
    engine = _slow_store_engine(tmp_path)
    try:
        _until(lambda: bool(_processor_owners(tmp_path)), "the engine holds its partitions")
        client = docket.Client.connect(docket.Settings(data_dir=tmp_path))
        try:
            handle = await client.start("greet", "remote", workflow_id="r-1")
            told = time.monotonic()
            described = await handle.describe()  # the start's batch is not in the store yet
            assert (described.run_id, described.status) == (handle.run_id, "running")
            assert time.monotonic() - told < 2.0
            assert [e.type for e in await handle.history()][0] == "WorkflowStarted"

            assert await handle.result(timeout=20) == "HELLO REMOTE!"
            assert (await handle.describe()).status == "completed"
            assert (await handle.history())[-1].type == "WorkflowCompleted"

            # a handle told nothing does not wait: an unknown run is an error at once
            started = time.monotonic()
            try:
                await client.get_handle("r-1", "no-such-run").history()
            except docket.errors.WorkflowNotFoundError:
                pass
            else:
                raise AssertionError("history() of a run that does not exist returned")
            assert time.monotonic() - started < 1.0
        finally:
            await client.close()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.communicate(timeout=30)


async def test_run_histories_read_a_store_held_elsewhere_in_one_snapshot(tmp_path: Path) -> None:
    """What a worker without a processor beside it reads to skip a task read again whose
    attempt is over (Worker._recorded_over): every run asked for, from one read-only
    snapshot per partition; None for a run the store does not have."""
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS, worker=True) as engine:
        handles = [await engine.client.start(hello, f"n{i}") for i in range(6)]
        for h in handles:
            await h.result(timeout=20)
        runs = {(h.workflow_id, h.run_id) for h in handles} | {("nobody", "no-run")}
        reader = StateReader(engine.state_dir, PARTITIONS, live=lambda p: None)
        histories = reader.run_histories(runs)
    assert histories.pop(("nobody", "no-run")) is None
    assert set(histories) == {(h.workflow_id, h.run_id) for h in handles}
    for events in histories.values():
        assert events is not None
        assert [e["body"][0] for e in events] == [
            "WorkflowStarted",
            "StepScheduled",
            "StepCompleted",
            "WorkflowCompleted",
        ]
