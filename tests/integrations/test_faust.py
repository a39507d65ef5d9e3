"""The Faust integration: the codec on its own, then a Faust app and a Docket engine on one
real Kafka-protocol broker (Tansu), in one event loop.

The Faust app does what an app of the ``docket[faust]`` extra does: one agent reads Docket's
``history`` topic through the codec, another starts and signals workflows for the records
of a user topic through `DocketFaust`, with its own `docket.Client` (as a Faust worker in
another process would have).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.serializers import codecs

import docket
from docket.codec.payload import to_payload
from docket.codec.records import EVENTS, REPLIES
from docket.errors import ConfigurationError, SerializationError
from docket.integrations.faust import (
    DocketFaust,
    RecordCodec,
    docket_topic,
    event_workflow_id,
    history_event,
    payload_value,
)
from docket.log.base import OutRecord
from docket.log.registry import ConfluentSchemaRegistry, RegistryFraming
from tests.kafka_broker import Broker

app = docket.App("faust-shop")


@app.step
async def price(item: str) -> int:
    return 100 * len(item)


@app.workflow
async def checkout(ctx: docket.WorkflowContext, order_id: str, items: list[str]) -> dict[str, Any]:
    prices = [await ctx.step(price, item) for item in items]
    return {"order_id": order_id, "total": sum(prices)}


@app.workflow
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, size: int) -> list[str]:
        await ctx.wait_until(lambda: len(self.items) >= size)
        return self.items

    @docket.signal
    def add(self, ctx: docket.WorkflowContext, item: str) -> None:
        self.items.append(item)


# -- the codec, no broker -------------------------------------------------------------------------

EVENT = {
    "workflow_id": "order-1", "run_id": "r1", "event_id": 1, "activation": 1, "ts_us": 7,
    "command_id": "c1",
    "body": ("WorkflowStarted", {
        "workflow_type": "checkout", "args": [to_payload("o-1")], "kwargs": {},
        "task_queue": "default", "reply_to": None, "run_chain": [], "watchers": [],
        "start_at_us": None, "run_timeout_ms": None, "execution_deadline_us": None,
        "parent": None,
    }),
}
REPLY = {
    "reply_to": "client-1", "request_id": "c1", "workflow_id": "order-1", "run_id": "r1",
    "kind": "completed", "result": to_payload({"total": 3}), "failure": None,
}


def test_the_docket_codec_reads_every_family_by_its_fingerprint() -> None:
    for family_codec, record in ((EVENTS, EVENT), (REPLIES, REPLY)):
        data = family_codec.encode(record)
        assert codecs.loads("docket", data) == family_codec.decode(data)
        assert codecs.dumps("docket", family_codec.decode(data)) == data  # the fields name the family
    assert codecs.loads("docket.event", EVENTS.encode(EVENT))["body"][0] == "WorkflowStarted"
    event = history_event(codecs.loads("docket", EVENTS.encode(EVENT)))
    assert event.type == "WorkflowStarted" and payload_value(event.attributes["args"][0]) == "o-1"
    assert codecs.loads("docket|binary", codecs.dumps("docket|binary", EVENT)) == EVENTS.decode(
        EVENTS.encode(EVENT)
    )  # chained with another codec, the family choice survives Faust's clone


def test_the_docket_codec_refuses_what_is_not_a_docket_record() -> None:
    with pytest.raises(SerializationError, match="not a Docket record"):
        codecs.loads("docket", b'{"json": true}')
    with pytest.raises(SerializationError, match="fingerprint .* for a reply record"):
        codecs.loads("docket.reply", EVENTS.encode(EVENT))  # a family's codec reads only it
    with pytest.raises(SerializationError, match="which Docket record family"):
        codecs.dumps("docket", {"workflow_id": "w"})
    with pytest.raises(ConfigurationError, match="no Docket record family 'state'"):
        RecordCodec("state")


def test_docket_topic_names_a_namespace_topic_and_its_codec() -> None:
    faust_app = faust.App("names", broker="kafka://127.0.0.1:1")  # never started
    tasks = docket_topic(faust_app, "tasks.default", namespace="shop")
    assert tasks.topics == ("docket.shop.tasks.default",)
    assert tasks.value_serializer == "docket.task" and tasks.key_serializer == "raw"
    assert docket_topic(faust_app, "history").topics == ("docket.default.history",)
    with pytest.raises(ConfigurationError, match="no Docket topic 'events'"):
        docket_topic(faust_app, "events")


def test_the_codec_reads_records_framed_for_a_schema_registry() -> None:
    """With DOCKET_SCHEMA_REGISTRY_URL the Kafka log writes ``00`` + schema id; the codec
    of such a namespace (as `docket_topic` builds it) reads them through the registry."""
    framing = RegistryFraming(ConfluentSchemaRegistry("mock://faust-codec"))
    (framed,) = framing.outgoing([OutRecord("docket.shop.history", 0, "w", EVENTS.encode(EVENT))])
    assert framed.value[:1] == b"\x00"
    assert RecordCodec("event", framing=framing).loads(framed.value) == EVENTS.decode(
        EVENTS.encode(EVENT)
    )
    assert (RecordCodec(framing=framing) | codecs.get_codec("raw")).framing is framing  # clones keep it


# -- a Faust app and a Docket engine on one broker ----------------------------------------------


def _faust_app(broker: Broker) -> faust.App:
    return faust.App(
        f"docket-faust-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{broker.bootstrap}",
        web_enabled=False,
        store="memory://",
        topic_replication_factor=1,
        topic_partitions=1,
        # Tansu completes a first group join after about half the session timeout
        broker_session_timeout=4.0,
        broker_heartbeat_interval=0.5,
        consumer_auto_offset_reset="earliest",
    )


@pytest.mark.kafka
async def test_a_faust_agent_reads_history_and_starts_and_signals_workflows(
    kafka: Broker, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    async with docket.Engine(app, data_dir=tmp_path / "data") as engine:  # creates its topics
        shop = _faust_app(kafka)
        orders = shop.topic("orders", value_serializer="json")
        cart_items = shop.topic("cart-items", value_serializer="json")
        docket_faust = DocketFaust(shop, settings=docket.Settings.from_env(data_dir=tmp_path / "data"))
        started: asyncio.Queue[docket.WorkflowHandle[Any]] = asyncio.Queue()
        record_ids: list[str] = []
        seen: dict[str, list[docket.HistoryEvent]] = {}
        completed: dict[str, asyncio.Future[None]] = {
            w: loop.create_future() for w in ("order-o-1", "cart-c-1")
        }

        @shop.agent(orders)
        async def place(stream: AsyncIterator[dict[str, Any]]) -> None:
            async for order in stream:
                record_ids.append(event_workflow_id("order-"))
                await started.put(await docket_faust.start(
                    checkout, order["id"], order["items"], workflow_id=f"order-{order['id']}"
                ))

        @shop.agent(cart_items)
        async def add(stream: AsyncIterator[dict[str, Any]]) -> None:
            async for line in stream:
                await docket_faust.signal_with_start(
                    Cart, 2, workflow_id=f"cart-{line['cart']}", signal=Cart.add,
                    signal_args=(line["item"],),
                )

        @shop.agent(docket_topic(shop, "history"))
        async def audit(stream: Any) -> None:
            async for key, record in stream.items():
                assert key == record["workflow_id"].encode()
                event = history_event(record)
                events = seen.setdefault(record["workflow_id"], [])
                if event.event_id not in [e.event_id for e in events]:  # a reader dedupes
                    events.append(event)
                done = completed.get(record["workflow_id"])
                if event.type == "WorkflowCompleted" and done is not None and not done.done():
                    done.set_result(None)

        await shop.start()
        try:
            await orders.send(value={"id": "o-1", "items": ["book", "pen"]})
            # keyed by cart: one partition, so the agent signals in the order they were sent
            await cart_items.send(key=b"c-1", value={"cart": "c-1", "item": "apple"})
            await cart_items.send(key=b"c-1", value={"cart": "c-1", "item": "pear"})
            first = await asyncio.wait_for(started.get(), 20)
            await orders.send(value={"id": "o-1", "items": ["book", "pen"]})  # a redelivery
            again = await asyncio.wait_for(started.get(), 20)
            await asyncio.wait_for(asyncio.gather(*completed.values()), 20)
        finally:
            await shop.stop()

        assert again.run_id == first.run_id  # a redelivered order finds the run it started
        assert len(set(record_ids)) == 2 and all(i.startswith("order-orders-") for i in record_ids)
        client = engine.client
        assert await client.get_handle("order-o-1").result(timeout=10) == {
            "order_id": "o-1", "total": 700,
        }
        assert await client.get_handle("cart-c-1").result(timeout=10) == ["apple", "pear"]

    kinds = [e.type for e in seen["order-o-1"]]
    assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted"
    assert kinds.count("StepCompleted") == 2
    started_event, completed_event = seen["order-o-1"][0], seen["order-o-1"][-1]
    assert started_event.attributes["workflow_type"] == "checkout"
    assert [payload_value(p) for p in started_event.attributes["args"]] == ["o-1", ["book", "pen"]]
    assert payload_value(completed_event.attributes["result"]) == {"order_id": "o-1", "total": 700}
    assert [payload_value(e.attributes["args"][0]) for e in seen["cart-c-1"]
            if e.type == "SignalReceived"] == ["apple", "pear"]
