"""The shipped Avro schemas, parsed once, with their CRC-64-AVRO fingerprints.

Readers resolve a record's writer schema from its fingerprint, so a record written with an
older schema version (kept in ``schemas/released/`` once released) is read with the current
one through Avro schema resolution.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form

# Named types other schemas refer to, in dependency order.
_SHARED = ("payload", "failure", "retry")
FAMILIES = ("command", "event", "task", "timer", "reply", "state", "layout")


def _load_json(name: str) -> dict[str, Any]:
    text = resources.files("docket.schemas").joinpath(f"{name}.avsc").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def named_types() -> dict[str, Any]:
    """Parsed shared named types (Payload, Failure, RetryPolicy), for composing schemas."""
    named: dict[str, Any] = {}
    for name in _SHARED:
        parse_schema(_load_json(name), named_schemas=named)
    return named


def parse_family(raw: dict[str, Any]) -> Any:
    """Parse one family's schema (as JSON) against the shared named types."""
    return parse_schema(raw, named_schemas=dict(named_types()))


def schema_fingerprint(parsed: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's canonical form."""
    canonical = to_parsing_canonical_form(expand_schema(parsed))
    return int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")


@cache
def current(family: str) -> Any:
    """The current parsed schema of a record family (``command``, ``event``, ...)."""
    return parse_family(_load_json(family))
