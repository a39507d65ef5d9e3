"""``Engine(prefer_local=True)``: a workflow its client starts without an ID runs on a
partition of the processor beside it, so nothing of it crosses to another process; a
workflow with an ID, and every other engine's, is placed by its ID as always."""

from __future__ import annotations

import asyncio
from pathlib import Path

import docket
from docket.codec.records import COMMANDS
from docket.log.partitioner import partition as partition_of

app = docket.App("prefer-local")
PARTITIONS = 4


@app.step
async def greet(name: str) -> str:
    return f"Hello, {name}"


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(greet, name)


async def split_between(*engines: docket.Engine) -> list[set[int]]:
    """Wait until the engines' processors share the partitions out, each holding some."""
    for _ in range(300):
        owned = [set(e.processor.partitions) if e.processor else set() for e in engines]
        if all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS)):
            return owned
        await asyncio.sleep(0.05)
    raise AssertionError(f"the partitions were never split: {owned}")


async def test_workflows_started_without_an_id_stay_on_the_engines_partitions(
    tmp_path: Path,
) -> None:
    async with (
        docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS, prefer_local=True) as local,
        docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as other,
    ):
        mine, theirs = await split_between(local, other)
        handles = [await local.client.start(hello, f"n{i}") for i in range(24)]
        assert {partition_of(h.workflow_id, PARTITIONS) for h in handles} <= mine
        assert [await h.result(timeout=20) for h in handles] == [
            f"Hello, n{i}" for i in range(24)
        ]
        assert local.log is not None and local.processor is not None
        commands = local.processor.topics.commands  # handed over in memory, none appended
        assert sum(local.log.end_offset(commands, p) for p in range(PARTITIONS)) == 0

        # an ID chosen by the caller goes where it hashes, local or not
        named = [await local.client.start(hello, "x", workflow_id=f"id-{i}") for i in range(24)]
        assert {partition_of(h.workflow_id, PARTITIONS) for h in named} & theirs
        # and an engine without the option places by a random ID: on both engines' partitions
        spread = [await other.client.start(hello, f"s{i}") for i in range(24)]
        assert {partition_of(h.workflow_id, PARTITIONS) for h in spread} & mine
        for h in named + spread:
            await h.result(timeout=20)
        appended = [
            COMMANDS.decode(r.value)["workflow_id"]
            for p in range(PARTITIONS)
            for r in local.log.read(commands, p, 0, 1000)
        ]
        assert appended  # those that crossed between the engines went through the log


async def test_an_engine_without_a_processor_places_by_a_random_id(tmp_path: Path) -> None:
    async with (
        docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine,
        docket.Engine(
            app, data_dir=tmp_path, partitions=PARTITIONS, processor=False, prefer_local=True
        ) as client_only,
    ):
        handles = [await client_only.client.start(hello, f"n{i}") for i in range(24)]
        assert len({partition_of(h.workflow_id, PARTITIONS) for h in handles}) > 1
        for h in handles:
            await h.result(timeout=20)
        assert engine.processor is not None

