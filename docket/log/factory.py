"""Which log a process opens: the embedded one, or Kafka when bootstrap servers are set."""

from __future__ import annotations

from docket.config import Settings
from docket.log.base import Log


def open_log(settings: Settings, *, create: bool = True) -> Log:
    """The log ``settings`` name. ``create=False`` refuses to create an embedded log that is
    not there yet (a CLI pointed at the wrong directory gets an error, not a new log)."""
    if settings.bootstrap_servers:
        from docket.log.kafka import KafkaLog

        return KafkaLog(
            settings.bootstrap_servers,
            namespace=settings.namespace,
            partitions=settings.partitions,
            config=settings.kafka_config,
        )
    from docket.log.embedded import EmbeddedLog

    return EmbeddedLog(
        settings.data_dir,
        namespace=settings.namespace,
        partitions=settings.partitions,
        create=create,
    )
