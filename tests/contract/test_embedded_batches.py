"""The embedded log's storage: one row per append and partition (docket/log/batches.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docket.errors import LogError
from docket.log import batches
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog

TOPIC = "docket.t.commands"
OTHER = "docket.t.history"

records_strategy = st.lists(
    st.builds(
        OutRecord,
        st.just(TOPIC),
        st.just(0),
        st.text(max_size=20),
        st.binary(max_size=50),
        st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2).map(tuple),
    ),
    min_size=1,
    max_size=30,
)


@given(records_strategy, st.integers(0, 40), st.integers(1, 40))
def test_a_batch_unpacks_to_what_was_packed(records: list[OutRecord], start: int, limit: int) -> None:
    base = 100
    got = batches.unpack(TOPIC, 0, base, 7, batches.pack(records), base + start, limit)
    expected = [(base + i, r.key, r.value, r.headers) for i, r in enumerate(records)][start:][:limit]
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == expected
    assert all(r.ts_us == 7 and r.topic == TOPIC for r in got)


@pytest.fixture
def log(tmp_path: Path):  # type: ignore[no-untyped-def]
    handle = EmbeddedLog(tmp_path, namespace="t", partitions=2)
    yield handle
    handle.close()


def test_reads_start_inside_a_batch_and_span_batches(log: EmbeddedLog) -> None:
    for n in range(3):
        log.append([OutRecord(TOPIC, 0, f"k{n}", bytes([n, i])) for i in range(5)]
                   + [OutRecord(OTHER, 1, "x", b"other")])
    rows = log._db.execute("SELECT COUNT(*) FROM batches WHERE topic=?", (TOPIC,)).fetchone()
    assert rows == (3,)  # one row per append and partition
    assert [r.offset for r in log.read(TOPIC, 0, 7, 4)] == [7, 8, 9, 10]
    assert [r.value for r in log.read(TOPIC, 0, 4, 2)] == [bytes([0, 4]), bytes([1, 0])]
    assert [r.offset for r in log.read(TOPIC, 0, 0, 100)] == list(range(15))
    assert log.read(TOPIC, 0, 15, 10) == []
    assert [r.offset for r in log.read(OTHER, 1, 0, 10)] == [0, 1, 2]


def test_a_record_that_cannot_be_stored_is_refused_and_nothing_is_written(log: EmbeddedLog) -> None:
    with pytest.raises(LogError, match=r"docket.t.commands\[0\] has key 3.*keys must be str"):
        log.append([OutRecord(OTHER, 0, "k", b"fine"), OutRecord(TOPIC, 0, 3, b"v")])  # type: ignore[arg-type]
    assert log.end_offset(OTHER, 0) == 0 and log.read(OTHER, 0, 0, 10) == []


def test_a_log_of_one_row_per_record_is_moved_to_batches(tmp_path: Path) -> None:
    """The format before batches: each original append becomes one batch, offsets, keys,
    values, headers and times unchanged, and appends go on from the old head."""
    db = sqlite3.connect(tmp_path / "log.sqlite3")
    db.execute("CREATE TABLE records (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
               "offset INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
               "ts_us INTEGER NOT NULL, headers BLOB, PRIMARY KEY (topic, partition, offset)) "
               "WITHOUT ROWID")
    db.execute("CREATE TABLE heads (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
               "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID")
    old = [(TOPIC, 0, 0, "a", b"0", 10, None), (TOPIC, 0, 1, "b", b"1", 10, None),
           (TOPIC, 0, 2, "c", b"2", 20, b'[["h", "dg=="]]'), (OTHER, 1, 0, "d", b"3", 10, None)]
    db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", old)
    db.executemany("INSERT INTO heads VALUES (?, ?, ?)", [(TOPIC, 0, 3), (OTHER, 1, 1)])
    db.commit()
    db.close()
    log = EmbeddedLog(tmp_path, namespace="t", partitions=2)
    try:
        got = [(r.topic, r.partition, r.offset, r.key, r.value, r.ts_us, r.headers)
               for topic, p in ((TOPIC, 0), (OTHER, 1)) for r in log.read(topic, p, 0, 10)]
        assert got == [(TOPIC, 0, 0, "a", b"0", 10, ()), (TOPIC, 0, 1, "b", b"1", 10, ()),
                       (TOPIC, 0, 2, "c", b"2", 20, (("h", b"v"),)), (OTHER, 1, 0, "d", b"3", 10, ())]
        assert log._db.execute("SELECT COUNT(*) FROM batches").fetchone() == (3,)
        kinds = log._db.execute("SELECT type FROM sqlite_master WHERE name='records'").fetchall()
        assert kinds == [("view",)]  # the table is gone; the guard against older versions is there
        log.append([OutRecord(TOPIC, 0, "e", b"4")])
        assert [r.offset for r in log.read(TOPIC, 0, 2, 10)] == [2, 3]
    finally:
        log.close()


def test_an_older_docket_fails_loudly_on_a_log_of_batches(log: EmbeddedLog, tmp_path: Path) -> None:
    """What a Docket from before batches does on opening a log: it must fail, not read an
    empty `records` table and write records this version would never see."""
    log.append([OutRecord(TOPIC, 0, "k", b"v")])
    old = sqlite3.connect(tmp_path / "log.sqlite3")
    try:
        old.execute("CREATE TABLE IF NOT EXISTS records (topic TEXT NOT NULL, partition INTEGER "
                    "NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
                    "ts_us INTEGER NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID")
        assert "headers" not in {row[1] for row in old.execute("PRAGMA table_info(records)")}
        with pytest.raises(sqlite3.OperationalError, match="view"):
            old.execute("ALTER TABLE records ADD COLUMN headers BLOB")
        with pytest.raises(sqlite3.OperationalError, match="view"):
            old.execute("INSERT INTO records VALUES (?, 0, 1, 'k', x'00', 1)", (TOPIC,))
        assert old.execute("SELECT upgrade_docket FROM records").fetchone()[0].startswith(
            "written by a newer Docket")
    finally:
        old.close()
    assert [r.value for r in log.read(TOPIC, 0, 0, 10)] == [b"v"]


def test_reads_with_no_room_return_nothing(log: EmbeddedLog) -> None:
    log.append([OutRecord(TOPIC, 0, "k", b"v")] * 3)
    assert log.read(TOPIC, 0, 0, 0) == [] and log.read(TOPIC, 0, 0, -1) == []


def test_converting_a_log_another_process_converted_first_does_nothing(log: EmbeddedLog) -> None:
    """Two processes opening an old log at once: the second finds the guard view, not the
    table, once it holds the write lock."""
    log.append([OutRecord(TOPIC, 0, "k", b"v")])
    with log._transaction():
        assert batches.migrate_records_table(log._db) == 0
    assert [r.value for r in log.read(TOPIC, 0, 0, 10)] == [b"v"]
