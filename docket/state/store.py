"""One RocksDB store per partition: the only module that opens rocksdict.

Column families:
    executions  workflow_id -> encoded ExecutionState of its latest run
    history     workflow_id \\0 run_id \\0 event_id (8 bytes, big-endian) -> encoded Event
    meta        checkpoint (next history offset to fold) and format version
    stopped     workflow_id -> b"": executions with deferred commands (to resume on start)

Every poll batch is one WriteBatch that includes the checkpoint, so the store is always a
consistent prefix of the history topic and recovery is "fold history from the checkpoint".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

from rocksdict import AccessType, BlockBasedOptions, Options, Rdict, WriteBatch

from docket.errors import StateStoreCorruptedError, StateStoreError, StateStoreLockedError

FORMAT_VERSION = b"1"
_CFS = ("executions", "history", "meta", "stopped")
_CHECKPOINT = b"history_offset"
_FORMAT = b"format"
_BE = struct.Struct(">Q")


def history_prefix(workflow_id: str, run_id: str) -> bytes:
    return f"{workflow_id}\0{run_id}\0".encode()


def history_key(workflow_id: str, run_id: str, event_id: int) -> bytes:
    return history_prefix(workflow_id, run_id) + _BE.pack(event_id)


class PartitionStore:
    """The state of one partition. Open it with `open` (read-write) or `open_read_only`."""

    def __init__(self, db: Rdict, path: Path, partition: int, *, read_only: bool) -> None:
        self._db = db
        self.path = path
        self.partition = partition
        self.read_only = read_only
        self._executions = db.get_column_family("executions")
        self._history = db.get_column_family("history")
        self._meta = db.get_column_family("meta")
        self._h_executions = db.get_column_family_handle("executions")
        self._h_history = db.get_column_family_handle("history")
        self._h_meta = db.get_column_family_handle("meta")
        self._stopped = db.get_column_family("stopped")
        self._h_stopped = db.get_column_family_handle("stopped")

    @classmethod
    def open(cls, path: Path, partition: int) -> PartitionStore:
        db = open_rocksdb(path, partition, families=_CFS)
        store = cls(db, path, partition, read_only=False)
        store._check_format()
        return store

    @classmethod
    def open_read_only(cls, path: Path, partition: int) -> PartitionStore | None:
        """A snapshot view that works while an engine holds the store; None if it doesn't exist."""
        if not (path / "CURRENT").exists():
            return None
        db = _open(path, partition, Options(raw_mode=True), AccessType.read_only())
        return cls(db, path, partition, read_only=True)

    def _check_format(self) -> None:
        found = self._meta.get(_FORMAT)
        if found is None:
            self._meta[_FORMAT] = FORMAT_VERSION
        elif found != FORMAT_VERSION:
            raise StateStoreCorruptedError(
                f"state for partition {self.partition} at {self.path} has format {found!r}, this "
                f"Docket reads {FORMAT_VERSION!r}. Delete the directory: it is rebuilt from the log"
            )

    # -- reads ---------------------------------------------------------------------------------

    def checkpoint(self) -> int:
        value = self._meta.get(_CHECKPOINT)
        return 0 if value is None else int(value)

    def execution(self, workflow_id: str) -> bytes | None:
        value: bytes | None = self._executions.get(workflow_id.encode())
        return value

    def stopped_ids(self) -> list[str]:
        return [bytes(key).decode() for key in self._stopped.keys()]  # type: ignore[arg-type]

    def executions(self) -> Iterator[bytes]:
        yield from self._executions.values()

    def history(self, workflow_id: str, run_id: str, after_event_id: int = 0) -> Iterator[bytes]:
        prefix = history_prefix(workflow_id, run_id)
        start = prefix + _BE.pack(after_event_id + 1)
        for key, value in self._history.items(from_key=start):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw_mode
            if not key.startswith(prefix):
                break
            yield value

    # -- writes --------------------------------------------------------------------------------

    def batch(self) -> StoreBatch:
        return StoreBatch(self)

    def close(self) -> None:
        """Close, and drop the column families: RocksDB keeps the store's file lock while any
        handle of the database lives, and the next owner (maybe in another process) waits."""
        if "_executions" not in self.__dict__:
            return  # closed already
        self._db.close()
        del self._executions, self._history, self._meta, self._stopped
        del self._h_executions, self._h_history, self._h_meta, self._h_stopped


