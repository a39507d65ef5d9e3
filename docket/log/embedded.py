"""The embedded log: a durable, multi-process log in one SQLite database (WAL mode).

Why SQLite: it is in the standard library, transactional and safe across processes, so a
CLI in another process can append a signal while the engine runs, and an append plus the
offsets it consumed commit as one unit. ``synchronous=FULL`` makes every acknowledged
transaction durable; the engine batches, so that is one fsync per poll batch.

Offsets are gap-free per partition because writers serialise on ``BEGIN IMMEDIATE`` and
take the next offset from the ``heads`` table inside the transaction.

Consumer groups: members heartbeat into ``members``; partitions are assigned round-robin
over the sorted live members; a member works on a partition only while it holds its lease
(``leases``), and appends that commit offsets are fenced on that lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from docket.errors import ConfigurationError, LogError, PartitionFencedError
from docket.log import batches
from docket.log.base import (
    AppendWaiters,
    Commits,
    LogRecord,
    OutRecord,
    Owner,
    owner_in,
)
from docket.log.topics import is_docket_topic
from docket.log.wakeup import Wakeups
from docket.log.writelock import WriteLock

SESSION_TIMEOUT_US = 6_000_000
POLL_INTERVAL = 0.005
VERSION_CHECK_S = 0.002
_HOST = socket.gethostname()

_SCHEMA = (
    batches.BATCHES_TABLE
    + batches.OLDER_VERSIONS_GUARD
    + """
