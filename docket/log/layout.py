"""Generations of topics: how a namespace grows its partition count without losing anyone.

A namespace starts on generation 1: topics ``docket.<namespace>.*`` with the partition
count it was created with. Changing the count in place would move keys between partitions
(and Tansu, like several managed Kafkas, cannot add partitions at all), so growing copies
every record into a new generation, ``docket.<namespace>.g<N>.*``, routed for the new count,
and then switches (docket/log/growth.py). The switch is one record on the namespace's
``layout`` topic; every process reads that topic when it opens the log and uses the
generation it names, so a record written before the switch is never read by a process that
uses the new routing, and vice versa.

The ``layout`` topic holds `LayoutChange` records: the last ACTIVE one names the live
generation. A COPYING record after it means a growth is under way, or died; processes refuse
to open the namespace meanwhile (a command appended to the old generation after its copy
would be lost), and rerunning the growth supersedes a dead attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from docket.codec.records import LAYOUTS
from docket.log.base import Log, OutRecord
from docket.log.topics import Topics

LAYOUT_PARTITION = 0


@dataclass(frozen=True, slots=True)
class Layout:
    """One generation of a namespace's topics."""

    namespace: str
    generation: int
    partitions: int

    @property
    def storage(self) -> str:
        """The namespace the generation's topics, groups and state stores live under."""
        return self.namespace if self.generation == 1 else f"{self.namespace}.g{self.generation}"


@dataclass(frozen=True, slots=True)
class LayoutHistory:
    """What the layout topic says: the live generation, and a growth under way, if any."""

    active: Layout
    pending: Layout | None
    last_generation: int


def read_layout(log: Log, namespace: str) -> LayoutHistory:
    """The namespace's layout, read from ``log`` (a log opened on generation 1: the layout
    topic belongs to the namespace itself). No layout record means generation 1 with the
    log's partition count."""
    topic = Topics(namespace).layout
    active = Layout(namespace, 1, log.partitions)
    pending: Layout | None = None
    last = 1
    offset = 0
    while records := log.read(topic, LAYOUT_PARTITION, offset, 1000):
        for record in records:
            change = LAYOUTS.decode(record.value)
            layout = Layout(namespace, change["generation"], change["partitions"])
            last = max(last, layout.generation)
            if change["status"] == "ACTIVE":
                active, pending = layout, None
            else:
                pending = layout
        offset = records[-1].offset + 1
    return LayoutHistory(active, pending, last)


def write_layout(log: Log, layout: Layout, status: str, *, copied_records: int = 0) -> None:
    change = {
        "generation": layout.generation,
        "partitions": layout.partitions,
        "status": status,
        "copied_records": copied_records,
        "at_us": time.time_ns() // 1000,
    }
    topic = Topics(layout.namespace).layout
    log.append([OutRecord(topic, LAYOUT_PARTITION, layout.namespace, LAYOUTS.encode(change))])


__all__ = ["Layout", "LayoutHistory", "read_layout", "write_layout"]
