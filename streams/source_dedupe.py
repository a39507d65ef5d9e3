"""A record of a signal source reaches a workflow once, even if its command comes twice;
so does a signal received in a Kafka transaction that did not commit.

On the embedded log a source's commands and the offsets they consume commit in one
transaction, so a command is never appended twice. On Kafka it can be: a transaction that
failed after its records were written leaves them readable (Docket's readers are
``read_uncommitted``, and some brokers show aborted records to any reader), and a member
that has just lost its partitions may still commit. The repeat carries the same command ID,
``source:<binding>/<partition>/<offset>``, and one owner delivers a partition's records in
offset order, so a run has received a record's signal exactly when it has received a
signal of that binding and partition at that offset or a later one.

`SourceDedupe` keeps, per workflow ID, the highest such offset per (binding, partition),
folded from the stored history of the current run and of the run it continues (each stored
event is read once per process; stored events never change), plus what this batch recorded.
A repeat that arrives after the workflow started an unrelated new run is not recognised
after a restart (docs/guarantees.md says so).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from docket.codec.records import EVENTS
from docket.execution.fold import State

log = logging.getLogger("docket")

SOURCE_PREFIX = "source:"
REMEMBERED = 10_000  # workflows whose received offsets are kept in memory

History = Callable[[str, str, int], Iterable[bytes]]  # (workflow, run, after event id) -> events


def source_command_id(binding: str, partition: int, offset: int) -> str:
    """The ID of the signal command made from one record of a signal source."""
    return f"{SOURCE_PREFIX}{binding}/{partition}/{offset}"


def source_position(command_id: str) -> tuple[str, int, int] | None:
    """(binding, partition, offset) of a source signal's command ID; None for other IDs."""
    if not command_id.startswith(SOURCE_PREFIX):
        return None
    try:
        binding, partition, offset = command_id[len(SOURCE_PREFIX) :].rsplit("/", 2)
        return binding, int(partition), int(offset)
    except ValueError:
        return None


@dataclass
class _Received:
    through: dict[str, int] = field(default_factory=dict)  # run -> last stored event folded
    highest: dict[tuple[str, int], int] = field(default_factory=dict)  # (binding, p) -> offset


class SourceDedupe:
    def __init__(self, history: History) -> None:
        """``history(workflow_id, run_id, after_event_id)``: a run's stored events after one."""
        self._history = history
        self._received: OrderedDict[str, _Received] = OrderedDict()
        self._unconfirmed: set[tuple[str, str]] = set()  # (workflow, command id): see below

    def received_unconfirmed(self, workflow_id: str, command_id: str) -> None:
        """A signal whose `SignalReceived` came from a transaction that did not commit
        (`streams/unconfirmed.py`): its command comes back, and must not count twice."""
        self._unconfirmed.add((workflow_id, command_id))

    def repeated(
        self,
        state: State | None,
        command: dict[str, Any],
        recorded: Mapping[tuple[str, str], list[dict[str, Any]]],
    ) -> bool:
        """Whether ``command`` is a source signal the run of ``state`` (or the run it
        continues) has received already; ``recorded``: this batch's events per run."""
        if state is None or command["body"][0] != "SignalWorkflow":
            return False
        if (state["workflow_id"], command["command_id"]) in self._unconfirmed:
            self._unconfirmed.discard((state["workflow_id"], command["command_id"]))
            log.info(
                "workflow_id=%s: signal %s came back after a transaction that did not "
                "commit; it was received then, and is acknowledged again",
                state["workflow_id"],
                command["command_id"],
            )
            return True
        position = source_position(command["command_id"])
        if position is None:
            return False
        binding, partition, offset = position
        workflow_id = state["workflow_id"]
        received = self._received.pop(workflow_id, None) or _Received()
        self._received[workflow_id] = received  # most recently used last
        while len(self._received) > REMEMBERED:
            self._received.popitem(last=False)
        highest = -1
        for run_id in [*state["run_chain"][-1:], state["run_id"]]:
            for raw in self._history(workflow_id, run_id, received.through.get(run_id, 0)):
                event = EVENTS.decode(raw)
                received.through[run_id] = event["event_id"]
                _note(received.highest, event)
            for event in recorded.get((workflow_id, run_id), ()):
                found = _position(event)
                if found is not None and found[:2] == (binding, partition):
                    highest = max(highest, found[2])
        highest = max(highest, received.highest.get((binding, partition), -1))
        if offset > highest:
            return False
        log.info(
            "workflow_id=%s: dropping a repeated signal of signal source %r (partition %d, "
            "offset %d): the run has received it",
            workflow_id,
            binding,
            partition,
            offset,
        )
        return True


def _position(event: dict[str, Any]) -> tuple[str, int, int] | None:
    if event["body"][0] != "SignalReceived":
        return None
    return source_position(event["command_id"])


def _note(highest: dict[tuple[str, int], int], event: dict[str, Any]) -> None:
    found = _position(event)
    if found is not None:
        binding, partition, offset = found
        highest[(binding, partition)] = max(highest.get((binding, partition), -1), offset)


__all__ = ["SourceDedupe", "source_command_id", "source_position"]
