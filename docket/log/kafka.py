"""The Kafka log: the log interface (docket/log/base.py) on a Kafka-protocol cluster.

What maps to what:

- a topic partition is a Kafka topic partition; Docket provisions its topics (`ensure_topic`)
  with the namespace's partition count and per-topic retention and replication
  (docket/log/provisioning.py), and never lets the client library pick a partition;
- records stay Avro: their schemas are published for outside readers, and with a schema
  registry they travel in Confluent's framing (docket/log/registry.py);
- an append with consumer offsets is one Kafka transaction (records plus
  ``send_offsets_to_transaction``); an append without offsets goes through an idempotent
  producer. Offsets are increasing, not gap-free: transaction markers take offsets too;
- consumer offsets are the group's committed offsets, stored without group membership
  (an assign-only consumer per group), so any process can read them;
- partition ownership ("leases") is Kafka's own group protocol: each Docket group has a
  small membership topic ``<group>.members`` with one partition per log partition, joined
  as the Kafka group of the same name, and the partitions Kafka assigns a member of that
  topic are the log partitions it owns. An append that commits
  offsets for a partition its member no longer holds raises PartitionFencedError.

Correctness does not rest on transactions alone (some brokers, like the Tansu broker the
tests run against, show aborted records to read_committed consumers and accept offsets from
stale members): outputs carry deterministic ids and every reader dedupes, as DESIGN.md
requires. The broker's end-of-partition offset is not trusted either (Tansu reports the
start of the last batch): ends come from this process's delivery reports and from reading.
It is a lower bound all the same, so a read to the end reads at least that far (see
`_TopicReader`): what another process appended before the read began is seen.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from docket.errors import ConfigurationError, LogError, PartitionFencedError
from docket.faults import armed, fault
from docket.log.base import AppendWaiters, Commits, LogRecord, OutRecord, Owner, owner_in
from docket.log.provisioning import TopicPolicy, TopicSpec
from docket.log.registry import RegistryFraming, SchemaRegistry, schema_records
from docket.log.topics import Topics, is_docket_topic

LOCAL_WAIT_S = 0.02  # how often pollers look for other processes' appends
SESSION_TIMEOUT_MS = 6000
FALSY = {"0", "false", "no", "off"}
FETCH_WAIT_MS = 5  # see _TopicReader


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ConfigurationError(
            "the Kafka backend needs confluent-kafka: pip install confluent-kafka"
        ) from exc
    return confluent_kafka


class KafkaLog:
    # a transaction spans produce requests; a kill between them leaves part of it visible
    # to read_uncommitted readers, and the rest is only written when its input runs again
    reads_whole_appends = False

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        namespace: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        session_timeout_ms: int | None = None,
        topic_policy: TopicPolicy | None = None,
        schema_registry: SchemaRegistry | None = None,
    ) -> None:
        """``config`` passes librdkafka settings through (TLS, SASL, ...); its
        ``session.timeout.ms`` sets the group session timeout: how soon partitions of a dead
        member move, and about twice how long a first join takes. ``topic_policy`` says how
        topics are created (docket/log/provisioning.py); with ``schema_registry``, records
        are Confluent-framed on Kafka (docket/log/registry.py)."""
        kafka = _kafka()
        from confluent_kafka.admin import AdminClient

        self._kafka = kafka
        self.namespace = namespace
        self.partitions = partitions
        conf = dict(config or {})
        session = conf.pop("session.timeout.ms", None)  # a consumer-group setting only
        self._fetch_wait_ms = int(conf.pop("fetch.wait.max.ms", FETCH_WAIT_MS))  # readers only
        # "transactions=false" (DOCKET_KAFKA_TRANSACTIONS) for brokers that have none (Azure
        # Event Hubs, for one): appends then store records, then offsets (see `append`)
        self._transactions = str(conf.pop("transactions", "true")).lower() not in FALSY
        self._session_ms = session_timeout_ms or int(session or SESSION_TIMEOUT_MS)
        self._conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, **conf}
        self._admin: Any = AdminClient(self._conf)
        self._producer = kafka.Producer(
            {**self._conf, "enable.idempotence": True, "linger.ms": 0, "acks": "all"}
        )
        self._txn_producer: Any = None
        self._topics: set[str] = set()
        self._policy = topic_policy or TopicPolicy()
        self._framing = RegistryFraming(schema_registry) if schema_registry else None
        self._schemas_published = False
        self._readers: dict[str, _TopicReader] = {}
        self._offset_clients: dict[str, Any] = {}
        self._members: dict[tuple[str, str], _Member] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self._generation = 0
        self._waiters = AppendWaiters()
        self._lock = threading.Lock()
        self._user_topics: dict[str, int] = {}  # user topic -> its partition count
        self._sized: dict[str, int] = {}  # membership topic of a sized group -> its count
        self._check_cluster()
        self._adopt_partition_count()

    # -- topics ------------------------------------------------------------------------------

    def _check_cluster(self) -> None:
        try:
            self._admin.list_topics(timeout=5)
        except self._kafka.KafkaException as exc:
            raise ConfigurationError(
                f"cannot reach Kafka at {self._conf['bootstrap.servers']!r}: {exc}; check "
                "DOCKET_BOOTSTRAP_SERVERS and that the brokers are up"
            ) from exc

    def _adopt_partition_count(self) -> None:
        """As on the embedded log, the count is fixed when the namespace is created: an
        existing namespace keeps the count of its topics, whatever this process asked for."""
        metadata = self._admin.list_topics(timeout=10).topics.get(Topics(self.namespace).commands)
        if metadata is not None and len(metadata.partitions) != self.partitions:
            logging.getLogger("docket").warning(
                "namespace %r already has %d partitions; ignoring the requested %d (the "
                "partition count is fixed when a namespace is created)",
                self.namespace,
                len(metadata.partitions),
                self.partitions,
            )
            self.partitions = len(metadata.partitions)

    def ensure_topic(self, topic: str, *, config: Mapping[str, str] | None = None) -> None:
        """Create ``topic`` as the topic policy says (partitions: the namespace's count, or 1
        for the layout and schemas topics) unless it exists; refuse a topic that exists
        with another count (keys would route to the wrong partitions). The first topic a
        log touches also gets the namespace's schemas published (docket/log/registry.py)."""
        if topic in self._topics:
            return
        NewTopic = self._kafka.admin.NewTopic
        spec = self._policy.spec(self.namespace, topic, self.partitions)
        partitions = spec.partitions
        metadata = self._admin.list_topics(topic=None, timeout=10).topics.get(topic)
        if metadata is not None:
            self._warn_on_drift(topic, spec)
        else:
            settings = {**spec.config, **(config or {})}
            futures = self._admin.create_topics(
                [NewTopic(topic, partitions, spec.replication_factor, config=settings)]
            )
            try:
                futures[topic].result(10)
            except self._kafka.KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise LogError(f"cannot create Kafka topic {topic!r}: {exc}") from exc
            metadata = self._admin.list_topics(topic=None, timeout=10).topics.get(topic)
        count = len(metadata.partitions) if metadata is not None else partitions
        if count != partitions:
            raise ConfigurationError(
                f"Kafka topic {topic!r} has {count} partitions but namespace "
                f"{self.namespace!r} uses {partitions}: keys would reach the wrong "
                "partitions. Use the namespace's partition count"
            )
        self._topics.add(topic)
        if not self._schemas_published:
            self._schemas_published = True
            self._publish_schemas()

    def _warn_on_drift(self, topic: str, spec: TopicSpec) -> None:
        """Docket never alters an existing topic: it says where one differs from its policy
        (a topic from an older Docket, or a changed DOCKET_*_RETENTION_MS)."""
        if not spec.config:
            return
        admin = self._kafka.admin
        resource = admin.ConfigResource(admin.ResourceType.TOPIC, topic)
        try:
            described = self._admin.describe_configs([resource])[resource].result(10)
        except self._kafka.KafkaException:
            return  # not allowed to describe it: nothing to compare
        drift = spec.differences({name: entry.value for name, entry in described.items()})
        if drift:
            logging.getLogger("docket").warning(
                "Kafka topic %r has %s where Docket provisions %s; Docket does not change "
                "existing topics: alter them if you want its settings (docs/operations.md, "
                "'Kafka topics')",
                topic,
                drift,
                {name: spec.config[name] for name in drift},
            )

    def _publish_schemas(self) -> None:
        """Put the schemas this Docket writes on the namespace's schemas topic for readers
        outside Docket, those not there yet (a restart adds nothing). Docket does not need
        them, so a failure is only a warning."""
        topic = Topics(self.namespace).schemas
        try:
            present: set[str] = set()
            offset = 0
            while batch := self.read(topic, 0, offset, 10_000):
                present.update(r.key for r in batch)
                offset = batch[-1].offset + 1
            records = schema_records()
            self.append([OutRecord(topic, 0, k, v) for k, v in records.items() if k not in present])
        except (LogError, ConfigurationError, self._kafka.KafkaException) as exc:
            logging.getLogger("docket").warning(
                "could not publish Docket's schemas to Kafka topic %r: %s", topic, exc
            )
        finally:
            reader = self._readers.pop(topic, None)
            if reader is not None:
                reader.close()

    def _ensure(self, topic: str) -> None:
        """Docket's topics have the namespace's count (`ensure_topic`); user topics, and the
        membership topics of groups that consume them, have counts of their own."""
        if topic in self._topics:
            return
        sized = self._sized.get(topic)
        if sized is not None:
            self._topic_count(topic, create_with=sized, require=sized)
            self._topics.add(topic)
        elif is_docket_topic(topic):
            self.ensure_topic(topic)
        else:
            self.partitions_of(topic)

    def partitions_of(self, topic: str) -> int:
        """The broker's count for a user topic that exists (it is the user's: any count);
        one that does not is created with the namespace's count."""
        if is_docket_topic(topic):
            return self.partitions
        known = self._user_topics.get(topic)
        if known is None:
            known = self._user_topics[topic] = self._topic_count(topic, create_with=self.partitions)
        return known

    def size_group(self, group: str, partitions: int) -> None:
        self._sized[f"{group}.members"] = partitions

    def _topic_count(self, topic: str, *, create_with: int, require: int | None = None) -> int:
        """The partition count of ``topic``, created with ``create_with`` partitions if it
        does not exist; ``require``: refuse any other count."""
        metadata = self._admin.list_topics(topic=None, timeout=10).topics.get(topic)
        if metadata is None:
            spec = self._policy.spec(self.namespace, topic, create_with)
            new = self._kafka.admin.NewTopic(
                topic, create_with, spec.replication_factor, config=dict(spec.config)
            )
            try:
                self._admin.create_topics([new])[topic].result(10)
            except self._kafka.KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise LogError(f"cannot create Kafka topic {topic!r}: {exc}") from exc
            metadata = self._admin.list_topics(topic=None, timeout=10).topics.get(topic)
        count = len(metadata.partitions) if metadata is not None else create_with
        if require is not None and count != require:
            raise ConfigurationError(
                f"Kafka topic {topic!r} has {count} partitions but must have {require} (one per "
                "partition of the topic its group consumes): delete it, it only holds membership"
            )
        return count

    # -- appending ------------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[OutRecord],
        commits: Commits | None = None,
        *,
        owner: Owner | None = None,
        atomic: bool = True,
        sync: bool = True,  # the broker's acks are the durability: nothing to skip here
    ) -> None:
        if not records and not commits:
            return
        for topic in {r.topic for r in records} | {t for _, t, _ in commits or {}}:
            self._ensure(topic)
        if owner is not None and commits:
            self._check_leases(owner, {(g, p) for g, _, p in commits})
        if self._framing is not None:
            records = self._framing.outgoing(records)
        delivered: list[tuple[str, int, int]] = []
        errors: list[str] = []
        ts_ms = int(time.time() * 1000)

        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                delivered.append((msg.topic(), msg.partition(), msg.offset()))

        try:
            if commits and not records:  # offsets alone: a plain commit per group
                self._commit_offsets(commits)
            elif commits and not (atomic and self._transactions):
                # at least once: the records, then the offsets; after a crash between the
                # two the input comes back, and its outputs, identical, are deduped
                _produce(self._producer, records, report, ts_ms)
                self._producer.flush()
                if not errors:
                    self._commit_offsets(commits)
            elif commits:
                self._append_transaction(records, commits, report, ts_ms)
            else:
                _produce(self._producer, records, report, ts_ms)
                self._producer.flush()
        except self._kafka.KafkaException as exc:
            raise LogError(f"Kafka append of {len(records)} records failed: {exc}") from exc
        if errors:
            raise LogError(f"Kafka append failed for {len(errors)} records: {errors[0]}")
        with self._lock:
            for topic, partition, offset in delivered:
                key = (topic, partition)
                self._ends[key] = max(self._ends.get(key, 0), offset + 1)
            self._generation += 1
        self._waiters.wake_all()

    def _append_transaction(
        self, records: Sequence[OutRecord], commits: Commits, report: Any, ts_ms: int
    ) -> None:
        producer = self._transactional()
        producer.begin_transaction()
        try:
            if armed("kafka_mid_transaction"):  # crash tests: only part of it reaches the broker
                history = [r for r in records if r.topic.endswith(".history")]
                _produce(producer, history, report, ts_ms)
                producer.flush()
                fault("kafka_mid_transaction")
                records = [r for r in records if not r.topic.endswith(".history")]
            _produce(producer, records, report, ts_ms)
            if armed("kafka_before_commit"):  # crash tests: all of it reached the broker
                producer.flush()
                fault("kafka_before_commit")
            for group, offsets in self._offsets_by_group(commits).items():
                metadata = self._offset_client(group).consumer_group_metadata()
                producer.send_offsets_to_transaction(offsets, metadata, 10)
            producer.commit_transaction(30)
        except self._kafka.KafkaException:
            try:
                producer.abort_transaction(10)
            except self._kafka.KafkaException:
                self._txn_producer = None  # fenced or fatal: a new one next time
            raise

    def _commit_offsets(self, commits: Commits) -> None:
        for group, offsets in self._offsets_by_group(commits).items():
            self._offset_client(group).commit(offsets=offsets, asynchronous=False)

    def _offsets_by_group(self, commits: Commits) -> dict[str, list[Any]]:
        by_group: dict[str, list[Any]] = {}
        for (group, topic, partition), offset in commits.items():
            by_group.setdefault(group, []).append(
                self._kafka.TopicPartition(topic, partition, offset)
            )
        return by_group

    def _transactional(self) -> Any:
        if self._txn_producer is None:
            producer = self._kafka.Producer(
                {
                    **self._conf,
                    "transactional.id": f"docket.{self.namespace}.{uuid.uuid4().hex}",
                    "linger.ms": 0,
                }
            )
            producer.init_transactions(30)
            self._txn_producer = producer
        return self._txn_producer

    # -- reading ---------------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        return self._read(topic, partition, offset, limit, to_the_end=True)

    def poll(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        """Like `read`, but without waiting to learn that the partition has nothing more:
        it waits only for records this process knows were appended (loops come back)."""
        return self._read(topic, partition, offset, limit, to_the_end=False)

    def _read(
        self, topic: str, partition: int, offset: int, limit: int, *, to_the_end: bool
    ) -> list[LogRecord]:
        self._ensure(topic)
        reader = self._readers.get(topic)
        if reader is None:
            reader = self._readers[topic] = _TopicReader(self, topic)
        records = reader.read(partition, offset, limit, to_the_end=to_the_end)
        if records:
            with self._lock:
                key = (topic, partition)
                self._ends[key] = max(self._ends.get(key, 0), records[-1].offset + 1)
        return records

    def end_offset(self, topic: str, partition: int) -> int:
        """The next offset of the partition, found by reading to its end from the highest
        offset this process knows of (brokers' high watermarks are not trusted, see above)."""
        with self._lock:
            known = self._ends.get((topic, partition), 0)
        while True:
            records = self.read(topic, partition, known, 10_000)
            if not records:
                return known
            known = records[-1].offset + 1

    def committed(self, group: str, topic: str, partition: int) -> int:
        self._ensure(topic)
        consumer = self._offset_client(group)
        try:
            (tp,) = consumer.committed([self._kafka.TopicPartition(topic, partition)], timeout=10)
        except self._kafka.KafkaException as exc:
            raise LogError(
                f"cannot read {group!r}'s offset of {topic}[{partition}]: {exc}"
            ) from exc
        offset: int = tp.offset
        return max(0, offset)

    def _offset_client(self, group: str) -> Any:
        """An assign-only consumer of ``group``: reads committed offsets and lends its group
        metadata to transactions, without joining the group."""
        client = self._offset_clients.get(group)
        if client is None:
            client = self._offset_clients[group] = self._kafka.Consumer(
                {**self._conf, "group.id": group, "enable.auto.commit": False}
            )
        return client

    # -- waiting -----------------------------------------------------------------------------------

    def change_token(self) -> object:
        return self._generation

    async def wait_for_append(self, token: object, timeout: float) -> None:
        """Wakes at once for this process's appends; other processes' appends are seen by
        polling, at most LOCAL_WAIT_S later."""
        if self._generation != token:
            return
        await self._waiters.wait(min(timeout, LOCAL_WAIT_S))

    # -- groups --------------------------------------------------------------------------------------

    def _member(self, group: str, member: str) -> _Member:
        found = self._members.get((group, member))
        if found is None:
            # its own Kafka group: the group named ``group`` only stores offsets, and Kafka
            # takes commits without a generation only from groups that have no members
            topic = f"{group}.members"
            self._ensure(topic)
            found = self._members[(group, member)] = _Member(self, topic, member, topic)
            # a member will commit: pay for the transactional producer's set-up and the
            # group coordinator's lookup now, not in the first workflow's latency
            if self._transactions:
                self._transactional()
            self.committed(group, topic, 0)
        return found

    def heartbeat(self, group: str, member: str) -> list[int]:
        return sorted(self._member(group, member).poll())

    def acquire(self, group: str, partitions: Iterable[int], member: str) -> list[int]:
        held = self._member(group, member).poll()
        return [p for p in partitions if p in held]

    def release(self, group: str, partitions: Iterable[int], member: str) -> None:
        """Nothing to do: Kafka moves partitions between members itself."""

    def leave(self, group: str, member: str) -> None:
        found = self._members.pop((group, member), None)
        if found is not None:
            found.close()

    def topics(self, prefix: str) -> list[str]:
        names = self._admin.list_topics(timeout=10).topics
        return sorted(t for t in names if t.startswith(prefix))

    def live_groups(self, prefix: str) -> list[str]:
        """Groups with members, found through their membership topics (some brokers, Tansu
        among them, list no groups) and the Kafka group state of each."""
        memberships = [t for t in self.topics(prefix) if t.endswith(".members")]
        if not memberships:
            return []
        quiet = {"EMPTY", "DEAD"}
        live = []
        futures = self._admin.describe_consumer_groups(memberships, request_timeout=10)
        for name, future in futures.items():
            try:
                state = future.result().state.name
            except self._kafka.KafkaException as exc:
                raise LogError(f"cannot describe Kafka group {name!r}: {exc}") from exc
            if state not in quiet:
                live.append(name.removesuffix(".members"))
        return sorted(live)

    def _check_leases(self, owners: Owner, leases: set[tuple[str, int]]) -> None:
        for group, partition in leases:
            owner = owner_in(owners, group)
            found = self._members.get((group, owner))
            if found is None or partition not in found.assigned:
                raise PartitionFencedError(
                    f"partition {partition} of group {group!r} is not assigned to {owner} any "
                    "more: another process took it over; this process stops working on it"
                )

    def close(self) -> None:
        for found in self._members.values():
            found.close()
        self._members.clear()
        for reader in self._readers.values():
            reader.close()
        for client in self._offset_clients.values():
            client.close()
        self._producer.flush(10)
        if self._txn_producer is not None:
            self._txn_producer.flush(10)
        if self._framing is not None:
            self._framing.registry.close()
        # librdkafka clients stop when they are freed: drop every reference now
        self._producer = self._txn_producer = self._admin = None
        self._readers.clear()
        self._offset_clients.clear()


class _TopicReader:
    """One consumer per topic, assigned to the partitions being read. Records come back per
    partition from a buffer; a read at another offset than where the last read ended seeks.
    A read returns nothing only at the end of the partition: after a seek, or when this
    process knows of records further on, it waits for the fetch (partition-EOF events say
    where the end is, as the broker saw it while fetching).

    An end the fetch reported earlier is stale once another process appends: the consumer
    fetches those records a few milliseconds later, and a read to the end in between would
    stop short (a client that had its workflow's result read a history without its close).
    So a read to the end that has nothing buffered asks the broker where the partition ends
    now, once, and waits until the fetch has reported an end at least that far."""

    WAIT_S = 10.0

    def __init__(self, log: KafkaLog, topic: str) -> None:
        self._log = log
        self._kafka = log._kafka
        self.topic = topic
        self._consumer = log._kafka.Consumer(
            {
                **log._conf,
                "group.id": f"docket-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                # read_committed would stall every reader of a partition for the transaction
                # timeout when a process dies mid-transaction; outputs are deduped anyway
                "isolation.level": "read_uncommitted",
                # an offset that retention deleted resumes at the oldest record left, not
                # (librdkafka's default) at the end, which would skip what is still there
                "auto.offset.reset": "earliest",
                # how long the broker may hold a fetch that finds nothing new. Kafka answers
                # as soon as records arrive, so more only saves idle traffic there; Tansu
                # holds every such fetch to the end. DOCKET_KAFKA_FETCH_WAIT_MAX_MS overrides
                "fetch.wait.max.ms": log._fetch_wait_ms,
                "fetch.error.backoff.ms": 5,
            }
        )
        self._cursor: dict[int, int] = {}  # partition -> where the next read should start
        self._buffer: dict[int, list[LogRecord]] = {}
        self._eof: dict[int, int] = {}  # partition -> the end offset last reported

    def read(self, partition: int, offset: int, limit: int, *, to_the_end: bool) -> list[LogRecord]:
        seek_end = self._seek(partition, offset) if self._cursor.get(partition) != offset else None
        self._fetch(0.0)
        end_now = 0  # to the end with nothing at hand: the broker's end, asked during this read
        if to_the_end and not self._buffer[partition]:
            end_now = self._broker_end(partition) if seek_end is None else seek_end
        deadline = time.monotonic() + self.WAIT_S
        while not self._buffer[partition] and self._more_expected(
            partition, offset, to_the_end, end_now
        ):
            if time.monotonic() > deadline:
                raise LogError(
                    f"no records from {self.topic}[{partition}] at offset {offset} within "
                    f"{self.WAIT_S} s, though more were expected: is the broker up?"
                )
            self._fetch(0.05)
        buffered = self._buffer[partition]
        out, self._buffer[partition] = buffered[:limit], buffered[limit:]
        if out:
            self._cursor[partition] = out[-1].offset + 1
        return out

    def _more_expected(self, partition: int, offset: int, to_the_end: bool, end_now: int) -> bool:
        """Whether records may follow: this process appended past ``offset`` (or past the
        end the fetch last reported), or, ``to_the_end``, the fetch has not reported the end
        since the last record, or not as far as the broker's ``end_now``. (An end beyond
        ``offset`` with no record before it is not "more": commit markers take offsets too;
        the fetch passes them and reports the end behind them.)"""
        eof = self._eof.get(partition)
        with self._log._lock:
            known_end = max(self._log._ends.get((self.topic, partition), 0), end_now)
        if eof is None:
            return to_the_end or known_end > offset
        return known_end > eof

    def _broker_end(self, partition: int) -> int:
        """The partition's high watermark, asked of the broker now (one round trip): every
        record acknowledged before the call is below it. Tansu may undercount it (the last
        batch's first offset + 1), never overcount, so reading to it never waits in vain."""
        TopicPartition = self._kafka.TopicPartition
        try:
            marks = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10, cached=False
            )
        except self._kafka.KafkaException as exc:
            raise LogError(f"cannot ask where {self.topic}[{partition}] ends: {exc}") from exc
        if marks is None:
            raise LogError(f"cannot ask where {self.topic}[{partition}] ends: no answer in 10 s")
        high: int = marks[1]
        return high

    def _seek(self, partition: int, offset: int) -> int:
        """Start fetching at ``offset``; return the broker's end, asked on the way."""
        TopicPartition = self._kafka.TopicPartition
        if partition in self._cursor:
            self._consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        # Past the end a broker may neither fail the fetch nor report the end (Tansu just
        # waits), and its high watermark may undercount (Tansu: the last batch's first
        # offset + 1). So a read at or past that mark starts one record before it and skips
        # what it did not ask for: the fetch then reaches the true end and reports it.
        high = self._broker_end(partition)
        start = offset if offset < high else max(high - 1, 0)
        self._consumer.incremental_assign([TopicPartition(self.topic, partition, start)])
        self._cursor[partition] = offset
        self._buffer[partition] = []
        self._eof.pop(partition, None)
        return high

    def _fetch(self, timeout: float) -> None:
        """Take what the consumer has: wait up to ``timeout`` for the first batch, then drain."""
        eof_code = self._kafka.KafkaError._PARTITION_EOF
        first = self._consumer.poll(timeout) if timeout > 0 else None  # returns on the first
        while True:
            # consume() waits out its whole timeout unless the batch fills: drain with 0
            messages = ([first] if first is not None else []) + self._consumer.consume(10_000, 0)
            first = None
            if not messages:
                return
            for message in messages:
                partition = message.partition()
                error = message.error()
                if error is not None:
                    if error.code() == eof_code:
                        self._eof[partition] = message.offset()
                    continue
                key = message.key()
                value = message.value() or b""
                if self._log._framing is not None:
                    value = self._log._framing.incoming(value)
                record = LogRecord(
                    self.topic,
                    partition,
                    message.offset(),
                    key.decode("utf-8", "replace") if key is not None else "",
                    value,
                    message.timestamp()[1] * 1000,
                    tuple((k, v or b"") for k, v in message.headers() or ()),
                )
                buffered = self._buffer.setdefault(partition, [])
                if record.offset >= self._cursor.get(partition, 0) and (
                    not buffered or record.offset > buffered[-1].offset
                ):
                    buffered.append(record)
                    self._eof.pop(partition, None)

    def close(self) -> None:
        self._consumer.close()


