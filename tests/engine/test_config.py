"""Configuration by code and by DOCKET_* variables, and the worker's concurrency limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import docket
from docket.errors import ConfigurationError

app = docket.App("config")
running = 0
peak = 0


@app.step
async def hold(seconds: float) -> int:
    global running, peak
    running += 1
    peak = max(peak, running)
    await asyncio.sleep(seconds)
    running -= 1
    return peak


@app.workflow
async def fan(ctx: docket.WorkflowContext, width: int) -> list[int]:
    return list(await asyncio.gather(*(ctx.step(hold, 0.05) for _ in range(width))))


async def test_unreachable_bootstrap_servers_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DOCKET_BOOTSTRAP_SERVERS selects the Kafka log; a cluster that is not there is named."""
    monkeypatch.setenv("DOCKET_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DOCKET_KAFKA_SOCKET_CONNECTION_SETUP_TIMEOUT_MS", "1000")
    settings = docket.Settings.from_env(data_dir=tmp_path)
    assert settings.kafka_config == {"socket.connection.setup.timeout.ms": "1000"}
    with pytest.raises(ConfigurationError, match="cannot reach Kafka at '127.0.0.1:1'"):
        async with docket.Engine(app, settings=settings):
            pass


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKET_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("DOCKET_NAMESPACE", "shop")
    monkeypatch.setenv("DOCKET_PARTITIONS", "2")
    settings = docket.Settings.from_env()
    assert (settings.data_dir, settings.namespace, settings.partitions) == (tmp_path / "d", "shop", 2)
    assert docket.Settings.from_env(namespace="other").namespace == "other"  # code wins


async def test_settings_built_in_code_take_a_data_dir_as_a_string(tmp_path: Path) -> None:
    """Code that is not type-checked passes a str; Client.connect then joined paths on it
    (``TypeError: unsupported operand type(s) for /``, far from the cause)."""
    settings = docket.Settings(data_dir=str(tmp_path))  # type: ignore[arg-type]
    assert settings.data_dir == tmp_path
    async with docket.Engine(app, settings=settings) as engine:
        handle = await engine.client.start(fan, 2)
        client = docket.Client.connect(settings)
        try:
            assert await client.get_handle(handle.workflow_id).result(timeout=10) == [2, 2]
        finally:
            await client.close()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DOCKET_PARTITIONS", "many", "must be a whole number"),
    ("DOCKET_NAMESPACE", "no spaces", "is invalid"),
])
def test_bad_settings_are_clear(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        docket.Settings.from_env()


async def test_namespaces_share_a_data_directory(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, namespace="a") as a, \
            docket.Engine(app, data_dir=tmp_path, namespace="b") as b:
        assert len(await (await a.client.start(fan, 1)).result(timeout=10)) == 1
        assert await b.client.list() == []


async def test_worker_concurrency_limit(tmp_path: Path) -> None:
    global peak
    peak = 0
    async with docket.Engine(app, data_dir=tmp_path, max_concurrency=2) as engine:
        await (await engine.client.start(fan, 8)).result(timeout=20)
    assert peak == 2


@pytest.mark.parametrize("limit", [0, -1])
def test_a_concurrency_below_one_is_a_clear_error(tmp_path: Path, limit: int) -> None:
    with pytest.raises(ConfigurationError, match=f"max_concurrency must be at least 1, got {limit}"):
        docket.Engine(app, data_dir=tmp_path, max_concurrency=limit)


queued = docket.App("queued", task_queue="q1")


@queued.step
def ping() -> str:
    return "pong"


@queued.workflow
async def pinger(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(ping)


async def test_start_by_name_uses_the_apps_task_queue(tmp_path: Path) -> None:
    async with docket.Engine(queued, data_dir=tmp_path) as engine:
        assert await (await engine.client.start("pinger")).result(timeout=10) == "pong"
        assert (await engine.client.list())[0].task_queue == "q1"


async def test_unknown_namespace_is_a_clear_error(tmp_path: Path) -> None:
    async with docket.Engine(queued, data_dir=tmp_path, namespace="real"):
        pass
    with pytest.raises(ConfigurationError, match="namespace 'typo' does not exist"):
        docket.Client.connect(data_dir=tmp_path, namespace="typo")
    client = docket.Client.connect(data_dir=tmp_path, namespace="real")
    await client.close()
