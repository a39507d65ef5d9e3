"""Read-side copies of partition stores, caught up from the history topic when asked.

On the embedded log every process of a deployment shares the data directory, so a client
reads the processors' own stores. On Kafka a client may run on a machine whose engine does
not hold the workflow's partition, or has no engine at all; its local stores are stale or
missing. The history topic is the source of truth, so such a process folds it into stores
of its own (the same `restore` an engine runs when it takes a partition), and brings them
up to date from their checkpoint before every read. The first read of a partition folds
all of its history; later ones only what is new.

The stores live in a temporary directory of this process, deleted on close: two client
processes on one machine never contend for a RocksDB lock.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from docket.log.base import Log
from docket.state.store import PartitionStore
from docket.streams.restore import restore


class HistoryReplica:
    def __init__(self, log: Log, history_topic: str) -> None:
        self._log = log
        self._topic = history_topic
        self._dir: Path | None = None
        self._stores: dict[int, PartitionStore] = {}

    def store(self, partition: int) -> PartitionStore:
        """The partition's replica, folded up to the end of its history now."""
        store = self._stores.get(partition)
        if store is None:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="docket-replica-"))
            store = self._stores[partition] = PartitionStore.open(
                self._dir / f"p{partition}", partition
            )
        restore(self._log, self._topic, store, partition)
        return store

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


__all__ = ["HistoryReplica"]
