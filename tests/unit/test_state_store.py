"""Opening a partition's RocksDB store: who holds it, and what a damaged one says."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docket.errors import StateStoreCorruptedError, StateStoreLockedError
from docket.state.store import PartitionStore, lock_holder

HOLD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from docket.state.store import PartitionStore
    store = PartitionStore.open(Path(sys.argv[1]), 0)
    print("open", flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def test_a_store_held_elsewhere_names_the_holder_and_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "p0"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        files = sorted(p.name for p in path.iterdir())
        for _ in range(5):  # a new owner tries every second while it waits
            with pytest.raises(StateStoreLockedError) as caught:
                PartitionStore.open(path, 0)
            assert caught.value.holder == holder.pid == lock_holder(path)
            assert f"is held by process {holder.pid}" in str(caught.value)
        assert sorted(p.name for p in path.iterdir()) == files  # no info log rotated per try
    finally:
        holder.communicate("\n", timeout=30)
    assert lock_holder(path) is None
    PartitionStore.open(path, 0).close()


def test_a_damaged_store_is_corrupted_not_locked(tmp_path: Path) -> None:
    """RocksDB's "block checksum mismatch" contains "lock": it must not read as a lock, or
    a new owner would wait for ever instead of saying to rebuild the store."""
    path = tmp_path / "p0"
    store = PartitionStore.open(path, 0)
    batch = store.batch()
    for i in range(2000):
        batch.put_execution(f"wf-{i}", bytes(200))
    batch.commit(1)
    store._executions.flush()  # into a table file (it would be in the WAL only)
    store.close()
    tables = [p for p in path.iterdir() if p.suffix == ".sst"]
    assert tables
    for table in tables:
        data = bytearray(table.read_bytes())
        for i in range(0, len(data) - 64, 512):  # every block: whichever RocksDB reads first
            data[i : i + 16] = b"\xff" * 16
        table.write_bytes(bytes(data))
    with pytest.raises(StateStoreCorruptedError, match="corrupted"):
        store = PartitionStore.open(path, 0)
        list(store.executions())


def test_a_locked_store_whose_path_says_corrupt_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RocksDB's message holds the store's path: a data directory named "corrupt-data" must
    not turn a held store into "delete the directory". The pre-open check is bypassed to
    reach the message itself, as on a system without /proc/locks."""
    path = tmp_path / "corrupt-data" / "p0"
    held = PartitionStore.open(path, 0)
    monkeypatch.setattr("docket.state.store.lock_holder", lambda _path: None)
    try:
        with pytest.raises(StateStoreLockedError, match="held by another process"):
            PartitionStore.open(path, 0)
    finally:
        held.close()


def test_the_holder_is_found_when_proc_locks_names_another_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On btrfs and overlayfs /proc/locks gives a device number stat() does not: the holder
    is then confirmed by having the LOCK file open."""
    path = tmp_path / "p0"
    held = PartitionStore.open(path, 0)
    try:
        inode = str((path / "LOCK").stat().st_ino)
        bystander = subprocess.Popen(["sleep", "60"])

        def proc_locks(pid: int) -> str:  # the real line for our LOCK, on device ff:ff
            return f"1: POSIX  ADVISORY  WRITE {pid} ff:ff:{inode} 0 EOF\n"

        original = Path.read_text
        table = proc_locks(os.getpid())
        monkeypatch.setattr(
            Path,
            "read_text",
            lambda self, *a, **k: table if str(self) == "/proc/locks" else original(self, *a, **k),
        )
        try:
            assert lock_holder(path) == os.getpid()
            table = proc_locks(bystander.pid)  # same inode, but it has no such file open
            assert lock_holder(path) is None
        finally:
            bystander.kill()
            bystander.wait()
    finally:
        held.close()


def test_a_failed_restore_closes_the_store_so_the_next_try_can_open_it(tmp_path: Path) -> None:
    from docket.log.topics import Topics
    from docket.streams.restore import open_owned

    class BrokenLog:
        reads_whole_appends = True

        def __getattr__(self, name: str) -> object:
            raise RuntimeError("the log is down")

    path = tmp_path / "p0"
    with pytest.raises(RuntimeError, match="the log is down"):
        open_owned(BrokenLog(), Topics("default"), path, 0, "g", "m", lambda w, c: None)  # type: ignore[arg-type]
    assert lock_holder(path) is None
    PartitionStore.open(path, 0).close()
