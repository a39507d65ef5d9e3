"""Records for user topics: names, values, headers and identities (pure; no I/O).

A workflow emits a record with ``ctx.emit`` and a client with ``Client.emit``; a signal
source turns a user topic's records into signals. The rules they share live here:

- **Names.** User topics belong to the user: they are not prefixed with the namespace. A
  name is 1-249 characters of ``[A-Za-z0-9._-]`` (Kafka's rule), and names starting with
  ``docket.`` are refused: those are Docket's own topics (docket/log/topics.py).
- **Values.** ``bytes`` pass through; ``str`` is encoded as UTF-8; anything else is JSON,
  with the same rules as step arguments (dataclasses as objects, datetimes as ISO 8601,
  ...); ``None`` is the JSON ``null`` (Docket never writes tombstones).
- **Identity.** Every record a workflow emits carries the header ``docket-record-id`` with
  ``<workflow_id>/<run_id>/<seq>``: the same on every re-processing, so a consumer can
  drop a record it has already seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from docket.codec.payload import to_payload

DOCKET_PREFIX = "docket."  # Docket's own topics (docket/log/topics.py) start with it
RECORD_ID_HEADER = "docket-record-id"
RESERVED_HEADER_PREFIX = "docket-"
MAX_TOPIC_LENGTH = 249  # Kafka's limit
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")


def topic_problem(topic: object) -> str | None:
    """Why ``topic`` cannot be a user topic, or None if it can."""
    if not isinstance(topic, str):
        return f"a topic name must be a string, got {type(topic).__name__}"
    if not topic or len(topic) > MAX_TOPIC_LENGTH or topic in (".", ".."):
        return f"topic {topic!r} is invalid: use 1-{MAX_TOPIC_LENGTH} characters"
    if not _TOPIC.match(topic):
        return f"topic {topic!r} is invalid: use only letters, digits, '.', '_' and '-'"
    if topic.startswith(DOCKET_PREFIX):
        return (
            f"topic {topic!r} is reserved: names starting with {DOCKET_PREFIX!r} are Docket's "
            "own topics; pick another name for your topic"
        )
    return None


def encode_value(value: Any, *, where: str) -> bytes:
    """A record value: bytes as they are, str as UTF-8, anything else as JSON.

    Raises SerializationError (naming ``where``) for a value JSON cannot hold."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b"null"
    data: bytes = to_payload(value, where=where)["data"]
    return data


def headers_problem(headers: object) -> str | None:
    """Why ``headers`` cannot go on a record, or None if they can."""
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        return f"headers must be a mapping of str to str or bytes, got {type(headers).__name__}"
    for name, value in headers.items():
        if not isinstance(name, str) or not name:
            return f"header name {name!r} is invalid: use a non-empty string"
        if name.startswith(RESERVED_HEADER_PREFIX):
            return f"header {name!r} is reserved: names starting with {RESERVED_HEADER_PREFIX!r} are Docket's"
        if not isinstance(value, str | bytes):
            return f"header {name!r} must be str or bytes, got {type(value).__name__}"
    return None


def record_problem(
    topic: object, key: object, headers: object, *, key_required: bool = False
) -> str | None:
    """Why a record with this topic, key and headers cannot be written, or None."""
    problem = topic_problem(topic) or headers_problem(headers)
    if problem is None and key is None and key_required:
        problem = "a record needs a key"
    if problem is None and key is not None and (not isinstance(key, str) or not key):
        problem = f"a record key must be a non-empty string, got {key!r}"
    return problem


def encode_headers(headers: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    """Header values as bytes (str as UTF-8); check them with `headers_problem` first."""
    return {
        k: v.encode("utf-8") if isinstance(v, str) else bytes(v) for k, v in (headers or {}).items()
    }


def record_id(workflow_id: str, run_id: str, seq: int) -> str:
    """The identity of the record a run emitted at ``seq``: stable across re-processing."""
    return f"{workflow_id}/{run_id}/{seq}"


def record_headers(
    workflow_id: str, run_id: str, seq: int, headers: Mapping[str, bytes]
) -> tuple[tuple[str, bytes], ...]:
    """The headers an emitted record carries: its identity first, then the user's, by name."""
    identity = (RECORD_ID_HEADER, record_id(workflow_id, run_id, seq).encode("utf-8"))
    return (identity, *sorted(headers.items()))


__all__ = [
    "DOCKET_PREFIX",
    "RECORD_ID_HEADER",
    "encode_headers",
    "encode_value",
    "headers_problem",
    "record_headers",
    "record_id",
    "record_problem",
    "topic_problem",
]
