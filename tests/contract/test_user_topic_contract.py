"""What the log interface adds for user topics (docket/log/base.py): record headers, a user
topic's own partition count (`partitions_of`), and groups sized to it (`size_group`); on
the embedded log and on Kafka (a Tansu broker per test)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docket.errors import PartitionFencedError
from docket.log.base import Log, OutRecord
from docket.log.embedded import EmbeddedLog
from docket.log.kafka import KafkaLog
from tests.kafka_broker import Broker

Opener = Callable[[str, int], Log]  # (namespace, partitions) -> a new handle on the same log


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    handles: list[Log] = []
    broker = Broker(tmp_path).start() if request.param == "kafka" else None

    def opener(namespace: str, partitions: int) -> Log:
        if broker is None:
            handle: Log = EmbeddedLog(tmp_path / "log", namespace=namespace, partitions=partitions)
        else:
            handle = KafkaLog(broker.bootstrap, namespace=namespace, partitions=partitions,
                              session_timeout_ms=1000)
        handles.append(handle)
        return handle

    yield opener
    for handle in handles:
        handle.close()
    if broker is not None:
        broker.stop()


def test_headers_round_trip_and_records_without_them_have_none(open_log: Opener) -> None:
    log = open_log("test", 3)
    headers = (("docket-record-id", b"w/r/1"), ("trace", b"\x00\xff"), ("trace", b"again"))
    log.append([OutRecord("orders", 1, "k", b"with", headers), OutRecord("orders", 1, "k", b"without")])
    records = log.read("orders", 1, 0, 10)
    assert [(r.value, r.headers) for r in records] == [(b"with", headers), (b"without", ())]


def test_a_user_topic_keeps_the_count_it_was_created_with(open_log: Opener) -> None:
    small, large = open_log("small", 2), open_log("large", 5)
    assert small.partitions_of("orders") == 2  # created now, with this namespace's count
    assert large.partitions_of("orders") == 2  # the user topic's count, not the namespace's
    assert large.partitions_of("docket.large.commands") == 5
    large.append([OutRecord("orders", 1, "k", b"v")])
    assert [r.value for r in small.read("orders", 1, 0, 10)] == [b"v"]


def test_a_sized_group_owns_the_topic_partitions_and_fences_on_them(open_log: Opener) -> None:
    log, other = open_log("test", 3), open_log("test", 3)
    group = "docket.test.source.orders"
    for handle in (log, other):
        handle.size_group(group, 5)
    assert log.heartbeat(group, "a") == [0, 1, 2, 3, 4]  # five, though the namespace has three
    assert log.acquire(group, [0, 1, 2, 3, 4], "a") == [0, 1, 2, 3, 4]
    log.append([OutRecord("docket.test.commands", 0, "k", b"x")], {(group, "orders", 4): 7}, owner="a")
    assert log.committed(group, "orders", 4) == 7
    with pytest.raises(PartitionFencedError):
        other.append([OutRecord("docket.test.commands", 0, "k", b"y")], {(group, "orders", 4): 9},
                     owner="b")
    assert other.committed(group, "orders", 4) == 7


def test_an_embedded_log_from_before_headers_and_batches_is_moved_to_batches(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.mkdir()
    db = sqlite3.connect(path / "log.sqlite3")
    db.execute("CREATE TABLE records (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
               "offset INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
               "ts_us INTEGER NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID")
    db.execute("CREATE TABLE heads (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
               "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID")
    db.execute("INSERT INTO records VALUES ('docket.t.history', 0, 0, 'w', x'01', 5)")
    db.execute("INSERT INTO heads VALUES ('docket.t.history', 0, 1)")
    db.commit()
    db.close()
    log = EmbeddedLog(path, namespace="t", partitions=1)
    try:
        log.append([OutRecord("docket.t.history", 0, "w", b"\x02", (("h", b"v"),))])
        assert [(r.value, r.headers) for r in log.read("docket.t.history", 0, 0, 10)] == [
            (b"\x01", ()), (b"\x02", (("h", b"v"),))]
    finally:
        log.close()
    again = EmbeddedLog(path, namespace="t", partitions=1)  # opening it again changes nothing
    try:
        assert [r.value for r in again.read("docket.t.history", 0, 0, 10)] == [b"\x01", b"\x02"]
        assert again.read("docket.t.history", 0, 0, 10)[0].ts_us == 5
        assert again._db.execute("SELECT type FROM sqlite_master WHERE name='records'").fetchall() == [("view",)]
    finally:
        again.close()
