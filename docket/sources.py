"""Signal sources: a user topic whose records become signals to workflows.

``app.signal_source(topic, workflow=..., signal=...)`` binds a topic. The engine's signal
source consumer (docket/streams/sources.py) reads it and turns each record into a
signal-with-start: the record's key names the workflow (``key_to_id``, default the key
itself), the record's value, decoded, is the signal's one argument, and a workflow that is
not running is started first (with ``start_args``), unless ``start=False``.

This module holds the binding and what can be decided about one record without I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from docket.codec.payload import Payload, encode_args, to_payload
from docket.definitions import Workflow
from docket.emission import topic_problem
from docket.errors import DefinitionError, SerializationError

Decode = Literal["json", "text", "bytes"]
DECODINGS = ("json", "text", "bytes")
MAX_WORKFLOW_ID = 1000


class SkippedRecord(Exception):  # noqa: N818 - a reason to skip one record, not a fault
    """A record a signal source cannot deliver (logged with its offset, then skipped)."""


@dataclass(frozen=True)
class SignalSource:
    """A user topic bound as a source of signals (see `App.signal_source`)."""

    name: str
    topic: str
    workflow_type: str
    signal_name: str
    task_queue: str
    key_to_id: Callable[[str], str] | None = None
    start: bool = True
    start_args: list[Payload] = field(default_factory=list)
    decode: Decode = "json"

    def workflow_id(self, key: str) -> str:
        """The workflow a record with ``key`` goes to; raises SkippedRecord if none."""
        if not key:
            raise SkippedRecord("it has no key, so it names no workflow")
        try:
            workflow_id = self.key_to_id(key) if self.key_to_id is not None else key
        except (Exception, SystemExit) as exc:  # the user's function: skips this record only
            raise SkippedRecord(f"key_to_id({key!r}) raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(workflow_id, str) or not workflow_id or "\0" in workflow_id:
            raise SkippedRecord(f"key_to_id({key!r}) returned {workflow_id!r}, not a workflow ID")
        if len(workflow_id) > MAX_WORKFLOW_ID:
            raise SkippedRecord(
                f"the workflow ID for key {key!r} is over {MAX_WORKFLOW_ID} characters"
            )
        return workflow_id

    def signal_args(self, value: bytes) -> list[Payload]:
        """The signal's arguments: the decoded value; raises SkippedRecord if it does not decode."""
        decoded: Any
        if self.decode == "bytes":
            decoded = value
        else:
            try:
                text = value.decode("utf-8")
                decoded = json.loads(text) if self.decode == "json" else text
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                shown = value[:60]
                raise SkippedRecord(
                    f"its value is not {'JSON' if self.decode == 'json' else 'UTF-8 text'}: "
                    f"{exc} (value {shown!r}{'...' if len(value) > 60 else ''})"
                ) from exc
        try:
            return [to_payload(decoded, where=f"the value of a record of topic {self.topic!r}")]
        except SerializationError as exc:
            raise SkippedRecord(str(exc)) from exc


def make_source(
    topic: str,
    *,
    workflow: Workflow[Any, Any] | str,
    signal: Any,
    key_to_id: Callable[[str], str] | None,
    start: bool,
    start_args: Sequence[Any],
    decode: str,
    name: str | None,
    default_queue: str,
) -> SignalSource:
    """Check a binding when it is registered (bad wiring fails then, not at 3 a.m.)."""
    problem = topic_problem(topic)
    if problem is not None:
        raise DefinitionError(f"signal source: {problem}")
    name = name or topic
    problem = topic_problem(name)
    if problem is not None:
        raise DefinitionError(f"signal source name: {problem.replace('topic', 'name', 1)}")
    if isinstance(workflow, Workflow):
        workflow_type, queue = workflow.name, workflow.task_queue
    elif isinstance(workflow, str) and workflow:
        workflow_type, queue = workflow, default_queue
    else:
        raise DefinitionError(
            f"signal source {name!r}: workflow= must be a registered workflow or its name, "
            f"got {workflow!r}"
        )
    signal_name = signal if isinstance(signal, str) else getattr(signal, "__docket_signal__", None)
    if not isinstance(signal_name, str) or not signal_name:
        raise DefinitionError(
            f"signal source {name!r}: signal= must be a @docket.signal handler or a signal name, "
            f"got {signal!r}"
        )
    if isinstance(workflow, Workflow) and workflow.cls is not None:
        if signal_name not in workflow.signals:
            known = ", ".join(map(repr, sorted(workflow.signals))) or "none"
            raise DefinitionError(
                f"signal source {name!r}: workflow {workflow_type!r} has no signal "
                f"{signal_name!r} (it has: {known})"
            )
    if decode not in DECODINGS:
        raise DefinitionError(
            f"signal source {name!r}: decode={decode!r}; use one of {', '.join(DECODINGS)}"
        )
    if key_to_id is not None and not callable(key_to_id):
        raise DefinitionError(f"signal source {name!r}: key_to_id must be a function of the key")
    try:
        args, _ = encode_args(tuple(start_args), {}, where=f"start_args of signal source {name!r}")
    except SerializationError as exc:
        raise DefinitionError(str(exc)) from exc
    return SignalSource(
        name=name,
        topic=topic,
        workflow_type=workflow_type,
        signal_name=signal_name,
        task_queue=queue,
        key_to_id=key_to_id,
        start=start,
        start_args=args,
        decode=decode,  # type: ignore[arg-type]  # checked against DECODINGS above
    )


__all__ = ["DECODINGS", "SignalSource", "SkippedRecord", "make_source"]
