"""Faust (faust-streaming) with Docket: read Docket's topics in Faust agents, and start and
signal workflows from them.

Needs the extra: ``pip install 'docket-engine[faust]'``. This is the only module that
imports Faust, and Docket never imports it, so apps that do not use Faust do not pay for
its dependency tree.

Two pieces:

- **A codec.** Importing this module registers `RecordCodec` with Faust as ``"docket"``
  (any record; the family is found from the schema fingerprint every record carries) and
  as ``"docket.command"``, ``"docket.event"``, ``"docket.task"``, ``"docket.timer"`` and
  ``"docket.reply"``. `docket_topic` declares a Faust topic over one of a namespace's Docket
  topics with the right codec. Records decode to the dicts Docket itself uses: the schema's
  fields, with the ``body`` union as a ``(type_name, fields)`` tuple; `history_event` and
  `payload_value` turn them into friendlier values.
- **Starting and signalling workflows**: `DocketFaust`, one `docket.Client` per Faust app,
  used on the app's event loop and closed when the app stops.

Faust delivers each record at least once: after a crash or a rebalance an agent sees again
the records whose offsets were not yet committed. `DocketFaust.start` therefore takes a
``workflow_id`` (derive it from the record, e.g. with `event_workflow_id`) and defaults to
``IdReusePolicy.RETURN_EXISTING``, so a redelivered record finds the run it started instead
of starting another. A redelivered *signal* is delivered again: use an update with an
``update_id`` derived from the record where a signal must count once. Readers of Docket's
topics may see a record twice as well (Docket's outputs are deduplicated by their readers,
and some brokers show aborted transactions): history events are unique by
``(workflow_id, run_id, event_id)``.
"""

from __future__ import annotations

from typing import Any, ParamSpec, TypeVar, overload

try:
    import faust
    from faust.serializers import codecs
except ImportError as exc:  # pragma: no cover - the extra is installed in the test environment
    raise ImportError(
        "the Faust integration needs faust-streaming: pip install 'docket-engine[faust]'"
    ) from exc

from docket.client import Client, IdReusePolicy
from docket.codec import records, schemas
from docket.codec.payload import Payload, from_payload
from docket.config import Settings
from docket.definitions import Workflow
from docket.errors import ClientError, ConfigurationError, SerializationError
from docket.handles import WorkflowHandle
from docket.log.growth import layout_of
from docket.log.registry import ConfluentSchemaRegistry, RegistryFraming
from docket.log.topics import Topics
from docket.reader import HistoryEvent, to_history_event

P = ParamSpec("P")
R = TypeVar("R")

# The record families that travel on Docket's topics (``state`` only lives in RocksDB).
_CODECS: dict[str, records.Codec] = {
    "command": records.COMMANDS,
    "event": records.EVENTS,
    "task": records.TASKS,
    "timer": records.TIMERS,
    "reply": records.REPLIES,
}
# A family's field names: how the generic codec tells which family a dict belongs to.
_FIELDS = {
    family: frozenset(field["name"] for field in schemas.current(family)["fields"])
    for family in _CODECS
}


class RecordCodec(codecs.Codec):
    """A Faust codec for Docket records, one family or all of them.

    With ``family=None`` it decodes any Docket record, choosing the family by the writer
    schema's fingerprint, and encodes a dict whose keys are exactly one family's fields.
    With a family it reads and writes only that family, and encodes dicts that leave out
    fields with defaults.
    """

    def __init__(
        self,
        family: str | None = None,
        children: tuple[Any, ...] | None = None,
        framing: RegistryFraming | None = None,
    ) -> None:
        """``framing``: how to read records a Kafka log wrote with Confluent Schema Registry
        framing (`docket_topic` passes it when DOCKET_SCHEMA_REGISTRY_URL is set)."""
        if family is not None and family not in _CODECS:
            raise ConfigurationError(
                f"no Docket record family {family!r}: use one of {', '.join(_CODECS)}"
            )
        # through Codec's kwargs, so that ``codec | other`` (Codec.clone) keeps them
        super().__init__(children, family=family, framing=framing)
        self.family = family
        self.framing = framing

    def _loads(self, s: bytes) -> Any:
        if self.framing is not None:
            s = self.framing.incoming(s)  # 00 + schema id -> C3 01 + fingerprint
        return self._codec_for_bytes(s).decode(s)

    def _dumps(self, s: Any) -> bytes:
        if not isinstance(s, dict):
            raise SerializationError(
                f"the Docket codec encodes record dicts, got {type(s).__qualname__}"
            )
        return self._codec_for_record(s).encode(s)

    def _codec_for_bytes(self, data: bytes) -> records.Codec:
        if self.family is not None:
            return _CODECS[self.family]  # its decode explains a record of another family
        fingerprint = data[2:10]
        for codec in _CODECS.values():
            if data[:2] == records.MAGIC and codec.reads(fingerprint):
                return codec
        raise SerializationError(
            f"not a Docket record ({len(data)} bytes, starting {data[:10]!r}): Docket records "
            "start with C3 01 and the fingerprint of a known command, event, task, timer or "
            "reply schema. Is this a Docket topic, written by this Docket version or an older one?"
        )

    def _codec_for_record(self, record: dict[str, Any]) -> records.Codec:
        if self.family is not None:
            return _CODECS[self.family]
        keys = frozenset(record)
        for family, fields in _FIELDS.items():
            if keys == fields:
                return _CODECS[family]
        raise SerializationError(
            f"cannot tell which Docket record family has the fields {sorted(keys)}: give every "
            "field of one family, or use a family's codec ('docket.command', 'docket.event', ...)"
        )


