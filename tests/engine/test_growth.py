"""Growing a live namespace's partitions (docket/log/growth.py): every execution, whatever
it was doing, stays reachable and finishes; on the embedded log and on Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import docket
from docket.config import Settings
from docket.errors import ConfigurationError
from docket.log.growth import grow, layout_of
from docket.log.partitioner import partition
from tests.kafka_broker import serving

ROOT = Path(__file__).resolve().parents[2]
app = docket.App("growing")


@app.step
async def double(x: int) -> int:
    return 2 * x


@app.workflow
async def quick(ctx: docket.WorkflowContext, x: int) -> int:
    return await ctx.step(double, x)


@app.workflow
async def sleeper(ctx: docket.WorkflowContext, x: int) -> int:
    await ctx.sleep(1.5)
    return await ctx.step(double, x)


@app.workflow
async def waiter(ctx: docket.WorkflowContext, x: int) -> int:
    got = await ctx.wait_for_signal("go")
    return await ctx.step(double, x + got)


KINDS = {"quick": quick, "sleeper": sleeper, "waiter": waiter}


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("DOCKET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKET_NAMESPACE", "shop")
    if request.param == "embedded":
        yield "embedded"
        return
    with serving(tmp_path, monkeypatch):
        yield "kafka"


async def test_every_execution_survives_growing_from_2_to_6_partitions(backend: str) -> None:
    # Before: quick runs closed, sleepers with timers pending, waiters blocked on a signal,
    # and quick runs whose step tasks no worker has taken yet (the engine runs no worker).
    async with docket.Engine(app, partitions=2) as engine:
        client = engine.client
        for i in range(6):
            await client.start(quick, i, workflow_id=f"closed-{i}")
        closed = {
            f"closed-{i}": await client.get_handle(f"closed-{i}").result(timeout=30)
            for i in range(6)
        }
        histories = {wid: await client.get_handle(wid).history() for wid in closed}
    async with docket.Engine(app, worker=False) as engine:
        for i in range(6):
            await engine.client.start(sleeper, i, workflow_id=f"sleeping-{i}")
            await engine.client.start(waiter, i, workflow_id=f"waiting-{i}")
            await engine.client.start(quick, i, workflow_id=f"queued-{i}")
        # every start processed, so timers and step tasks exist before the stop
        await _until_pending(
            engine, *(f"{k}-{i}" for k in ("sleeping", "queued") for i in range(6))
        )

    report = grow(Settings.from_env(), 6)
    assert (report.old.partitions, report.new.partitions, report.new.generation) == (2, 6, 2)
    assert report.copied["tasks.default"] >= 6 and report.copied["history"] > 0
    assert layout_of(Settings.from_env()).partitions == 6

    async with docket.Engine(app) as engine:
        assert (engine.log.partitions, engine.log.namespace) == (6, "shop.g2")  # type: ignore[union-attr]
        client = engine.client
        for wid, result in closed.items():  # closed runs: results and histories unchanged
            handle = client.get_handle(wid)
            assert await handle.result(timeout=30) == result
            assert [(e.event_id, e.type) for e in await handle.history()] == [
                (e.event_id, e.type) for e in histories[wid]
            ]
        for i in range(6):
            await client.get_handle(f"waiting-{i}").signal("go", 100)
        for i in range(6):
            assert await client.get_handle(f"sleeping-{i}").result(timeout=30) == 2 * i
            assert await client.get_handle(f"waiting-{i}").result(timeout=30) == 2 * (i + 100)
            assert await client.get_handle(f"queued-{i}").result(timeout=30) == 2 * i
        # new workflows route with the new count: some land on partitions 2-5
        ids = [f"new-{i}" for i in range(12)]
        assert {partition(wid, 6) for wid in ids} - {0, 1}
        for i, wid in enumerate(ids):
            await client.start(quick, i, workflow_id=wid)
        assert [await client.get_handle(wid).result(timeout=30) for wid in ids] == [
            2 * i for i in range(12)
        ]
        described = await client.get_handle("sleeping-0").describe()
        assert described.status == "completed"


async def test_growth_is_refused_while_an_engine_runs_and_changes_nothing(backend: str) -> None:
    async with docket.Engine(app, partitions=2) as engine:
        handle = await engine.client.start(waiter, 1, workflow_id="w")
        with pytest.raises(ConfigurationError, match="is in use: docket.shop.processor"):
            await asyncio.to_thread(grow, Settings.from_env(), 4)
        assert layout_of(Settings.from_env()).partitions == 2
        await handle.signal("go", 1)
        assert await handle.result(timeout=30) == 4  # the engine carried on, on 2 partitions
    with pytest.raises(ConfigurationError, match="larger count"):
        grow(Settings.from_env(), 2)


@pytest.mark.slow
def test_a_growth_killed_before_its_switch_blocks_starts_and_is_rerun(
    backend: str, tmp_path: Path
) -> None:
    async def start_one() -> None:
        async with docket.Engine(app, partitions=2, worker=False) as engine:
            await engine.client.start(quick, 21, workflow_id="survivor")
            await _until_pending(engine, "survivor")

    asyncio.run(start_one())
    env = {**os.environ, "DOCKET_FAULT": "growth_before_switch"}
    killed = subprocess.run(
        [sys.executable, "-m", "docket.cli", "partitions", "grow", "4"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert killed.returncode == 137, killed.stderr
    with pytest.raises(ConfigurationError, match="is growing to 4 partitions"):
        asyncio.run(start_one())
    rerun = subprocess.run(
        [sys.executable, "-m", "docket.cli", "partitions", "grow", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "docket.cli", "partitions", "show", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert json.loads(shown.stdout) == {
        "namespace": "shop",
        "partitions": 4,
        "generation": 3,
        "topics": "docket.shop.g3.*",
    }

    async def finish() -> int:
        async with docket.Engine(app) as engine:
            result: int = await engine.client.get_handle("survivor").result(timeout=30)
            return result

    assert asyncio.run(finish()) == 42


async def _until_pending(engine: docket.Engine, *wids: str, timeout: float = 30.0) -> None:
    """Wait until each run has a step or timer pending: its start was processed."""
    deadline = asyncio.get_running_loop().time() + timeout
    for wid in wids:
        while True:
            try:
                described = await engine.client.get_handle(wid).describe()
                if described.pending_steps or described.pending_timers:
                    break
            except docket.WorkflowNotFoundError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"{wid} never got going"
            await asyncio.sleep(0.05)
