"""What one poll batch of the execution processor accumulates before it is made durable."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from docket.execution.fold import State
from docket.state.store import PartitionStore
from docket.streams.outputs import Outputs


class PartitionCursor:
    def __init__(self, store: PartitionStore, offset: int, history_end: int) -> None:
        self.store = store
        self.offset = offset  # next command offset to read
        self.history_end = history_end  # next history offset; only this owner appends there


class Batch:
    """What one poll batch accumulates before it is made durable."""

    def __init__(self) -> None:
        self.out = Outputs()
        self.states: dict[str, State] = {}
        self.events: dict[int, list[tuple[str, str, int, bytes]]] = defaultdict(list)
        self.recorded: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(
            list
        )  # this batch's events

    def merge(self, other: Batch) -> None:
        """Take in what one workflow's processing produced (kept apart until it succeeded)."""
        self.out.extend(other.out)
        self.states.update(other.states)
        for partition, values in other.events.items():
            self.events[partition] += values
        self.recorded.update(other.recorded)
        for key, events in other.runs.items():
            self.runs[key] += events


class StopExecution(Exception):  # noqa: N818 - control flow inside the processor
    """The workflow code of one execution could not run; its commands are deferred."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
