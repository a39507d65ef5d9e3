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
    """

    data_dir: Path = Path(".docket")
    namespace: str = "default"
    partitions: int = 4
    bootstrap_servers: str | None = None
    kafka_config: dict[str, str] = field(default_factory=dict)
    always_replay: bool = False

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise ConfigurationError(
                f"namespace {self.namespace!r} is invalid: use 1-64 letters, digits, '_' or '-' "
                "(it prefixes topic names)"
            )
        if not 1 <= self.partitions <= 256:
            raise ConfigurationError(f"partitions must be between 1 and 256, got {self.partitions}")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DOCKET_DATA_DIR``, ``DOCKET_NAMESPACE``, ``DOCKET_PARTITIONS``,
        ``DOCKET_BOOTSTRAP_SERVERS`` and ``DOCKET_ALWAYS_REPLAY``; explicit overrides win
        (None means "not given")."""
        env = os.environ
        values: dict[str, object] = {}
        if "DOCKET_DATA_DIR" in env:
            values["data_dir"] = Path(env["DOCKET_DATA_DIR"])
        if "DOCKET_NAMESPACE" in env:
            values["namespace"] = env["DOCKET_NAMESPACE"]
        if "DOCKET_PARTITIONS" in env:
            try:
                values["partitions"] = int(env["DOCKET_PARTITIONS"])
            except ValueError:
                raise ConfigurationError(
                    f"DOCKET_PARTITIONS must be a whole number, got {env['DOCKET_PARTITIONS']!r}"
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
        if flag("DOCKET_ALWAYS_REPLAY"):
            values["always_replay"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"]))
        return cls(**values)  # type: ignore[arg-type]
