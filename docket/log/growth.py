"""Growing a namespace's partition count: copy into a new generation of topics, then switch.

Why a copy: a workflow's records must all be on the partition its key routes to, and the
route depends on the count. Kafka cannot shrink, and cannot add partitions on some brokers
(Tansu, the broker CI runs), and even where it can, the records already written would stay
where the old count put them. So `grow` writes the namespace's records, byte for byte, into
topics of a new generation (docket/log/layout.py), each on the partition its key routes to
under the new count, and then appends the one layout record that switches every process
over. State stores are rebuilt from the copied history when the engine starts.

What is copied, per topic: all of ``history`` (the source of truth: state is rebuilt from
it) and of ``timers`` (the timer service rebuilds its index from the whole topic; timers
that already fired are ignored by the processor); of ``commands`` and ``tasks.<queue>``,
what their consumers had not committed (what was committed is already in the history).
Replies are not copied: clients waiting on one must ask again.

It runs with every Docket process of the namespace stopped: engines, workers and clients
(a client connected before the switch would write to the old generation). It checks the
groups before it starts and again before it switches, and refuses while any has members.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from docket.config import Settings
from docket.errors import ConfigurationError
from docket.faults import fault
from docket.log.base import Log, OutRecord
from docket.log.factory import open_generation, open_namespace
from docket.log.layout import Layout, read_layout, write_layout
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics

log = logging.getLogger("docket")

COPY_BATCH = 5000
MAX_PARTITIONS = 256
_OTHER_GENERATION = re.compile(r"g\d+\.")


@dataclass(frozen=True, slots=True)
class GrowthReport:
    namespace: str
    old: Layout
    new: Layout
    copied: dict[str, int]  # topic role -> records copied

    @property
    def total(self) -> int:
        return sum(self.copied.values())


def layout_of(settings: Settings) -> Layout:
    """The live generation of ``settings``' namespace (what `docket partitions show` says)."""
    base = open_namespace(settings, settings.namespace, settings.partitions, create=False)
    try:
        return read_layout(base, settings.namespace).active
    finally:
        base.close()


def grow(
    settings: Settings, partitions: int, *, progress: Callable[[str], None] | None = None
) -> GrowthReport:
    """Move ``settings``' namespace to ``partitions`` partitions; see the module docstring.

    Safe to run again after it died: each attempt copies into a generation of its own, and
    only the final layout record makes one live.
    """
    say = progress or log.info
    namespace = settings.namespace
    base = open_namespace(settings, namespace, settings.partitions, create=False)
    try:
        history = read_layout(base, namespace)
        old = history.active
        if not old.partitions < partitions <= MAX_PARTITIONS:
            raise ConfigurationError(
                f"namespace {namespace!r} has {old.partitions} partitions: growing needs a "
                f"larger count, at most {MAX_PARTITIONS}, not {partitions}"
            )
        new = Layout(namespace, history.last_generation + 1, partitions)
        source = open_generation(settings, old, create=False)
        try:
            # announce first, so processes that open the namespace from now on refuse to
            # start; then make sure none was already running
            write_layout(base, new, "COPYING")
            try:
                _refuse_if_busy(source, old)
                copied = _copy_generation(settings, source, old, new, say)
                fault("growth_before_switch")
                _refuse_if_busy(source, old)  # anyone who started while we copied
            except BaseException:
                write_layout(base, old, "ACTIVE")  # back to where we were; the copy is dropped
                raise
        finally:
            source.close()
        write_layout(base, new, "ACTIVE", copied_records=sum(copied.values()))
    finally:
        base.close()
    say(f"namespace {namespace!r} now has {partitions} partitions")
    return GrowthReport(namespace, old, new, copied)


def _refuse_if_busy(log_: Log, layout: Layout) -> None:
    prefix = f"docket.{layout.storage}."
    busy = [g for g in log_.live_groups(prefix) if not _OTHER_GENERATION.match(g[len(prefix) :])]
    if busy:
        raise ConfigurationError(
            f"namespace {layout.namespace!r} is in use: {', '.join(busy)} still "
            f"{'has' if len(busy) == 1 else 'have'} live members. Stop every engine and worker "
            "of the namespace first (on Kafka a process killed with kill -9 counts as live "
            "until its session expires, about 6 s)"
        )


def _copy_generation(
    settings: Settings,
    source: Log,
    old_layout: Layout,
    new_layout: Layout,
    say: Callable[[str], None],
) -> dict[str, int]:
    say(
        f"copying namespace {old_layout.namespace!r} from {old_layout.partitions} partitions "
        f"(generation {old_layout.generation}) to {new_layout.partitions} (generation "
        f"{new_layout.generation})"
    )
    target = open_generation(settings, new_layout, create=True)
    try:
        copied = _copy(source, Topics(old_layout.storage), target, Topics(new_layout.storage))
    finally:
        target.close()
    for role, count in copied.items():
        say(f"  {role}: {count} records")
    return copied


def _copy(source: Log, old: Topics, target: Log, new: Topics) -> dict[str, int]:
    copied = {
        "history": _copy_topic(source, old.history, target, new.history, lambda p: 0),
        "timers": _copy_topic(source, old.timers, target, new.timers, lambda p: 0),
        "commands": _copy_topic(
            source,
            old.commands,
            target,
            new.commands,
            _committed(source, old.group("processor"), old.commands),
        ),
    }
    task_prefix = old.tasks("")
    for topic in source.topics(task_prefix):
        queue = topic[len(task_prefix) :]
        copied[f"tasks.{queue}"] = _copy_topic(
            source,
            topic,
            target,
            new.tasks(queue),
            _committed(source, old.group(f"worker.{queue}"), topic),
        )
    return copied


def _committed(log_: Log, group: str, topic: str) -> Callable[[int], int]:
    """Where ``group``'s consumers of ``topic`` would resume, per partition."""
    return lambda p: log_.committed(group, topic, p)


def _copy_topic(
    source: Log, topic: str, target: Log, to_topic: str, start: Callable[[int], int]
) -> int:
    """Every record of ``topic`` from ``start(p)`` on, in order, onto ``to_topic`` at the
    partition its key routes to now. Records of one key keep their order: they come from
    one source partition, read in order."""
    total = 0
    for p in range(source.partitions):
        offset = start(p)
        while records := source.read(topic, p, offset, COPY_BATCH):
            target.append(
                [
                    OutRecord(to_topic, partition_of(r.key, target.partitions), r.key, r.value)
                    for r in records
                ]
            )
            total += len(records)
            offset = records[-1].offset + 1
    return total


__all__ = ["GrowthReport", "grow", "layout_of"]
