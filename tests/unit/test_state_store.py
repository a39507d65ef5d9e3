"""Opening a partition's RocksDB store: who holds it, and what a damaged one says."""

from __future__ import annotations

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
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
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
