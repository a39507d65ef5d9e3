"""Settings: from code, or from ``DOCKET_*`` environment variables (read only here)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from docket.errors import ConfigurationError

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def flag(name: str) -> bool:
    """A boolean DOCKET_* variable: 1/true/yes/on or 0/false/no/off (or unset)."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={os.environ[name]!r} is not a yes/no value: use 1 or 0")


@dataclass(frozen=True)
class Settings:
    """Where the log and state live and how they are named.

    Attributes:
        data_dir: the embedded log (``log.sqlite3``) and RocksDB state stores live here.
        namespace: topic prefix (``docket.<namespace>.commands``); several apps can share a
            data directory or a Kafka cluster under different namespaces.
        partitions: partitions per topic; fixed when the namespace is first created.
        bootstrap_servers: Kafka brokers; set to use the Kafka log instead of the embedded one
            (RocksDB state stores still live in ``data_dir``).
        kafka_config: more librdkafka settings (TLS, SASL, ...), e.g.
            ``{"security.protocol": "SASL_SSL"}``; from ``DOCKET_KAFKA_SECURITY_PROTOCOL``
            and the like (``DOCKET_KAFKA_`` + the key in capitals, ``.`` as ``_``).
        always_replay: evict every workflow instance after each activation (tests, CI).
        replication_factor: replicas of each Kafka topic Docket creates; -1 (the default):
            the broker's ``default.replication.factor``.
        min_insync_replicas: ``min.insync.replicas`` of the topics Docket creates; None:
            2 when the replication factor is 3 or more, the broker's default otherwise.
        command_retention_ms: how long Kafka keeps ``commands`` and ``tasks.*`` records
            (7 days); a command or task still unread when it expires is lost.
        reply_retention_ms: how long Kafka keeps ``replies`` records (1 day).
        schema_registry_url: a Confluent Schema Registry: records on Kafka are then framed
            with its schema ids (docs/concepts.md, "Schemas on Kafka").
        schema_registry_config: more registry client settings, e.g.
            ``{"basic.auth.user.info": "key:secret"}``; from
            ``DOCKET_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`` and the like.
        deadlock_timeout_s: workflow code that runs this long without awaiting is stopped
            (`DeadlockError`, docket/runtime/deadlock.py); 0 turns the check off. From
            ``DOCKET_DEADLOCK_TIMEOUT`` (seconds).
    """

    data_dir: Path = Path(".docket")
    namespace: str = "default"
    partitions: int = 4
    bootstrap_servers: str | None = None
    kafka_config: dict[str, str] = field(default_factory=dict)
    always_replay: bool = False
    replication_factor: int = -1
    min_insync_replicas: int | None = None
    command_retention_ms: int = 7 * 24 * 3600 * 1000
    reply_retention_ms: int = 24 * 3600 * 1000
    schema_registry_url: str | None = None
    schema_registry_config: dict[str, str] = field(default_factory=dict)
    deadlock_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):  # a str from code that is not type-checked
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not _NAMESPACE.match(self.namespace):
            raise ConfigurationError(
                f"namespace {self.namespace!r} is invalid: use 1-64 letters, digits, '_' or '-' "
                "(it prefixes topic names)"
            )
        if not 1 <= self.partitions <= 256:
            raise ConfigurationError(f"partitions must be between 1 and 256, got {self.partitions}")
        if self.replication_factor != -1 and self.replication_factor < 1:
            raise ConfigurationError(
                f"replication_factor must be -1 (the broker's default) or at least 1, got "
                f"{self.replication_factor}"
            )
        isr = self.min_insync_replicas
        rf = self.replication_factor
        if isr is not None and (isr < 1 or (rf != -1 and isr > rf)):
            raise ConfigurationError(
                f"min_insync_replicas must be between 1 and the replication factor "
                f"({self.replication_factor}), got {isr}: more would refuse every write"
            )
        if not self.deadlock_timeout_s >= 0:
            raise ConfigurationError(
                f"deadlock_timeout_s must be 0 (off) or a number of seconds, got "
                f"{self.deadlock_timeout_s}"
            )
        for name in ("command_retention_ms", "reply_retention_ms"):
            if getattr(self, name) != -1 and getattr(self, name) < 60_000:
                raise ConfigurationError(
                    f"{name} must be -1 (forever) or at least 60000 (a minute), got "
                    f"{getattr(self, name)}"
                )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DOCKET_<FIELD>`` variables (``DOCKET_DATA_DIR``,
        ``DOCKET_PARTITIONS``, ``DOCKET_SCHEMA_REGISTRY_URL``, ...; ``DOCKET_KAFKA_*`` and
        ``DOCKET_SCHEMA_REGISTRY_*`` collect client settings); explicit overrides win (None
        means "not given")."""
        env = os.environ
        values: dict[str, object] = {}
        if "DOCKET_DATA_DIR" in env:
            values["data_dir"] = Path(env["DOCKET_DATA_DIR"])
        if "DOCKET_NAMESPACE" in env:
            values["namespace"] = env["DOCKET_NAMESPACE"]
        for name in (
            "partitions",
            "replication_factor",
            "min_insync_replicas",
            "command_retention_ms",
            "reply_retention_ms",
        ):
            variable = f"DOCKET_{name.upper()}"
            if variable in env:
                try:
                    values[name] = int(env[variable])
                except ValueError:
                    raise ConfigurationError(
                        f"{variable} must be a whole number, got {env[variable]!r}"
                    ) from None
        if "DOCKET_DEADLOCK_TIMEOUT" in env:
            try:
                values["deadlock_timeout_s"] = float(env["DOCKET_DEADLOCK_TIMEOUT"])
            except ValueError:
                raise ConfigurationError(
                    "DOCKET_DEADLOCK_TIMEOUT must be a number of seconds (0: off), got "
                    f"{env['DOCKET_DEADLOCK_TIMEOUT']!r}"
                ) from None
        if env.get("DOCKET_BOOTSTRAP_SERVERS"):
            values["bootstrap_servers"] = env["DOCKET_BOOTSTRAP_SERVERS"]
        kafka = {
            name.removeprefix("DOCKET_KAFKA_").lower().replace("_", "."): value
            for name, value in env.items()
            if name.startswith("DOCKET_KAFKA_")
        }
        if kafka:
            values["kafka_config"] = kafka
        registry = {
            name.removeprefix("DOCKET_SCHEMA_REGISTRY_").lower().replace("_", "."): value
            for name, value in env.items()
            if name.startswith("DOCKET_SCHEMA_REGISTRY_") and name != "DOCKET_SCHEMA_REGISTRY_URL"
        }
        if registry:
            values["schema_registry_config"] = registry
        if env.get("DOCKET_SCHEMA_REGISTRY_URL"):
            values["schema_registry_url"] = env["DOCKET_SCHEMA_REGISTRY_URL"]
        if flag("DOCKET_ALWAYS_REPLAY"):
            values["always_replay"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"]))
        return cls(**values)  # type: ignore[arg-type]
