"""The engine on the Kafka log, against a real Kafka-protocol broker (Tansu, per test):
the same app code as on the embedded log, selected by DOCKET_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import docket
from docket.log.kafka import KafkaLog
from docket.log.partitioner import partition as partition_of
from docket.streams import restore as restore_module
from tests.kafka_broker import Broker

ROOT = Path(__file__).resolve().parents[2]
app = docket.App("on-kafka")


@app.step
async def shout(text: str) -> str:
    return text.upper()


@app.workflow
class Greeter:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.complete_at = 0.0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, count: int) -> list[str]:
        await ctx.wait_until(lambda: len(self.names) >= count)
        self.complete_at = await ctx.side_effect(time.time)  # recorded; replays return it
        await ctx.sleep(0.3)  # a durable timer, through the timer service on Kafka
        return [await ctx.step(shout, name) for name in self.names]

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, name: str) -> None:
        self.names.append(name)

    @docket.update
    def add_now(self, ctx: docket.WorkflowContext, name: str) -> int:
        self.names.append(name)
        return len(self.names)

    @docket.query
    def seen(self, ctx: docket.QueryContext) -> list[str]:
        return list(self.names)


async def test_signals_queries_updates_timers_and_steps(kafka: Broker, tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        assert isinstance(engine.log, KafkaLog)
        handle = await engine.client.start(Greeter, 3, workflow_id="greeter")
        await handle.signal(Greeter.add, "ada")
        assert await handle.query(Greeter.seen) == ["ada"]
        assert await handle.execute_update(Greeter.add_now, "grace") == 2
        await handle.signal(Greeter.add, "linus")
        assert await handle.result(timeout=30) == ["ADA", "GRACE", "LINUS"]
        kinds = [e.type for e in await handle.history()]
        assert kinds.count("SignalReceived") == 2 and "TimerFired" in kinds
        assert "SideEffectRecorded" in kinds


async def test_runs_without_transactions(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For brokers that have none: every append stores records, then offsets."""
    monkeypatch.setenv("DOCKET_KAFKA_TRANSACTIONS", "false")
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:
        handle = await engine.client.start(Greeter, 2, workflow_id="plain")
        await handle.signal(Greeter.add, "ada")
        await handle.signal(Greeter.add, "grace")
        assert await handle.result(timeout=30) == ["ADA", "GRACE"]
        assert engine.log._txn_producer is None  # type: ignore[union-attr]


async def test_state_is_restored_from_the_log_on_a_new_machine(
    kafka: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RocksDB stores are a cache of the history topic: an engine with an empty data
    directory (another machine) folds history from Kafka, saying how far it got, and
    carries the workflow on."""
    monkeypatch.setattr(restore_module, "PROGRESS_S", 0.0)  # report after every batch
    caplog.set_level(logging.INFO, logger="docket")
    async with docket.Engine(app, data_dir=tmp_path / "first") as engine:
        handle = await engine.client.start(Greeter, 2, workflow_id="moving")
        await handle.signal(Greeter.add, "ada")
        assert await handle.query(Greeter.seen) == ["ada"]
    shutil.rmtree(tmp_path / "first")
    async with docket.Engine(app, data_dir=tmp_path / "second") as engine:
        handle = engine.client.get_handle("moving")
        assert await handle.query(Greeter.seen) == ["ada"]  # restored from the history topic
        await handle.signal(Greeter.add, "grace")
        assert await handle.result(timeout=30) == ["ADA", "GRACE"]
    logged = [r.getMessage() for r in caplog.records if r.name == "docket"]
    assert any("restoring from the log" in m for m in logged), logged
    assert any(re.search(r"restored \d+ history events from the log in", m) for m in logged)


async def test_describe_history_and_list_from_a_machine_without_the_partitions(
    kafka: Broker, tmp_path: Path
) -> None:
    """A client elsewhere (an empty data directory) reads state folded from the history
    topic, brought up to date before each read."""
    async with docket.Engine(app, data_dir=tmp_path / "engine") as engine:
        handle = await engine.client.start(Greeter, 2, workflow_id="far")
        await handle.signal(Greeter.add, "ada")
        await engine.client.start(Greeter, 0, workflow_id="done")
        assert await engine.client.get_handle("done").result(timeout=30) == []
        elsewhere = docket.Client.connect(data_dir=tmp_path / "elsewhere")
        try:
            far = elsewhere.get_handle("far")
            assert (await far.describe()).status == "running"
            kinds = [e.type for e in await far.history()]
            assert kinds[0] == "WorkflowStarted" and "SignalReceived" in kinds
            listed = {d.workflow_id: d.status for d in await elsewhere.list()}
            assert listed == {"far": "running", "done": "completed"}
            await far.signal(Greeter.add, "grace")
            assert await far.result(timeout=30) == ["ADA", "GRACE"]
            assert (await far.describe()).status == "completed"  # caught up again
        finally:
            await elsewhere.close()
    assert not (tmp_path / "elsewhere" / "state").exists()  # nothing kept on that machine


@app.workflow
class Quick:
    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        return "done"


async def test_a_client_elsewhere_describes_what_it_was_told_at_once(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-your-writes from a machine without the partitions: once ``start`` or
    ``result()`` returned, ``describe()`` shows the run started, then closed. Every run is
    on one partition, so each describe catches up a replica that had read to the end before
    (a describe once showed "running" in CI: that read's end had gone stale). That client's
    readers hold an empty fetch for 100 ms (Tansu holds it to the end), so its history
    consumer is often behind the reply it got."""
    ids = [f"quick-{i}" for i in range(100) if partition_of(f"quick-{i}", 4) == 0][:12]
    async with docket.Engine(app, data_dir=tmp_path / "engine"):
        monkeypatch.setenv("DOCKET_KAFKA_FETCH_WAIT_MAX_MS", "100")
        elsewhere = docket.Client.connect(data_dir=tmp_path / "elsewhere")
        try:
            for workflow_id in ids:
                handle = await elsewhere.start(Quick, workflow_id=workflow_id)
                assert (await handle.describe()).workflow_id == workflow_id
                assert await handle.result(timeout=30) == "done"
                assert (await handle.describe()).status == "completed", workflow_id
        finally:
            await elsewhere.close()


# Every example runs unchanged on Kafka: the same scripts, with DOCKET_BOOTSTRAP_SERVERS set.
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs_on_kafka(example: str, kafka: Broker, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    env["DOCKET_BOOTSTRAP_SERVERS"] = kafka.bootstrap
    env["DOCKET_KAFKA_SESSION_TIMEOUT_MS"] = "1000"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{example}.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )
    stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("%"))
    assert result.returncode == 0, f"{example} on Kafka:\n{result.stdout}\n{stderr}"
