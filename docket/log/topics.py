"""Topic names. Every topic is ``docket.<namespace>.<name>``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Topics:
    namespace: str

    def _name(self, name: str) -> str:
        return f"docket.{self.namespace}.{name}"

    @cached_property  # read per record in hot loops
    def commands(self) -> str:
        return self._name("commands")

    @cached_property  # read per record in hot loops
    def history(self) -> str:
        return self._name("history")

    @cached_property  # read per record in hot loops
    def timers(self) -> str:
        return self._name("timers")

    @property
    def layout(self) -> str:
        """Which generation of topics the namespace uses (docket/log/layout.py); only the
        user's namespace has one, never a generation's storage namespace."""
        return self._name("layout")

    @cached_property  # read per record in hot loops
    def replies(self) -> str:
        return self._name("replies")

    @property
    def schemas(self) -> str:
        """Docket's Avro schemas for readers outside Docket (docket/log/registry.py)."""
        return self._name("schemas")

    def tasks(self, queue: str) -> str:
        return self._name(f"tasks.{queue}")

    def group(self, role: str) -> str:
        """A consumer group name: namespaced, so apps sharing a data directory or a Kafka
        cluster under different namespaces never share partitions."""
        return self._name(role)


DOCKET_PREFIX = "docket."


def is_docket_topic(name: str) -> bool:
    """Whether ``name`` is one of Docket's own topics (any namespace) rather than a user
    topic: user topics are not namespaced, and may have any partition count."""
    return name.startswith(DOCKET_PREFIX)
