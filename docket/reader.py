"""Reading executions for describe, history and list: from the partition state stores.

In the engine's process the live stores are used; elsewhere (the CLI, another process) the
stores are opened read-only, which RocksDB allows while an engine holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docket.codec.records import EVENTS, STATES
from docket.errors import WorkflowNotFoundError
from docket.execution.fold import apply, in_chain
from docket.log.partitioner import partition as partition_of
from docket.state.store import PartitionStore
from docket.streams.replica import HistoryReplica


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


@dataclass(frozen=True)
class PendingStep:
    seq: int
    name: str
    attempt: int
    local: bool
    retry_at: datetime | None  # the attempt waits for its backoff until then
    # when a worker began the attempt; None while it is queued, and for steps with no
    # start-to-close, heartbeat or schedule-to-start timeout (only those report their start)
    started_at: datetime | None = None


@dataclass(frozen=True)
class PendingTimer:
    seq: int
    fire_at: datetime


@dataclass(frozen=True)
class WorkflowDescription:
    """What `describe()` and `list()` return."""

    workflow_id: str
    run_id: str
    workflow_type: str
    # running | completed | failed | terminated | cancelled | timed_out | continued_as_new
    status: str
    started_at: datetime
    closed_at: datetime | None
    task_queue: str
    history_length: int
    pending_steps: list[PendingStep] = field(default_factory=list)
    pending_timers: list[PendingTimer] = field(default_factory=list)
    # earlier runs of the chain (continue-as-new), oldest first
    run_chain: list[str] = field(default_factory=list)
    delayed_until: datetime | None = None  # a start delay still runs: the code begins then

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "workflow_type": self.workflow_type,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "task_queue": self.task_queue,
            "history_length": self.history_length,
            "run_chain": list(self.run_chain),
            "delayed_until": self.delayed_until.isoformat() if self.delayed_until else None,
            "pending_steps": [
                {
                    "seq": s.seq,
                    "name": s.name,
                    "attempt": s.attempt,
                    "local": s.local,
                    "retry_at": s.retry_at.isoformat() if s.retry_at else None,
                    "started_at": s.started_at.isoformat() if s.started_at else None,
                }
                for s in self.pending_steps
            ],
            "pending_timers": [
                {"seq": t.seq, "fire_at": t.fire_at.isoformat()} for t in self.pending_timers
            ],
        }


@dataclass(frozen=True)
class HistoryEvent:
    """One history event, decoded: ``type`` is the record name (``StepScheduled``, ...)."""

    event_id: int
    type: str
    timestamp: datetime
    activation: int
    attributes: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "activation": self.activation,
            "attributes": _jsonable(self.attributes),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"encoding", "data"} and isinstance(value["data"], bytes):
            return value["data"].decode("utf-8", "replace")
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def describe_state(state: dict[str, Any]) -> WorkflowDescription:
    return WorkflowDescription(
        workflow_id=state["workflow_id"],
        run_id=state["run_id"],
        workflow_type=state["workflow_type"],
        status=state["status"],
        started_at=_time(state["started_us"]) or datetime.now(UTC),
        closed_at=_time(state["closed_us"]),
        task_queue=state["task_queue"],
        history_length=state["last_event_id"],
        run_chain=list(state["run_chain"]),
        delayed_until=_time(state["start_at_us"]),
        pending_steps=[
            PendingStep(
                s["seq"],
                s["step_name"],
                s["attempt"],
                s["local"],
                _time(s["retry_at_us"]),
                _time(s["started_us"]),
            )
            for s in sorted(state["steps"].values(), key=lambda s: s["seq"])
        ],
        pending_timers=[
            PendingTimer(int(seq), _time(at) or datetime.now(UTC))
            for seq, at in sorted(state["timers"].items(), key=lambda kv: int(kv[0]))
        ],
    )


def to_history_event(event: dict[str, Any]) -> HistoryEvent:
    kind, body = event["body"]
    return HistoryEvent(
        event["event_id"],
        kind,
        _time(event["ts_us"]) or datetime.now(UTC),
        event["activation"],
        dict(body),
    )


class StateReader:
    def __init__(
        self,
        state_dir: Path,
        partitions: int,
        live: Callable[[int], PartitionStore | None] = lambda p: None,
        replica: HistoryReplica | None = None,
    ) -> None:
        """Reads a partition's state from this process's own store when it holds the
        partition (``live``), else from ``replica`` when given (on Kafka: the history topic,
        folded here), else from a read-only snapshot of the store in ``state_dir``."""
        self.state_dir = state_dir
        self.partitions = partitions
        self._live = live
        self._replica = replica

    def _with_store(self, partition: int, fn: Callable[[PartitionStore], Any]) -> Any:
        store = self._live(partition)
        if store is not None:
            return fn(store)
        if self._replica is not None:
            return fn(self._replica.store(partition))
        snapshot = PartitionStore.open_read_only(self.state_dir / f"p{partition}", partition)
        if snapshot is None:
            return None
        try:
            return fn(snapshot)
        finally:
            snapshot.close()

    def state(self, workflow_id: str) -> dict[str, Any] | None:
        raw = self._with_store(
            partition_of(workflow_id, self.partitions), lambda s: s.execution(workflow_id)
        )
        return STATES.decode(raw) if raw else None

    def describe(self, workflow_id: str, run_id: str | None = None) -> WorkflowDescription:
        """The latest run of ``workflow_id``; with ``run_id``, the latest run of that run's
        chain (continue-as-new), or that run itself when the ID was started again since:
        the store keeps only the latest run's state, so an older run is folded from its
        history (it is closed: nothing is pending)."""
        state = self.state(workflow_id)
        if state is None:
            raise WorkflowNotFoundError(
                f"no workflow with workflow_id={workflow_id!r} in {self.state_dir}"
            )
        if in_chain(state, run_id, lambda older: self._has_run(workflow_id, older)):
            return describe_state(state)
        started, *events = self.history(workflow_id, run_id)
        older = apply(None, started)
        for event in events:
            older = apply(older, event)
        return describe_state(older)

    def _has_run(self, workflow_id: str, run_id: str) -> bool:
        return bool(
            self._with_store(
                partition_of(workflow_id, self.partitions),
                lambda s: next(s.history(workflow_id, run_id), None) is not None,
            )
        )

    def history(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        if run_id is None:
            state = self.state(workflow_id)
            if state is None:
                raise WorkflowNotFoundError(
                    f"no workflow with workflow_id={workflow_id!r} in {self.state_dir}"
                )
            run_id = state["run_id"]
        values = self._with_store(
            partition_of(workflow_id, self.partitions),
            lambda s: list(s.history(workflow_id, run_id)),
        )
        if not values:  # every run has its WorkflowStarted: a mistyped ID, not an empty run
            raise WorkflowNotFoundError(
                f"no run {run_id!r} of workflow_id={workflow_id!r} in {self.state_dir}"
            )
        return [EVENTS.decode(v) for v in values]

    def run_histories(
        self, runs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[dict[str, Any]] | None]:
        """The recorded events of each (workflow_id, run_id), None for a run the store has
        none of (yet): one read of each partition's store (a snapshot, in a process that
        does not hold it), however many runs."""
        by_partition: dict[int, list[tuple[str, str]]] = {}
        for run in runs:
            by_partition.setdefault(partition_of(run[0], self.partitions), []).append(run)
        found: dict[tuple[str, str], list[dict[str, Any]] | None] = {}
        for partition, keys in by_partition.items():

            def read(store: PartitionStore, keys: list[tuple[str, str]] = keys) -> Any:
                return {key: list(store.history(*key)) for key in keys}

            values = self._with_store(partition, read)
            for key in keys:
                raw = (values or {}).get(key)
                found[key] = [EVENTS.decode(v) for v in raw] if raw else None
        return found

    def states(self) -> Iterator[dict[str, Any]]:
        for partition in range(self.partitions):
            for raw in self._with_store(partition, lambda s: list(s.executions())) or []:
                yield STATES.decode(raw)

    def close(self) -> None:
        if self._replica is not None:
            self._replica.close()
