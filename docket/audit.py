"""Audit export: the history topic, replayed from its beginning, as one JSON line per run.

The history topic is the source of truth, so an audit reads it and nothing else: no engine
needs to run, and no state store is consulted. Every partition is read from offset 0;
events are grouped by run and deduplicated by event ID (after a crash the log may hold an
event twice; the first copy is kept, and copies are byte-identical). Each line is::

    {"workflow_id": ..., "run_id": ..., "workflow_type": ..., "status": ...,
     "started_at": ..., "closed_at": ..., "events": [...]}

``events`` are rendered exactly as ``docket workflow history --json`` renders them (bytes
as ``{"$bytes": base64}``), so `load_audit` gives back events `docket.replay` can replay.
``since`` keeps the runs with at least one event recorded at or after that time (by the
log records' timestamps), each still with its whole history. Lines are in the order the
runs started.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from docket.codec.records import EVENTS
from docket.config import Settings
from docket.errors import SerializationError, WorkflowNotFoundError
from docket.execution.fold import apply
from docket.log.base import Log
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.replay import event_from_jsonable, event_to_jsonable

Event = dict[str, Any]
READ_BATCH = 5000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


@dataclass(frozen=True)
class AuditedRun:
    """One run as the history topic tells it."""

    workflow_id: str
    run_id: str
    workflow_type: str | None  # None if the log does not hold the run's WorkflowStarted
    status: str  # running | completed | failed | ... | unknown
    started_at: datetime | None
    closed_at: datetime | None
    events: list[Event]

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "workflow_type": self.workflow_type,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "events": [event_to_jsonable(e) for e in self.events],
        }


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (``2026-05-01T12:00:00Z``, ``2026-05-01``; no zone means
    UTC), or a duration before ``now`` (``90s``, ``30m``, ``2h``, ``7d``, ``1w``, ``1h30m``).
    Raises ValueError with a message that says what is accepted."""
    cleaned = text.strip()
    if cleaned and _DURATION.sub("", cleaned) == "":
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(cleaned))
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-05-01T12:00:00Z, 2026-05-01) or a "
            "duration before now (90s, 30m, 2h, 7d, 1w, 1h30m)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def audit_runs(
    log: Log, topics: Topics, *, since: datetime | None = None, workflow_id: str | None = None
) -> list[AuditedRun]:
    """Every run in ``topics``' history topic (or ``workflow_id``'s runs), read from the
    beginning; with ``since``, the runs that recorded anything at or after it."""
    events: dict[tuple[str, str], dict[int, Event]] = defaultdict(dict)
    latest: dict[tuple[str, str], int] = {}  # run -> newest record timestamp (us)
    partitions: Iterable[int] = range(log.partitions)
    if workflow_id is not None:
        partitions = [partition_of(workflow_id, log.partitions)]
    for partition in partitions:
        offset = 0
        while True:
            records = log.read(topics.history, partition, offset, READ_BATCH)
            if not records:
                break
            offset = records[-1].offset + 1
            for record in records:
                if workflow_id is not None and record.key != workflow_id:
                    continue
                try:
                    event = EVENTS.decode(record.value)
                except SerializationError as exc:
                    raise SerializationError(
                        f"{topics.history}[{partition}] offset {record.offset}: {exc}"
                    ) from exc
                run = (event["workflow_id"], event["run_id"])
                events[run].setdefault(event["event_id"], event)  # a duplicate: keep the first
                latest[run] = max(latest.get(run, 0), record.ts_us)
    if workflow_id is not None and not events:
        raise WorkflowNotFoundError(
            f"no history for workflow_id={workflow_id!r} in {topics.history}: check the ID "
            "and the namespace (--namespace, DOCKET_NAMESPACE)"
        )
    since_us = None if since is None else int(since.timestamp() * 1_000_000)
    runs = [
        _audited(wid, run_id, [found[i] for i in sorted(found)])
        for (wid, run_id), found in events.items()
        if since_us is None or latest[(wid, run_id)] >= since_us
    ]
    runs.sort(key=lambda r: (r.events[0]["ts_us"], r.workflow_id, r.run_id))
    return runs


def _audited(workflow_id: str, run_id: str, events: list[Event]) -> AuditedRun:
    started = events[0]["body"] if events[0]["body"][0] == "WorkflowStarted" else None
    state: dict[str, Any] | None = None
    if started is not None:
        try:
            for event in events:
                state = apply(state, event)
        except (ValueError, KeyError):  # a history with a hole: say so rather than guess
            state = None
    return AuditedRun(
        workflow_id=workflow_id,
        run_id=run_id,
        workflow_type=started[1]["workflow_type"] if started is not None else None,
        status=state["status"] if state is not None else "unknown",
        started_at=_time(events[0]["ts_us"]) if started is not None else None,
        closed_at=_time(state["closed_us"]) if state is not None else None,
        events=events,
    )


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


def export_audit(
    output: str | Path | TextIO | None = None,
    *,
    settings: Settings | None = None,
    since: datetime | None = None,
    workflow_id: str | None = None,
    **overrides: Any,
) -> int:
    """Write the audit export of a namespace as JSON lines to ``output`` (a path, an open
    text file, or None for stdout); return the number of runs written. ``overrides`` are
    `Settings` fields (``data_dir``, ``namespace``), the rest comes from ``DOCKET_*``
    variables; on Kafka (``DOCKET_BOOTSTRAP_SERVERS``) the topic is read from the brokers."""
    from docket.log.factory import open_log

    settings = settings or Settings.from_env(**overrides)
    log = open_log(settings, create=False)
    try:
        runs = audit_runs(log, Topics(log.namespace), since=since, workflow_id=workflow_id)
    finally:
        log.close()
    text = "".join(json.dumps(run.to_json()) + "\n" for run in runs)
    if output is None:
        sys.stdout.write(text)
    elif isinstance(output, str | Path):
        Path(output).write_text(text)
    else:
        output.write(text)
    return len(runs)


def load_audit(path: str | Path) -> list[AuditedRun]:
    """Read an audit export back; each run's ``events`` can go to `docket.replay.replay_history`."""
    runs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            events = [event_from_jsonable(e) for e in data["events"]]
            for event in events:
                EVENTS.encode(event)  # validates the shape
            runs.append(
                AuditedRun(
                    workflow_id=data["workflow_id"],
                    run_id=data["run_id"],
                    workflow_type=data["workflow_type"],
                    status=data["status"],
                    started_at=_parse(data["started_at"]),
                    closed_at=_parse(data["closed_at"]),
                    events=events,
                )
            )
        except (ValueError, KeyError, TypeError, SerializationError) as exc:
            raise SerializationError(f"{path}:{number}: not a Docket audit line: {exc}") from exc
    return runs


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


__all__ = ["AuditedRun", "audit_runs", "export_audit", "load_audit", "parse_time"]