CREATE TABLE IF NOT EXISTS heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat_us INTEGER NOT NULL,
    PRIMARY KEY (grp, member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL, partition INTEGER NOT NULL, owner TEXT NOT NULL, expires_us INTEGER NOT NULL,
    PRIMARY KEY (grp, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS namespaces (
    namespace TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS user_topics (
    topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
"""
)


def member_id(role: str, tag: str | None = None) -> str:
    """A member id that lets peers on this host notice at once when our process died.

    Members sort by host, pid, then ``tag`` (random if not given): an engine gives all its
    roles one tag, so the engines of one process, like those of several, split every
    group's partitions alike, and each worker runs the steps of the processor beside it."""
    return f"{role}@{_HOST}:{os.getpid()}:{tag or os.urandom(3).hex()}"


def _is_dead(member: str) -> bool:
    try:
        host, pid, _ = member.rsplit("@", 1)[1].split(":")
        pid_number = int(pid)
    except (ValueError, IndexError):  # not a member id of ours: only its heartbeat counts
        return False
    if host != _HOST:
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now_us() -> int:
    return time.time_ns() // 1000


class EmbeddedLog:
    """The SQLite log. One instance per process; use it from one thread (the event loop)."""

    reads_whole_appends = True  # one SQLite transaction: all of it is visible, or none

    def __init__(
        self, data_dir: Path, *, namespace: str, partitions: int, create: bool = True
    ) -> None:
        self.path = Path(data_dir) / "log.sqlite3"
        if not create and not self.path.exists():
            raise ConfigurationError(
                f"no Docket data at {self.path}: the data directory is missing or empty. "
                "Start an engine there first ('docket run -A module:app') or pass --data-dir"
            )
        self._closers: list[Callable[[], None]] = []  # what close() undoes, newest first
        try:
            self._open(namespace, partitions, create)
        except BaseException:
            self.close()  # what was opened before the error: no fd or pipe outlives it
            raise

    def _open(self, namespace: str, partitions: int, create: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # beside the database: writers queue on it (writelock.py says why)
            self._write_lock = WriteLock(self.path.with_suffix(".lock"))
            self._closers.append(self._write_lock.close)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._closers.append(self._db.close)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LogError(f"cannot open the embedded log at {self.path}: {exc}") from exc
        self._migrate_records_table()
        self._user_topics: dict[str, int] = {}  # user topic -> partitions, as recorded
        self._group_sizes: dict[str, int] = {}  # group -> partitions, when not the namespace's
        self.namespace = namespace
        self.partitions = self._register_namespace(namespace, partitions, create)
        self._generation = 0
        self._waiters = AppendWaiters()
        self._version = -1
        self._version_checked_at = -1.0
        self._ends: dict[tuple[str, int], int] = {}  # next offset per partition, for poll
        self._wakeups = Wakeups(self.path.parent)
        self._closers.append(self._wakeups.close)

    def _register_namespace(self, namespace: str, partitions: int, create: bool) -> int:
        with self._transaction():
            row = self._db.execute(
                "SELECT partitions FROM namespaces WHERE namespace=?", (namespace,)
            ).fetchone()
            if row is None:
                if not create:
                    known = [n for (n,) in self._db.execute("SELECT namespace FROM namespaces")]
                    raise ConfigurationError(
                        f"namespace {namespace!r} does not exist in {self.path} (it has: "
                        f"{', '.join(map(repr, known)) or 'none'}); check DOCKET_NAMESPACE, or start "
                        "an engine with that namespace first"
                    )
                self._db.execute("INSERT INTO namespaces VALUES (?, ?)", (namespace, partitions))
                return partitions
        existing = int(row[0])
        if create and existing != partitions:
            logging.getLogger("docket").warning(
                "namespace %r already has %d partitions; ignoring the requested %d (the partition "
                "count is fixed when a namespace is created)",
                namespace,
                existing,
                partitions,
            )
        return existing

    def _transaction(self, sync: bool = True) -> _Txn:
        return _Txn(self._db, self.path, sync, self._write_lock)

    def _migrate_records_table(self) -> None:
        """Logs written one row per record (before batches) are copied into batches once."""
        if not batches.has_records_table(self._db):  # checked again under the write lock
            return
        with self._transaction():
            copied = batches.migrate_records_table(self._db)
        logging.getLogger("docket").info(
            "%s: moved the log to one row per append (%d batches)", self.path, copied
        )

    # -- appending ---------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[OutRecord],
        commits: Commits | None = None,
        *,
        owner: Owner | None = None,
        atomic: bool = True,  # SQLite is always atomic, and that costs nothing extra
        sync: bool = True,
    ) -> None:
        if not records and not commits:
            return
        by_partition: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for record in records:
            by_partition[(record.topic, record.partition)].append(record)
        try:  # packed before the transaction: the write lock is held for less
            packed = [
                (where, len(group), batches.pack(group)) for where, group in by_partition.items()
            ]
        except batches.RecordFormatError as exc:
            raise LogError(f"cannot append to {self.path}: {exc}") from None
        ts = _now_us()
        db = self._db
        with self._transaction(sync):
            if owner is not None and commits:
                self._check_leases(owner, {(g, p) for g, _, p in commits})
            rows = []
            heads = []
            for (topic, partition), count, blob in packed:
                row = db.execute(
                    "SELECT next_offset FROM heads WHERE topic=? AND partition=?",
                    (topic, partition),
                ).fetchone()
                base = row[0] if row else 0
                rows.append((topic, partition, base + count - 1, base, ts, blob))
                heads.append((topic, partition, base + count))
            db.executemany(batches.INSERT_BATCH, rows)
            db.executemany("INSERT OR REPLACE INTO heads VALUES (?, ?, ?)", heads)
            if commits:
                db.executemany(
                    "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, ?)",
                    [(g, t, p, o) for (g, t, p), o in commits.items()],
                )
        for topic, partition, end in heads:
            self._ends[(topic, partition)] = end
        self._generation += 1
        self._waiters.wake_all()
        self._wakeups.notify()

    def _check_leases(self, owners: Owner, leases: set[tuple[str, int]]) -> None:
        for group, partition in leases:
            owner = owner_in(owners, group)
            row = self._db.execute(
                "SELECT owner FROM leases WHERE grp=? AND partition=?", (group, partition)
            ).fetchone()
            if row is None or row[0] != owner:
                holder = row[0] if row else "nobody"
                raise PartitionFencedError(
                    f"partition {partition} of group {group!r} is held by {holder}, not {owner}: "
                    "another process took it over; this process stops working on it"
                )

    # -- reading -------------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        try:
            return batches.read(self._db, topic, partition, offset, limit)
        except sqlite3.Error as exc:
            raise LogError(f"cannot read {topic}[{partition}] at offset {offset}: {exc}") from exc

    def poll(self, topic: str, partition: int, offset: int, limit: int) -> list[LogRecord]:
        """`read` for poll loops that take a `change_token` every round.

        Skips SQLite when nothing can have been appended to the partition past ``offset``:
        this process's own appends are tracked exactly, and any other process's commit
        changes ``data_version``, which the last `change_token` call checked (and which
        then reads every partition's end from ``heads``, in one query). An append racing
        with the poll is seen next round, because `wait_for_append` returns at once when
        the token has changed.
        """
        known_end = self._ends.get((topic, partition))
        if known_end is not None and offset >= known_end:
            return []
        records = self.read(topic, partition, offset, limit)
        if len(records) < limit:
            self._ends[(topic, partition)] = records[-1].offset + 1 if records else offset
        return records

    def end_offset(self, topic: str, partition: int) -> int:
        row = self._db.execute(
            "SELECT next_offset FROM heads WHERE topic=? AND partition=?", (topic, partition)
        ).fetchone()
        return int(row[0]) if row else 0

    def committed(self, group: str, topic: str, partition: int) -> int:
        row = self._db.execute(
            "SELECT offset FROM offsets WHERE grp=? AND topic=? AND partition=?",
            (group, topic, partition),
        ).fetchone()
        return int(row[0]) if row else 0

    def change_token(self) -> object:
        # Other processes' commits show in data_version; asking costs a statement, and every
        # poller asks every round, so ask at most every VERSION_CHECK_S (this process's own
        # appends are tracked exactly by the generation counter).
        now = time.monotonic()
        if now - self._version_checked_at < VERSION_CHECK_S:
            return (self._generation, self._version)
        self._version_checked_at = now
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:  # another process committed: learn every new end at once
            self._version = version
            self._ends = {
                (topic, partition): end
                for topic, partition, end in self._db.execute(
                    "SELECT topic, partition, next_offset FROM heads"
                )
            }
        return (self._generation, version)

    async def wait_for_append(self, token: object, timeout: float) -> None:
        self._wakeups.watch(self._peer_appended)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.change_token() == token:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self._waiters.wait(min(remaining, POLL_INTERVAL))

    def _peer_appended(self) -> None:
        self._version_checked_at = -1.0  # make the next change_token look at data_version
        self._waiters.wake_all()

    # -- groups ----------------------------------------------------------------------------------
    # Membership and leases are written without an fsync (sync=False): they only matter to
    # processes on this machine, which a power loss stops too, and a process killed
    # outright loses nothing the OS already has. A group's sync (every second, for each
    # role) writes twice; with an fsync each write stalled the event loop for milliseconds.

    def heartbeat(self, group: str, member: str) -> list[int]:
        now = _now_us()
        with self._transaction(sync=False):
            self._db.execute(
                "INSERT OR REPLACE INTO members VALUES (?, ?, ?)", (group, member, now)
            )
            rows = self._db.execute(
                "SELECT member, heartbeat_us FROM members WHERE grp=?", (group,)
            ).fetchall()
            dead = [
                m
                for m, hb in rows
                if m != member and (hb < now - SESSION_TIMEOUT_US or _is_dead(m))
            ]
            self._db.executemany(
                "DELETE FROM members WHERE grp=? AND member=?", [(group, m) for m in dead]
            )
        live = sorted(m for m, _ in rows if m not in dead)
        index = live.index(member)
        count = self._group_sizes.get(group, self.partitions)
        return [p for p in range(count) if p % len(live) == index]

    def acquire(self, group: str, partitions: Iterable[int], member: str) -> list[int]:
        now = _now_us()
        held = []
        with self._transaction(sync=False):
            for partition in partitions:
                row = self._db.execute(
                    "SELECT owner, expires_us FROM leases WHERE grp=? AND partition=?",
                    (group, partition),
                ).fetchone()
                if row is None or row[0] == member or row[1] < now or _is_dead(row[0]):
                    self._db.execute(
                        "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                        (group, partition, member, now + SESSION_TIMEOUT_US),
                    )
                    held.append(partition)
        return held

    def release(self, group: str, partitions: Iterable[int], member: str) -> None:
        with self._transaction(sync=False):
            self._db.executemany(
                "DELETE FROM leases WHERE grp=? AND partition=? AND owner=?",
                [(group, p, member) for p in partitions],
            )

    def leave(self, group: str, member: str) -> None:
        with self._transaction(sync=False):
            self._db.execute("DELETE FROM leases WHERE grp=? AND owner=?", (group, member))
            self._db.execute("DELETE FROM members WHERE grp=? AND member=?", (group, member))

    def topics(self, prefix: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT topic FROM heads WHERE substr(topic, 1, ?)=? ORDER BY topic",
            (len(prefix), prefix),
        )
        return [topic for (topic,) in rows]

    def live_groups(self, prefix: str) -> list[str]:
        now = _now_us()
        rows = self._db.execute(
            "SELECT grp, member, heartbeat_us FROM members WHERE substr(grp, 1, ?)=?",
            (len(prefix), prefix),
        ).fetchall()
        live = {g for g, m, hb in rows if hb >= now - SESSION_TIMEOUT_US and not _is_dead(m)}
        return sorted(live)

    def partitions_of(self, topic: str) -> int:
        """A user topic's count is recorded the first time any namespace uses it (the
        namespace's count then), so every namespace sharing the data directory routes its
        keys alike."""
        if is_docket_topic(topic):
            return self.partitions
        known = self._user_topics.get(topic)
        if known is None:
            with self._transaction():
                row = self._db.execute(
                    "SELECT partitions FROM user_topics WHERE topic=?", (topic,)
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO user_topics VALUES (?, ?)", (topic, self.partitions)
                    )
                known = self.partitions if row is None else int(row[0])
            self._user_topics[topic] = known
        return known

    def size_group(self, group: str, partitions: int) -> None:
        self._group_sizes[group] = partitions

    def close(self) -> None:
        """Close the connection, the lock file and this process's wake-up pipe; closing
        twice is harmless."""
        while self._closers:
            self._closers.pop()()


class _Txn:
    """BEGIN IMMEDIATE ... COMMIT, rolling back on error and translating sqlite3 errors."""

    def __init__(self, db: sqlite3.Connection, path: Path, sync: bool, lock: WriteLock) -> None:
        self._db = db
        self._path = path
        self._sync = sync
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()  # the queue before SQLite's lock (writelock.py)
        try:
            if not self._sync:  # WAL + NORMAL: no fsync; the next FULL commit flushes it too
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            try:
                self._restore()
            finally:
                self._lock.release()
            raise LogError(f"cannot begin a transaction on {self._path}: {exc}") from exc

    def _restore(self) -> None:
        if not self._sync:
            self._db.execute("PRAGMA synchronous=FULL")

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self._end(exc)
        finally:
            try:
                self._restore()
            finally:
                self._lock.release()

    def _end(self, exc: BaseException | None) -> None:
        if exc is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise LogError(f"cannot commit to {self._path}: {error}") from error
        else:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, PartitionFencedError):
                raise LogError(f"embedded log {self._path}: {exc}") from exc
