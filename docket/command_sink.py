"""How a client or a worker hands commands to an execution processor in its own process.

A processor in the same process as the code that sends it a command (a step report from
the worker beside it, a start or a signal from the engine's own client) can take the
command straight into its next batch (``docket/streams/handoff.py``): the command skips
``commands``, its encode, its append and the processor's read and decode of it. The
processor's append makes what the command did durable. Everything else appends to
``commands`` as `command_records` lays them out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from docket.codec.records import COMMANDS
from docket.log.base import Commits, OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics


def command_records(
    topics: Topics, partitions: int, commands: Sequence[dict[str, Any]]
) -> list[OutRecord]:
    """Commands as ``commands`` records, each on its workflow's partition."""
    return [
        OutRecord(
            topics.commands,
            partition_of(c["workflow_id"], partitions),
            c["workflow_id"],
            COMMANDS.encode(c),
        )
        for c in commands
    ]


class CommandSink(Protocol):
    """A co-located execution processor that takes commands straight into its next batch."""

    def owns(self, workflow_id: str) -> bool:
        """Whether it would take this workflow's commands now."""

    def take(
        self,
        commands: Sequence[dict[str, Any]],
        commits: Commits,
        owners: Mapping[str, str],
        on_fenced: Callable[[], None],
    ) -> None:
        """Take commands and the offsets they settle (a worker's task offsets; none for a
        client's requests); the sink makes both durable, or appends them to ``commands``."""


def unfenced() -> None:
    """``on_fenced`` for a sender that holds no leases (a client)."""
