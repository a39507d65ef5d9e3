"""Replay recorded histories against the current workflow code.

Histories come from the log (``replay_log``: reconsume the history topic, the source of
truth) or from JSON-lines files written by ``docket workflow history --json`` /
`export_history` (``load_history``). A replay never writes anything; it reports, per
execution, whether the current code asks for exactly what the history recorded.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docket.app import App
from docket.codec.records import EVENTS
from docket.errors import ConfigurationError, NondeterminismError, SerializationError
from docket.log.base import Log
from docket.log.topics import Topics
from docket.runtime.instance import WorkflowInstance
from docket.runtime.matching import replay as replay_instance

Event = dict[str, Any]


@dataclass(frozen=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    error: NondeterminismError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def replay_history(app: App, events: list[Event]) -> ReplayResult:
    """Replay one run's events (from WorkflowStarted on) against ``app``'s current code."""
    if not events or events[0]["body"][0] != "WorkflowStarted":
        raise ConfigurationError("a history must start with its WorkflowStarted event")
    first = events[0]
    started = first["body"][1]
    workflow_type = started["workflow_type"]
    result = {
        "workflow_id": first["workflow_id"],
        "run_id": first["run_id"],
        "workflow_type": workflow_type,
        "events": len(events),
    }
    definition = app.find_workflow(workflow_type)
    if definition is None:
        error = NondeterminismError(
            f"workflow type {workflow_type!r} (workflow_id={first['workflow_id']}) is not registered in "
            f"app {app.name!r}, so its history cannot be replayed; register it"
        )
        return ReplayResult(**result, error=error)
    instance = WorkflowInstance(
        definition,
        first["workflow_id"],
        first["run_id"],
        workflow_type,
        started["task_queue"],
        app.find_step,
    )
    try:
        replay_instance(instance, events)
    except NondeterminismError as exc:
        return ReplayResult(**result, error=exc)
    except Exception as exc:  # the code fails where the engine would stop the execution
        error = NondeterminismError(
            f"workflow {workflow_type!r} (workflow_id={first['workflow_id']}, run={first['run_id']}) "
            f"cannot replay its history: running its code raised {type(exc).__name__}: {exc}; "
            "an engine with this code would stop the execution"
        )
        error.__cause__ = exc
        return ReplayResult(**result, error=error)
    return ReplayResult(**result, error=None)


def replay_log(
    app: App, log: Log, topics: Topics, *, workflow_id: str | None = None
) -> Iterator[ReplayResult]:
    """Reconsume the whole history topic and replay every run (or one workflow's runs)."""
    runs: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for partition in range(log.partitions):
        offset = 0
        while True:
            records = log.read(topics.history, partition, offset, 5000)
            if not records:
                break
            offset = records[-1].offset + 1
            for record in records:
                if workflow_id is not None and record.key != workflow_id:
                    continue
                event = EVENTS.decode(record.value)
                key = (event["workflow_id"], event["run_id"])
                seen = runs[key]
                if seen and event["event_id"] <= seen[-1]["event_id"]:
                    continue  # a re-delivered duplicate
                seen.append(event)
    for events in runs.values():
        yield replay_history(app, events)


# -- history files (JSON lines, one event per line) ------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def event_to_jsonable(event: Event) -> Any:
    """One event as JSON-able data that round-trips exactly (bytes as ``{"$bytes": base64}``):
    the form of `event_to_json` lines and of the events of an audit export."""
    return _encode(event)


def event_from_jsonable(value: Any) -> Event:
    """The event `event_to_jsonable` made (not checked against the schema)."""
    event: Event = _decode(value)
    event["body"] = tuple(event["body"])
    return event


def event_to_json(event: Event) -> str:
    """One event as a JSON line that round-trips exactly (bytes as base64)."""
    return json.dumps(_encode(event), sort_keys=True)


def export_history(events: Iterable[Event], path: str | Path) -> None:
    Path(path).write_text("".join(event_to_json(e) + "\n" for e in events))


def load_history(path: str | Path) -> list[Event]:
    """Read a JSON-lines history file; every event is checked against the event schema."""
    events = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = event_from_jsonable(json.loads(line))
            EVENTS.encode(event)  # validates the shape
        except (ValueError, KeyError, TypeError, SerializationError) as exc:
            raise SerializationError(f"{path}:{number}: not a Docket history event: {exc}") from exc
        events.append(event)
    return events
