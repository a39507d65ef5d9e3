"""Signal sources: user topics in, signal-with-start commands out (see docket/sources.py).

Each binding is its own consumer group, ``docket.<namespace>.source.<name>``, over the
user topic's own partitions (any count: the topic is the user's), so partitions are owned
through the log's group mechanism as the processor's are, and two engines never both
deliver one partition's records. Each round, for the partitions this process owns:

1. read new records from the group's committed offsets;
2. turn each into commands for the workflow its key names: a ``StartWorkflow`` with policy
   ``use_running`` (unless the binding says ``start=False``) and a ``SignalWorkflow``, both
   on the commands partition of the workflow ID. Their command IDs derive from the binding,
   partition and offset (``source:<name>/<partition>/<offset>``). A record that cannot be
   delivered (no key, a value that does not decode) is logged with its offset and skipped;
3. append every command **and** the new offsets as one atomic log append, fenced on the
   group's partitions.

A crash before 3 reads the same records again; after 3 they are committed. Where the log
can still deliver an append twice (Kafka, see docs/guarantees.md), the start is a no-op
the second time (the run ID derives from the command ID) and the processor drops the
repeated signal (docket/streams/source_dedupe.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from docket.app import App
from docket.clock import Clock
from docket.codec.records import COMMANDS
from docket.errors import ConfigurationError, PartitionFencedError
from docket.faults import fault
from docket.log.base import Log, LogRecord, OutRecord
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.sources import SignalSource, SkippedRecord
from docket.streams.host import PartitionGroup
from docket.streams.source_dedupe import source_command_id

log = logging.getLogger("docket")

MAX_BATCH = 1000
IDLE_WAIT_S = 0.05


class SourceConsumer:
    """The consumer of one binding."""

    def __init__(
        self,
        source: SignalSource,
        log_: Log,
        groups: Topics,
        commands_topic: str,
        clock: Clock,
        member: str,
    ) -> None:
        self.source = source
        self.log = log_
        self.commands_topic = commands_topic
        self.clock = clock
        self.partitions = log_.partitions_of(source.topic)
        self.group_name = groups.group(f"source.{source.name}")
        log_.size_group(self.group_name, self.partitions)
        self.group = PartitionGroup(log_, self.group_name, member, self._assign, self._revoke)
        self.offsets: dict[int, int] = {}  # owned partition -> next offset to read
        self.delivered = 0  # records turned into commands by this process (for tests, logs)

    async def _assign(self, partition: int) -> None:
        self.offsets[partition] = self.log.committed(self.group_name, self.source.topic, partition)

    def _revoke(self, partition: int) -> None:
        self.offsets.pop(partition, None)

    def poll_once(self) -> bool:
        """One round (steps 1-3); False if there was nothing new."""
        topic = self.source.topic
        out: list[OutRecord] = []
        commits: dict[tuple[str, str, int], int] = {}
        now_us = self.clock.now_us()
        delivered = 0
        for partition, offset in self.offsets.items():
            records = self.log.poll(topic, partition, offset, MAX_BATCH)
            if not records:
                continue
            commits[(self.group_name, topic, partition)] = records[-1].offset + 1
            for record in records:
                commands = self._commands(record, now_us)
                delivered += bool(commands)
                out += commands
        if not commits:
            return False
        self.log.append(out, commits, owner=self.group.member)
        fault("source_after_append")
        for (_, _, partition), offset in commits.items():
            if partition in self.offsets:
                self.offsets[partition] = offset
        self.delivered += delivered
        return True

    def _commands(self, record: LogRecord, now_us: int) -> list[OutRecord]:
        source = self.source
        try:
            workflow_id = source.workflow_id(record.key)
            args = source.signal_args(record.value)
        except SkippedRecord as why:
            log.error(
                "signal source %r: skipping the record at %s[%d] offset %d: %s",
                source.name,
                record.topic,
                record.partition,
                record.offset,
                why,
            )
            return []
        command_id = source_command_id(source.name, record.partition, record.offset)
        signal: dict[str, Any] = {
            "run_id": None,
            "signal_name": source.signal_name,
            "args": args,
            "kwargs": {},
            "reply_to": None,
        }
        bodies: list[tuple[str, tuple[str, dict[str, Any]]]] = []
        if source.start:
            start: dict[str, Any] = {
                "workflow_type": source.workflow_type,
                "args": source.start_args,
                "kwargs": {},
                "task_queue": source.task_queue,
                "id_reuse_policy": "use_running",
                "reply_to": None,
            }
            bodies.append(
                (f"source-start:{command_id.removeprefix('source:')}", ("StartWorkflow", start))
            )
        bodies.append((command_id, ("SignalWorkflow", signal)))
        partition = partition_of(workflow_id, self.log.partitions)
        return [
            OutRecord(
                self.commands_topic,
                partition,
                workflow_id,
                COMMANDS.encode(
                    {"command_id": cid, "workflow_id": workflow_id, "ts_us": now_us, "body": body}
                ),
            )
            for cid, body in bodies
        ]


class SignalSources:
    """Every binding of an app, polled in turn by one task of the engine."""

    def __init__(
        self, app: App, log_: Log, groups: Topics, topics: Topics, clock: Clock, member: str
    ) -> None:
        self.log = log_
        self.consumers: list[SourceConsumer] = []
        for source in app.signal_sources.values():
            if app.find_workflow(source.workflow_type) is None:
                raise ConfigurationError(
                    f"signal source {source.name!r} starts and signals workflow "
                    f"{source.workflow_type!r}, which app {app.name!r} does not register"
                )
            self.consumers.append(
                SourceConsumer(source, log_, groups, topics.commands, clock, member)
            )

    async def sync(self) -> None:
        for consumer in self.consumers:
            await consumer.group.sync()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            token = self.log.change_token()
            worked = False
            for consumer in self.consumers:
                await consumer.group.sync_if_due(loop.time())
                try:
                    worked = consumer.poll_once() or worked
                except PartitionFencedError as exc:
                    log.warning("signal source %r: %s", consumer.source.name, exc)
                    consumer.group.fenced()
            if not worked:
                await self.log.wait_for_append(token, IDLE_WAIT_S)

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.group.leave()


__all__ = ["SignalSources", "SourceConsumer"]