def register_codecs() -> None:
    """Register the Docket codecs with Faust (importing this module already did)."""
    codecs.register("docket", RecordCodec())
    for family in _CODECS:
        codecs.register(f"docket.{family}", RecordCodec(family))


register_codecs()


def docket_topic(
    app: faust.App, topic: str, *, namespace: str | None = None, settings: Settings | None = None
) -> faust.TopicT:
    """A Faust topic over one of a Docket namespace's topics, with the codec of its records.

    ``topic`` is ``"history"``, ``"commands"``, ``"timers"``, ``"replies"`` or
    ``"tasks.<queue>"``; ``namespace`` defaults to ``DOCKET_NAMESPACE`` (else "default"),
    and the other settings come from ``DOCKET_*`` (or ``settings``). Keys stay raw bytes (a
    workflow ID in UTF-8, or a client ID on ``replies``).

    With DOCKET_BOOTSTRAP_SERVERS set, the topic is the namespace's live generation's (it
    asks the cluster, once: after `docket partitions grow` the topics are
    ``docket.<namespace>.g<N>.*``; restart the Faust app after a growth), and with
    DOCKET_SCHEMA_REGISTRY_URL set, the codec reads Confluent-framed records through the
    registry.

    Read these topics; do not write to them from Faust. Commands go through `DocketFaust`
    (a `docket.Client`), which puts each on its workflow's partition and waits for the
    engine's answer. Docket creates its topics, with its partition count, when an engine
    first runs: start one before the Faust app subscribes, so that no broker auto-creates a
    topic with another count (Docket then refuses it).
    """
    settings = settings or Settings.from_env(namespace=namespace)
    names = Topics(_live_namespace(settings))
    by_topic = {  # name, and the family of its records
        "history": (names.history, "event"),
        "commands": (names.commands, "command"),
        "timers": (names.timers, "timer"),
        "replies": (names.replies, "reply"),
    }
    if topic.startswith("tasks."):
        name, family = names.tasks(topic.removeprefix("tasks.")), "task"
    elif topic in by_topic:
        name, family = by_topic[topic]
    else:
        raise ConfigurationError(
            f"no Docket topic {topic!r}: use history, commands, timers, replies or tasks.<queue>"
        )
    if settings.bootstrap_servers and settings.schema_registry_url:
        registry = ConfluentSchemaRegistry(
            settings.schema_registry_url, settings.schema_registry_config
        )
        codec = RecordCodec(family, framing=RegistryFraming(registry))
        return app.topic(name, key_serializer="raw", value_serializer=codec)
    return app.topic(name, key_serializer="raw", value_serializer=f"docket.{family}")


def _live_namespace(settings: Settings) -> str:
    """Where the namespace's topics are now: its live generation's on Kafka (see
    docket/log/layout.py); a namespace that was never grown keeps its name."""
    if not settings.bootstrap_servers:
        return settings.namespace
    return layout_of(settings).storage


def history_event(record: dict[str, Any]) -> HistoryEvent:
    """A decoded ``history`` record as the `docket.HistoryEvent` that ``handle.history()``
    returns: ``type`` is the event's name (``"WorkflowCompleted"``), ``attributes`` its fields."""
    return to_history_event(record)


