"""The Kafka log: the log interface (docket/log/base.py) on a Kafka-protocol cluster.

What maps to what:

- a topic partition is a Kafka topic partition; Docket provisions its topics (`ensure_topic`)
  with the namespace's partition count and never lets the client library pick a partition;
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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from docket.errors import ConfigurationError, LogError, PartitionFencedError
from docket.log.base import Commits, LogRecord, OutRecord
from docket.log.topics import Topics

LOCAL_WAIT_S = 0.02  # how often pollers look for other processes' appends
SESSION_TIMEOUT_MS = 6000


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ConfigurationError(
            "the Kafka backend needs confluent-kafka: pip install confluent-kafka"
        ) from exc
    return confluent_kafka


class KafkaLog:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        namespace: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        session_timeout_ms: int | None = None,
    ) -> None:
        """``config`` passes librdkafka settings through (TLS, SASL, ...); its
        ``session.timeout.ms`` sets the group session timeout: how soon partitions of a dead
        member move, and about twice how long a first join takes."""
        kafka = _kafka()
        from confluent_kafka.admin import AdminClient

        self._kafka = kafka
        self.namespace = namespace
        self.partitions = partitions
        conf = dict(config or {})
        session = conf.pop("session.timeout.ms", None)  # a consumer-group setting only
        self._session_ms = session_timeout_ms or int(session or SESSION_TIMEOUT_MS)
        self._conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, **conf}
        self._admin: Any = AdminClient(self._conf)
        self._producer = kafka.Producer(
            {**self._conf, "enable.idempotence": True, "linger.ms": 0, "acks": "all"}
        )
        self._txn_producer: Any = None
        self._topics: set[str] = set()
        self._readers: dict[str, _TopicReader] = {}
        self._offset_clients: dict[str, Any] = {}
        self._members: dict[tuple[str, str], _Member] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self._generation = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._lock = threading.Lock()
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
        """Create ``topic`` with the namespace's partition count unless it exists; refuse a
        topic that exists with another count (keys would route to the wrong partitions)."""
        if topic in self._topics:
            return
        NewTopic = self._kafka.admin.NewTopic
        # the layout topic has one partition whatever the count: it says what the count is
        partitions = 1 if topic == Topics(self.namespace).layout else self.partitions
        metadata = self._admin.list_topics(topic=None, timeout=10).topics.get(topic)
        if metadata is None:
            futures = self._admin.create_topics(
                [NewTopic(topic, partitions, 1, config=dict(config or {}))]
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

    # -- appending ------------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[OutRecord],
        commits: Commits | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        if not records and not commits:
            return
        for topic in {r.topic for r in records} | {t for _, t, _ in commits or {}}:
            self.ensure_topic(topic)
        if owner is not None and commits:
            self._check_leases(owner, {(g, p) for g, _, p in commits})
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
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _wake(waiter)

    def _append_transaction(
        self, records: Sequence[OutRecord], commits: Commits, report: Any, ts_ms: int
    ) -> None:
        producer = self._transactional()
        producer.begin_transaction()
        try:
            _produce(producer, records, report, ts_ms)
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
        self.ensure_topic(topic)
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
        self.ensure_topic(topic)
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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(min(timeout, LOCAL_WAIT_S), _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()

    # -- groups --------------------------------------------------------------------------------------

    def _member(self, group: str, member: str) -> _Member:
        found = self._members.get((group, member))
        if found is None:
            # its own Kafka group: the group named ``group`` only stores offsets, and Kafka
            # takes commits without a generation only from groups that have no members
            topic = f"{group}.members"
            self.ensure_topic(topic)
            found = self._members[(group, member)] = _Member(self, topic, member, topic)
            # a member will commit: pay for the transactional producer's set-up and the
            # group coordinator's lookup now, not in the first workflow's latency
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

    def _check_leases(self, owner: str, leases: set[tuple[str, int]]) -> None:
        for group, partition in leases:
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
        # librdkafka clients stop when they are freed: drop every reference now
        self._producer = self._txn_producer = self._admin = None
        self._readers.clear()
        self._offset_clients.clear()


class _TopicReader:
    """One consumer per topic, assigned to the partitions being read. Records come back per
    partition from a buffer; a read at another offset than where the last read ended seeks.
    A read returns nothing only at the end of the partition: after a seek, or when this
    process knows of records further on, it waits for the fetch (partition-EOF events say
    where the end is, as the broker saw it while fetching)."""

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
                "fetch.wait.max.ms": 5,
                "fetch.error.backoff.ms": 5,
            }
        )
        self._cursor: dict[int, int] = {}  # partition -> where the next read should start
        self._buffer: dict[int, list[LogRecord]] = {}
        self._eof: dict[int, int] = {}  # partition -> the end offset last reported

    def read(self, partition: int, offset: int, limit: int, *, to_the_end: bool) -> list[LogRecord]:
        if self._cursor.get(partition) != offset:
            self._seek(partition, offset)
        self._fetch(0.0)
        deadline = time.monotonic() + self.WAIT_S
        while not self._buffer[partition] and self._more_expected(partition, offset, to_the_end):
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

    def _more_expected(self, partition: int, offset: int, to_the_end: bool) -> bool:
        """Whether records may follow: this process appended past ``offset`` (or past the
        end the fetch last reported), or, ``to_the_end``, the fetch has not reported the end
        since the last record. (An end beyond ``offset`` with no record before it is not
        "more": commit markers take offsets too.)"""
        eof = self._eof.get(partition)
        with self._log._lock:
            known_end = self._log._ends.get((self.topic, partition), 0)
        if eof is None:
            return to_the_end or known_end > offset
        return known_end > eof

    def _seek(self, partition: int, offset: int) -> None:
        TopicPartition = self._kafka.TopicPartition
        if partition in self._cursor:
            self._consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        # Past the end a broker may neither fail the fetch nor report the end (Tansu just
        # waits), and its high watermark may undercount (Tansu: the last batch's first
        # offset + 1). So a read at or past that mark starts one record before it and skips
        # what it did not ask for: the fetch then reaches the true end and reports it.
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), 10, False
        )
        start = offset if offset < high else max(high - 1, 0)
        self._consumer.incremental_assign([TopicPartition(self.topic, partition, start)])
        self._cursor[partition] = offset
        self._buffer[partition] = []
        self._eof.pop(partition, None)

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
                record = LogRecord(
                    self.topic,
                    partition,
                    message.offset(),
                    key.decode() if key is not None else "",
                    message.value() or b"",
                    message.timestamp()[1] * 1000,
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
    """

    def __init__(self, log: KafkaLog, group: str, member: str, topic: str) -> None:
        self.assigned: set[int] = set()
        self._joined = threading.Event()
        self._stable = threading.Event()
        self._stop = threading.Event()
        self._consumer = log._kafka.Consumer(
            {
                **log._conf,
                "group.id": group,
                "client.id": member,
                "enable.auto.commit": False,
                "session.timeout.ms": log._session_ms,
                "heartbeat.interval.ms": max(100, log._session_ms // 6),
                "partition.assignment.strategy": "range",
            }
        )
        self._wait_s = max(30.0, log._session_ms / 1000 * 5)
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(
            target=self._run, name=f"docket-member-{group}", daemon=True
        )
        self._thread.start()
        if not self._joined.wait(self._wait_s):
            raise LogError(f"{member} could not join group {group!r} within {self._wait_s} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._consumer.poll(0.05)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.assigned = {tp.partition for tp in partitions}
        self._joined.set()
        self._stable.set()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._stable.clear()
        self.assigned = set()

    def poll(self) -> set[int]:
        """What is assigned now (waiting out a rebalance in progress)."""
        self._stable.wait(self._wait_s)
        return set(self.assigned)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _produce(producer: Any, records: Sequence[OutRecord], report: Any, ts_ms: int) -> None:
    """Queue ``records`` on ``producer``, each to the partition Docket chose."""
    for r in records:
        producer.produce(
            r.topic, r.value, r.key, partition=r.partition, timestamp=ts_ms, on_delivery=report
        )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


__all__ = ["KafkaLog"]