class StoreBatch:
    """Everything one poll batch changes, written atomically with the checkpoint."""

    def __init__(self, store: PartitionStore) -> None:
        self._store = store
        self._wb = WriteBatch(raw_mode=True)

    def put_execution(self, workflow_id: str, state: bytes) -> None:
        self._wb.put(workflow_id.encode(), state, self._store._h_executions)

    def mark_stopped(self, workflow_id: str, stopped: bool) -> None:
        if stopped:
            self._wb.put(workflow_id.encode(), b"", self._store._h_stopped)
        else:
            self._wb.delete(workflow_id.encode(), self._store._h_stopped)

    def put_event(self, workflow_id: str, run_id: str, event_id: int, event: bytes) -> None:
        self._wb.put(history_key(workflow_id, run_id, event_id), event, self._store._h_history)

    def commit(self, checkpoint: int) -> None:
        self._wb.put(_CHECKPOINT, str(checkpoint).encode(), self._store._h_meta)
        try:
            self._store._db.write(self._wb)
        except Exception as exc:  # rocksdict raises plain Exception
            raise StateStoreError(
                f"cannot write state for partition {self._store.partition} at {self._store.path}: {exc}"
            ) from exc


def open_rocksdb(path: Path, partition: int, *, families: tuple[str, ...]) -> Rdict:
    """Open (creating) a read-write RocksDB with these column families; errors translated."""
    path.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    return _open(path, partition, options, None, families)


def lock_holder(path: Path) -> int | None:
    """The pid holding RocksDB's lock on the store at ``path``, read from /proc/locks.

    Asked before opening a store another process may hold: a failed open is not free
    (RocksDB rotates the store's info log first, a file each try). Not by opening ``LOCK``
    and asking fcntl: closing any descriptor of a file drops this process's own POSIX
    locks on it. None when free, or off Linux (the open then finds out)."""
    try:
        stat = (path / "LOCK").stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}"
    for line in table.splitlines():
        fields = line.split()  # "1: POSIX ADVISORY WRITE <pid> <maj:min:inode> 0 EOF"
        if len(fields) < 6 or fields[1] != "POSIX":
            continue
        lock_device, _, inode = fields[5].rpartition(":")
        if inode != str(stat.st_ino):
            continue
        pid = int(fields[4])
        # btrfs and overlayfs show another device in /proc/locks than stat() gives: an
        # inode match there is confirmed by the holder having the file itself open
        if lock_device == device or _has_open(pid, stat):
            return pid
    return None


def _has_open(pid: int, stat: os.stat_result) -> bool:
    try:
        descriptors = os.scandir(f"/proc/{pid}/fd")
    except OSError:
        return False
    with descriptors:
        for entry in descriptors:
            try:
                target = os.stat(entry.path)
            except OSError:
                continue
            if (target.st_dev, target.st_ino) == (stat.st_dev, stat.st_ino):
                return True
    return False


def _family_options(name: str) -> Options:
    """Options of one column family. ``executions`` is read by point lookups that mostly
    miss (every start asks for a state its new workflow ID does not have yet): bloom
    filters, in its SST files and its memtable, answer a miss without searching either."""
    options = Options(raw_mode=True)
    if name == "executions":
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)  # ~1% false positives; full filters, not per block
        options.set_block_based_table_factory(table)
        options.set_memtable_prefix_bloom_ratio(0.02)  # of the memtable's size (64 MB)
        options.set_memtable_whole_key_filtering(True)
    return options


def _open(
    path: Path,
    partition: int,
    options: Options,
    access: AccessType | None,
    cf_names: tuple[str, ...] = _CFS,
) -> Rdict:
    families = {name: _family_options(name) for name in cf_names}
    if access is None and (holder := lock_holder(path)) is not None:
        raise StateStoreLockedError(
            f"state for partition {partition} at {path} is held by "
            f"{'this process' if holder == os.getpid() else f'process {holder}'}. Stop the "
            "other engine or use another data directory",
            holder=holder,
        )
    try:
        if access is None:
            return Rdict(str(path), options, column_families=families)
        return Rdict(str(path), options, column_families=families, access_type=access)
    except Exception as exc:  # rocksdict raises plain Exception; classify by message
        text = str(exc)
        # by RocksDB's status prefix, not by words: the path, or "block checksum", may hold them
        if text.startswith("Corruption:"):
            raise StateStoreCorruptedError(
                f"state for partition {partition} at {path} is corrupted: {text}. It can be "
                "rebuilt from the history topic: delete the directory and restart the engine"
            ) from exc
        if text.startswith("IO error: While lock file") or "lock hold by current process" in text:
            raise StateStoreLockedError(
                f"state for partition {partition} at {path} is held by another process: {text}. "
                "Stop the other engine or use another data directory"
            ) from exc
        raise StateStoreError(
            f"cannot open state for partition {partition} at {path}: {text}"
        ) from exc
