"""The app of the Kafka-integration tests (emission, signal sources, audit), and the fixture
that runs each test on the embedded log and on Kafka (a Tansu broker per test)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import docket
from docket.log.base import Log, LogRecord
from tests.kafka_broker import serving

app = docket.App("user-topics")


@dataclass
class Shipment:
    order_id: str
    items: int


@app.step
async def charge(order_id: str, amount: int) -> str:
    return f"receipt-{order_id}-{amount}"


@app.workflow
async def emitter(ctx: docket.WorkflowContext, count: int) -> list[str]:
    """Emits ``count`` records of every value kind, a step and a signal between them."""
    ids = []
    for i in range(count):
        ids.append(ctx.emit("events", {"i": i, "at": ctx.now().isoformat()}, key=f"k-{i}"))
        receipt = await ctx.step(charge, f"o-{i}", i)
        ids.append(ctx.emit("events", receipt, headers={"kind": "text", "raw": b"\x00\x01"}))
        ids.append(ctx.emit("events", Shipment(f"o-{i}", i)))
        ids.append(ctx.emit("events", b"\xff\x00bytes", key=f"k-{i}"))
        await ctx.wait_for_signal("next")
    return ids


@app.workflow
async def bad_emitter(ctx: docket.WorkflowContext, topic: str) -> str:
    return ctx.emit(topic, "x")


@app.workflow
class Order:
    def __init__(self) -> None:
        self.payments: list[dict[str, Any]] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, total: int) -> list[dict[str, Any]]:
        await ctx.wait_until(lambda: sum(p["amount"] for p in self.payments) >= total)
        receipt = await ctx.step(charge, ctx.workflow_id, total)
        ctx.emit("shipments", {"order": ctx.workflow_id, "receipt": receipt})
        return self.payments

    @docket.signal
    def paid(self, ctx: docket.WorkflowContext, payment: dict[str, Any]) -> None:
        self.payments.append(payment)


@app.workflow
async def collector(ctx: docket.WorkflowContext, count: int) -> list[str]:
    return [await ctx.wait_for_signal("note") for _ in range(count)]


app.signal_source(
    "payments", workflow=Order, signal=Order.paid, key_to_id=lambda key: f"order-{key}",
    start_args=(10,),
)
app.signal_source("notes", workflow=collector, signal="note", decode="text", start=False)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs on the embedded log, then on Kafka; DOCKET_DATA_DIR is tmp_path/data."""
    monkeypatch.setenv("DOCKET_DATA_DIR", str(tmp_path / "data"))
    if request.param == "embedded":
        yield "embedded"
        return
    with serving(tmp_path, monkeypatch):
        yield "kafka"


def topic_records(log: Log, topic: str) -> list[LogRecord]:
    """Every record of a user topic, partition by partition."""
    return [r for p in range(log.partitions_of(topic)) for r in log.read(topic, p, 0, 100_000)]


def record_id(record: LogRecord) -> str:
    return dict(record.headers)["docket-record-id"].decode()


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (a record or signal in flight)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found or loop.time() > deadline:
            assert found, f"not true within {timeout} s"
            return found
        await asyncio.sleep(0.02)
