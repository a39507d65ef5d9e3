"""Kafka-native integration: user topics in, user topics out, and an audit at the end.

A payment service writes payments to topic ``payments`` (here the client stands in for
it). The app binds that topic as a signal source: each payment is a signal to the order
its key names, and an order that is not running yet is started first. Once an order is
paid in full, its workflow emits a record to topic ``shipments``, in the same transaction
as its history. A second binding turns every shipment into a signal that starts a
notification workflow. Finally the history topic is exported for audit, with no engine
running. The same script runs on Kafka with DOCKET_BOOTSTRAP_SERVERS set.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import docket
from docket.audit import export_audit, load_audit

app = docket.App("kafka-signals")


@app.workflow
class Order:
    def __init__(self) -> None:
        self.paid_cents = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, total_cents: int) -> int:
        await ctx.wait_until(lambda: self.paid_cents >= total_cents)
        ctx.emit("shipments", {"order": ctx.workflow_id, "cents": self.paid_cents})
        return self.paid_cents

    @docket.signal
    def paid(self, ctx: docket.WorkflowContext, payment: dict[str, Any]) -> None:
        self.paid_cents += payment["cents"]


@app.step
async def send_email(order: str) -> str:
    return f"told the customer that {order} has shipped"


@app.workflow
async def notify(ctx: docket.WorkflowContext) -> str:
    shipment = await ctx.wait_for_signal("shipped")
    return await ctx.step(send_email, shipment["order"])


# payments keyed by order number go to workflow "order-<number>", started with a total
app.signal_source(
    "payments",
    workflow=Order,
    signal=Order.paid,
    key_to_id=lambda key: f"order-{key}",
    start_args=(1500,),
)
# shipments are keyed by the order's workflow ID (ctx.emit's default key)
app.signal_source(
    "shipments", workflow=notify, signal="shipped", key_to_id=lambda key: f"notify-{key}"
)


async def result_of(client: docket.Client, workflow_id: str) -> Any:
    """The result of a workflow a signal source starts (it may not have started yet)."""
    for _ in range(600):
        try:
            return await client.get_handle(workflow_id).result(timeout=30)
        except docket.errors.WorkflowNotFoundError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{workflow_id} never started")


async def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="docket-kafka-signals-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        client = engine.client
        await client.emit("payments", {"cents": 500}, key="o-1")  # as the payment service would
        await client.emit("payments", {"cents": 1000}, key="o-1")
        assert await result_of(client, "order-o-1") == 1500
        told = await result_of(client, "notify-order-o-1")
        assert told == "told the customer that order-o-1 has shipped", told
        print(told)

    audit = Path(data_dir) / "audit.jsonl"
    assert export_audit(audit, data_dir=data_dir) == 2  # the history topic, no engine running
    runs = {run.workflow_id: run for run in load_audit(audit)}
    assert {wid: run.status for wid, run in runs.items()} == {
        "order-o-1": "completed",
        "notify-order-o-1": "completed",
    }
    kinds = [e["body"][0] for e in runs["order-o-1"].events]
    assert kinds.count("SignalReceived") == 2 and "RecordEmitted" in kinds
    print(f"audited {len(runs)} runs: {', '.join(sorted(runs))}")


if __name__ == "__main__":
    asyncio.run(main())
