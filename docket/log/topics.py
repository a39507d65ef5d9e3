"""Topic names. Every topic is ``docket.<namespace>.<name>``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    namespace: str

    def _name(self, name: str) -> str:
        return f"docket.{self.namespace}.{name}"

    @property
    def commands(self) -> str:
        return self._name("commands")

    @property
    def history(self) -> str:
        return self._name("history")

    @property
    def timers(self) -> str:
        return self._name("timers")

    @property
    def layout(self) -> str:
        """Which generation of topics the namespace uses (docket/log/layout.py); only the
        user's namespace has one, never a generation's storage namespace."""
        return self._name("layout")

    @property
    def replies(self) -> str:
        return self._name("replies")

    def tasks(self, queue: str) -> str:
        return self._name(f"tasks.{queue}")

    def group(self, role: str) -> str:
        """A consumer group name: namespaced, so apps sharing a data directory or a Kafka
        cluster under different namespaces never share partitions."""
        return self._name(role)
