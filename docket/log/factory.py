"""Which log a process opens: the embedded one, or Kafka when bootstrap servers are set; and
on it, the generation of topics the namespace's layout names (docket/log/layout.py)."""

from __future__ import annotations

from docket.config import Settings
from docket.errors import ConfigurationError
from docket.log.base import Log
from docket.log.layout import Layout, read_layout


def open_log(settings: Settings, *, create: bool = True) -> Log:
    """The log of ``settings``' namespace, on its live generation: ``log.namespace`` is
    where its topics, groups and state stores are. ``create=False`` refuses to create an
    embedded log that is not there yet (a CLI pointed at the wrong directory gets an error,
    not a new log)."""
    base = open_namespace(settings, settings.namespace, settings.partitions, create=create)
    try:
        layout = read_layout(base, settings.namespace)
    except BaseException:
        base.close()
        raise
    if layout.pending is not None:
        base.close()
        raise ConfigurationError(
            f"namespace {settings.namespace!r} is growing to {layout.pending.partitions} "
            f"partitions ('docket partitions grow' is copying into generation "
            f"{layout.pending.generation}, or died doing so): wait for it to finish, or run "
            "it again if it died"
        )
    if layout.active.generation == 1:
        return base
    base.close()
    return open_generation(settings, layout.active, create=False)


def open_generation(settings: Settings, layout: Layout, *, create: bool) -> Log:
    return open_namespace(settings, layout.storage, layout.partitions, create=create)


def open_namespace(settings: Settings, namespace: str, partitions: int, *, create: bool) -> Log:
    """The backend's log for one storage namespace, with no layout lookup."""
    if settings.bootstrap_servers:
        from docket.log.kafka import KafkaLog
        from docket.log.provisioning import TopicPolicy
        from docket.log.registry import ConfluentSchemaRegistry

        registry = None
        if settings.schema_registry_url:
            registry = ConfluentSchemaRegistry(
                settings.schema_registry_url, settings.schema_registry_config
            )
        return KafkaLog(
            settings.bootstrap_servers,
            namespace=namespace,
            partitions=partitions,
            config=settings.kafka_config,
            topic_policy=TopicPolicy(
                replication_factor=settings.replication_factor,
                min_insync_replicas=settings.min_insync_replicas,
                command_retention_ms=settings.command_retention_ms,
                reply_retention_ms=settings.reply_retention_ms,
            ),
            schema_registry=registry,
        )
    from docket.log.embedded import EmbeddedLog

    return EmbeddedLog(settings.data_dir, namespace=namespace, partitions=partitions, create=create)