class _Member:
    """A member of a Docket group: a consumer subscribed to the group's membership topic.

    A thread polls it, so rebalances complete without waiting for the engine's next sync
    (the group protocol needs every member to rejoin); the engine reads ``assigned``.

    Rebalancing is cooperative (the ``cooperative-sticky`` assignor): a rebalance revokes
    only the partitions that move, and members keep working on the others meanwhile,
    instead of every member stopping everything at every join or leave.
    """

    def __init__(self, log: KafkaLog, group: str, member: str, topic: str) -> None:
        self.assigned: frozenset[int] = frozenset()  # replaced, never mutated: read by the loop
        self._joined = threading.Event()
        self._stop = threading.Event()
        self._consumer = log._kafka.Consumer(
            {
                **log._conf,
                "group.id": group,
                "client.id": member,
                "enable.auto.commit": False,
                "session.timeout.ms": log._session_ms,
                "heartbeat.interval.ms": max(100, log._session_ms // 6),
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        self._wait_s = max(30.0, log._session_ms / 1000 * 5)
        self._consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._thread = threading.Thread(
            target=self._run, name=f"docket-member-{group}", daemon=True
        )
        self._thread.start()
        if not self._joined.wait(self._wait_s):
            raise LogError(f"{member} could not join group {group!r} within {self._wait_s} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._consumer.poll(0.05)

    # Cooperative callbacks carry increments: what is added, what is taken away. (The
    # client applies them itself once the callback returns.)
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.assigned = self.assigned | {tp.partition for tp in partitions}
        self._joined.set()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self.assigned = self.assigned - {tp.partition for tp in partitions}

    def poll(self) -> set[int]:
        """What is assigned now."""
        return set(self.assigned)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _produce(producer: Any, records: Sequence[OutRecord], report: Any, ts_ms: int) -> None:
    """Queue ``records`` on ``producer``, each to the partition Docket chose."""
    for r in records:
        extra = {"headers": list(r.headers)} if r.headers else {}
        producer.produce(
            r.topic,
            r.value,
            r.key,
            partition=r.partition,
            timestamp=ts_ms,
            on_delivery=report,
            **extra,
        )


__all__ = ["KafkaLog"]
