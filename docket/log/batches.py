"""How the embedded log stores records: one SQLite row per append and partition.

Kafka stores record batches, not records, and so does the embedded log: every append
writes one row per (topic, partition) it touches, holding all of that append's records
for it. A row per record cost about 10 µs of SQLite work per record (a B-tree insert
keyed on topic, partition and offset), and most of a workflow's records are appended in
batches of dozens, so this is most of what the log costs the engine.

A row's ``records`` blob: ``<count: u32>``, then ``count`` triples of u32 lengths (key,
value, headers), then each record's key (UTF-8), value and packed headers, in order. All
integers little-endian. Records of one row share its ``ts_us`` and have consecutive
offsets from ``base_offset`` to ``last_offset``; the row is keyed on ``last_offset`` so
that a read from any offset finds the batch holding it first.

Logs written by earlier versions, one row per record in a ``records`` table, are copied
into batches (one per original append) when a process of this version first opens them.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import struct
from collections.abc import Iterator, Sequence

from docket.log.base import Headers, LogRecord, OutRecord

# A rowid table with an index, not WITHOUT ROWID: a WITHOUT ROWID row keeps only about
# 1 KB in its B-tree page and spills the rest to a mostly empty overflow page, which made
# a log of small appends 2.6 times the size.
BATCHES_TABLE = """
CREATE TABLE IF NOT EXISTS batches (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, last_offset INTEGER NOT NULL,
    base_offset INTEGER NOT NULL, ts_us INTEGER NOT NULL, records BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_offset ON batches (topic, partition, last_offset);
"""

# Where the one-row-per-record table was, a view: a Docket from before batches then fails
# on opening the log (it cannot add its headers column to a view) or on its first append,
# instead of reading an empty table and writing records this version would not see.
OLDER_VERSIONS_GUARD = """
CREATE VIEW IF NOT EXISTS records AS SELECT
    'written by a newer Docket (record batches): upgrade this process' AS upgrade_docket;
"""

MAX_MIGRATED_BATCH = 10_000  # records per batch when converting: appends were smaller

INSERT_BATCH = (
    "INSERT INTO batches (topic, partition, last_offset, base_offset, ts_us, records) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

_COUNT = struct.Struct("<I")


class RecordFormatError(ValueError):
    """A record that cannot be stored: its key is not a str or its value not bytes."""


def pack(records: Sequence[OutRecord]) -> bytes:
    """The ``records`` blob of one batch (see the module docstring)."""
    lengths: list[int] = []
    parts: list[bytes] = []
    for record in records:
        key, value = record.key, record.value
        if not isinstance(key, str) or not isinstance(value, bytes | bytearray | memoryview):
            raise RecordFormatError(
                f"record for {record.topic}[{record.partition}] has key {key!r} and a value of "
                f"type {type(value).__name__}: keys must be str and values bytes"
            )
        encoded = key.encode()
        headers = _pack_headers(record.headers) if record.headers else b""
        lengths += (len(encoded), len(value), len(headers))
        parts += (encoded, value, headers)
    return b"".join([struct.pack(f"<I{len(lengths)}I", len(records), *lengths), *parts])


def unpack(
    topic: str, partition: int, base: int, ts_us: int, blob: bytes, start: int, limit: int
) -> list[LogRecord]:
    """The records of one batch from offset ``start`` on, at most ``limit`` of them."""
    (count,) = _COUNT.unpack_from(blob)
    lengths = struct.unpack_from(f"<{3 * count}I", blob, 4)
    position = 4 + 12 * count
    out = []
    for index in range(count):
        key_length, value_length, headers_length = lengths[3 * index : 3 * index + 3]
        offset = base + index
        if offset < start:
            position += key_length + value_length + headers_length
            continue
        key_end = position + key_length
        value_end = key_end + value_length
        end = value_end + headers_length
        out.append(
            LogRecord(
                topic,
                partition,
                offset,
                blob[position:key_end].decode(),
                blob[key_end:value_end],
                ts_us,
                _unpack_headers(blob[value_end:end]) if headers_length else (),
            )
        )
        if len(out) == limit:
            break
        position = end
    return out


def read(
    db: sqlite3.Connection, topic: str, partition: int, offset: int, limit: int
) -> list[LogRecord]:
    """Up to ``limit`` records of ``topic[partition]`` from ``offset`` on."""
    if limit <= 0:
        return []
    cursor = db.execute(
        "SELECT base_offset, ts_us, records FROM batches WHERE topic=? AND partition=? "
        "AND last_offset>=? ORDER BY last_offset",
        (topic, partition, offset),
    )
    out: list[LogRecord] = []
    try:
        for base, ts_us, blob in cursor:
            out += unpack(topic, partition, base, ts_us, blob, offset, limit - len(out))
            if len(out) >= limit:
                break
    finally:
        cursor.close()  # ends the statement, and with it this read's snapshot of the log
    return out


def has_records_table(db: sqlite3.Connection) -> bool:
    """Whether the log still has the one-row-per-record table (not the guard view)."""
    found = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='records'"
    return db.execute(found).fetchone() is not None


def migrate_records_table(db: sqlite3.Connection) -> int:
    """Copy a ``records`` table (one row per record, before batches) into ``batches``,
    one batch per original append, and drop it. Call inside a write transaction: another
    process may have converted it meanwhile, and then nothing is done. Returns how many
    batches were made."""
    if not has_records_table(db):
        return 0
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    headers = "headers" if "headers" in columns else "NULL"
    rows = db.execute(
        f"SELECT topic, partition, offset, key, value, ts_us, {headers} FROM records "
        "ORDER BY topic, partition, offset"
    )
    copied = 0
    for batch in _appends(rows):
        db.execute(INSERT_BATCH, batch)
        copied += 1
    db.execute("DROP TABLE records")
    db.execute(OLDER_VERSIONS_GUARD)
    return copied


def _appends(
    rows: Iterator[tuple[str, int, int, str, bytes, int, bytes | None]],
) -> Iterator[tuple[str, int, int, int, int, bytes]]:
    """Group per-record rows back into batches: consecutive offsets of one partition that
    were appended together (the same ts_us)."""
    current: list[OutRecord] = []
    where: tuple[str, int, int, int] | None = None  # topic, partition, base offset, ts_us
    for topic, partition, offset, key, value, ts_us, packed in rows:
        record = OutRecord(topic, partition, key, bytes(value), _unpack_headers(packed or b""))
        if where is not None:
            t, p, base, ts = where
            if (
                (t, p, ts) == (topic, partition, ts_us)
                and base + len(current) == offset
                and len(current) < MAX_MIGRATED_BATCH
            ):
                current.append(record)
                continue
            yield (t, p, base + len(current) - 1, base, ts, pack(current))
        where, current = (topic, partition, offset, ts_us), [record]
    if where is not None:
        t, p, base, ts = where
        yield (t, p, base + len(current) - 1, base, ts, pack(current))


def _pack_headers(headers: Headers) -> bytes:
    """JSON of [name, base64 value] pairs (headers are rare: user topics only)."""
    return json.dumps([[k, base64.b64encode(v).decode()] for k, v in headers]).encode()


def _unpack_headers(packed: bytes) -> Headers:
    if not packed:
        return ()
    return tuple((k, base64.b64decode(v)) for k, v in json.loads(packed))