def payload_value(payload: Payload, hint: Any = None) -> Any:
    """The Python value inside a record's ``Payload`` (arguments, results, details).

    Payloads are JSON by default; ``hint`` (a type, e.g. a dataclass) rebuilds the value as
    Docket does for the function that receives it.
    """
    return from_payload(payload, hint, where="a payload read from Faust")


def event_workflow_id(prefix: str = "") -> str:
    """A workflow ID naming the record the current agent is processing:
    ``<prefix><topic>-<partition>-<offset>``.

    The same record always yields the same ID, so a start keyed by it is idempotent under
    Faust's at-least-once delivery. A business key from the record (an order ID) is often
    better still: it also catches duplicates that a producer wrote twice.
    """
    event = faust.current_event()
    if event is None:
        raise ClientError(
            "event_workflow_id() names the record being processed: call it inside a Faust "
            "agent's loop over its stream, or pass a workflow_id of your own"
        )
    message = event.message
    return f"{prefix}{message.topic}-{message.partition}-{message.offset}"


class DocketFaust:
    """Start and signal Docket workflows from Faust agents.

    A `docket.Client` belongs to the event loop it first runs on (its replies arrive through
    a task on that loop), and Faust agents run on the Faust app's loop. So this object hands
    agents one client, connected on first use from inside an agent (on the app's loop, from
    ``DOCKET_*`` settings or the ``settings`` given) and closed when the app shuts down.
    Pass ``client`` instead to share one that already runs on the app's loop, such as an
    in-process engine's ``engine.client``; it is then left open.

    Example::

        docket_faust = DocketFaust(faust_app)

        @faust_app.agent(orders)
        async def place(stream):
            async for order in stream:
                await docket_faust.start(checkout, order["id"], workflow_id=f"order-{order['id']}")
    """

    def __init__(
        self, app: faust.App, client: Client | None = None, *, settings: Settings | None = None
    ) -> None:
        self._client = client
        self._owns_client = client is None
        self._settings = settings
        app.on_before_shutdown.connect(self._on_shutdown)

    def client(self) -> Client:
        """The Docket client, connected now if this is its first use.

        Call it on the Faust app's loop (in an agent, a timer, a task). The first call opens
        the log, as `Client.connect` does, which blocks the loop briefly once.
        """
        if self._client is None:
            self._client = Client.connect(self._settings)
        return self._client

    @overload
    async def start(
        self, workflow: Workflow[P, R], /, *args: Any, workflow_id: str, **kwargs: Any
    ) -> WorkflowHandle[R]: ...

    @overload
    async def start(
        self, workflow: str | type, /, *args: Any, workflow_id: str, **kwargs: Any
    ) -> WorkflowHandle[Any]: ...

    async def start(
        self, workflow: Any, /, *args: Any, workflow_id: str, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """`Client.start`, with a required ``workflow_id`` and ``id_reuse_policy``
        defaulting to RETURN_EXISTING: a record delivered again returns the run it started.

        Returns once the engine has recorded the start; ``await handle.result()`` would hold
        the agent until the workflow ends, which is rarely what a stream wants.
        """
        if "start_signal" not in kwargs:  # signal-with-start keeps Client's USE_RUNNING default
            kwargs.setdefault("id_reuse_policy", IdReusePolicy.RETURN_EXISTING)
        return await self.client().start(workflow, *args, workflow_id=workflow_id, **kwargs)

    async def signal(
        self, workflow_id: str, signal: Any, /, *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> None:
        """Send ``signal`` (a ``@docket.signal`` method, or its name) to a running workflow;
        returns once it is recorded. Raises WorkflowNotFoundError or ClientError as
        `WorkflowHandle.signal` does."""
        await self.client().get_handle(workflow_id, run_id).signal(signal, *args, **kwargs)

    async def signal_with_start(
        self,
        workflow: Any,
        /,
        *args: Any,
        workflow_id: str,
        signal: Any,
        signal_args: tuple[Any, ...] = (),
        **kwargs: Any,
    ) -> WorkflowHandle[Any]:
        """Signal the running run of ``workflow_id``, starting one first if there is none:
        `Client.start` with ``start_signal``. Suits a stream of items that each feed a
        long-lived workflow (a cart, an account) that the first item creates."""
        return await self.client().start(
            workflow,
            *args,
            workflow_id=workflow_id,
            start_signal=signal,
            start_signal_args=signal_args,
            **kwargs,
        )

    async def close(self) -> None:
        """Close the client if this object opened it (the app's shutdown does this)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def _on_shutdown(self, app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends on_before_shutdown after its consumer stopped: no agent still uses it
        await self.close()
