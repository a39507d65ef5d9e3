"""How the Kafka log provisions each topic: partitions, replication, retention, cleanup.

Every topic Docket creates gets one of the specs below, chosen by its name under
``docket.<namespace>.``. The reasons (docs/operations.md#kafka-topics says the same to
operators):

- ``history`` keeps every record forever (``retention.ms=-1``, delete policy, no size
  limit): state stores are rebuilt from it, replay and audit read it, and it is keyed by
  workflow ID, so compaction would drop all but each workflow's last event.
- ``timers`` likewise: a timer can be due in years, and the timer service rebuilds its
  due-time index from the whole topic.
- ``layout`` (which generation of topics is live) likewise, with one partition: it is the
  namespace's own record of its partition count.
- ``commands`` and ``tasks.<queue>`` keep records for ``command_retention_ms`` (7 days by
  default). A command or task still unread when it expires is lost: keep the retention
  longer than any outage of the processors or workers.
- ``replies`` keep records for ``reply_retention_ms`` (1 day): a reply matters only to the
  client waiting for it.
- ``schemas`` is compacted, one partition: one record per schema, keyed by fingerprint
  (docket/log/registry.py).
- ``<group>.members`` carry no records (membership only); an hour of retention keeps them
  empty.
- any other topic (a user's) gets the broker's defaults.

Every topic gets the replication factor (``-1``: the broker's ``default.replication.factor``)
and, when it is set or the replication factor is 3 or more, ``min.insync.replicas`` (2 by
default then: with ``acks=all``, a write survives the loss of one broker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FOREVER = "-1"

# The names Docket gives its topics under ``docket.<namespace>.``, and tasks.<queue>.
_KINDS = ("commands", "history", "timers", "replies", "schemas", "layout")
_ONE_PARTITION = ("schemas", "layout")


def topic_kind(namespace: str, topic: str) -> str:
    """Which of Docket's topics ``topic`` is: ``commands``, ``history``, ``timers``,
    ``replies``, ``tasks``, ``schemas``, ``layout``, ``members`` or ``other``."""
    prefix = f"docket.{namespace}."
    if not topic.startswith(prefix):
        return "other"
    rest = topic.removeprefix(prefix)
    if rest.endswith(".members"):
        return "members"
    if rest in _KINDS:
        return rest
    if rest.startswith("tasks."):
        return "tasks"
    return "other"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What one topic is created with."""

    kind: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    def differences(self, actual: Mapping[str, str | None]) -> dict[str, str | None]:
        """The settings of this spec that ``actual`` (a described topic's configs) does not
        have: name -> the value it has instead (None: not set)."""
        return {k: actual.get(k) for k, v in self.config.items() if actual.get(k) != v}


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """The provisioning choices (Settings: DOCKET_REPLICATION_FACTOR,
    DOCKET_MIN_INSYNC_REPLICAS, DOCKET_COMMAND_RETENTION_MS, DOCKET_REPLY_RETENTION_MS)."""

    replication_factor: int = -1
    min_insync_replicas: int | None = None
    command_retention_ms: int = 7 * DAY_MS
    reply_retention_ms: int = DAY_MS

    def spec(self, namespace: str, topic: str, partitions: int) -> TopicSpec:
        """The spec of ``topic`` in ``namespace``, whose topics have ``partitions``."""
        kind = topic_kind(namespace, topic)
        config = dict(self._retention(kind))
        min_isr = self.min_insync_replicas
        if min_isr is None and self.replication_factor >= 3:
            min_isr = 2
        if min_isr is not None:
            config["min.insync.replicas"] = str(min_isr)
        count = 1 if kind in _ONE_PARTITION else partitions
        return TopicSpec(kind, count, self.replication_factor, config)

    def _retention(self, kind: str) -> dict[str, str]:
        if kind in ("history", "timers", "layout"):
            return _delete(FOREVER)
        if kind in ("commands", "tasks"):
            return _delete(str(self.command_retention_ms))
        if kind == "replies":
            return _delete(str(self.reply_retention_ms))
        if kind == "schemas":
            return {"cleanup.policy": "compact"}
        if kind == "members":
            return {"cleanup.policy": "delete", "retention.ms": str(HOUR_MS)}
        return {}


def _delete(retention_ms: str) -> dict[str, str]:
    # retention.bytes=-1: a broker-wide size limit must not cut these topics short
    return {"cleanup.policy": "delete", "retention.ms": retention_ms, "retention.bytes": "-1"}


__all__ = ["TopicPolicy", "TopicSpec", "topic_kind"]
