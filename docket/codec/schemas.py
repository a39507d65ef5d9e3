"""The shipped Avro schemas, parsed once, with their CRC-64-AVRO fingerprints.

Readers resolve a record's writer schema from its fingerprint, so a record written with an
older schema version is read with the current one through Avro schema resolution. Every
version any Docket has written is kept in ``schemas/released/`` as
``<family>.<fingerprint>.avsc``; after changing a schema, ``python -m docket.schemas``
adds the new version there (a test fails until it does).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
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
def released(family: str) -> dict[bytes, str]:
    """The kept versions of ``family``'s schema: fingerprint -> file in ``released/``. The
    fingerprint is the file's name, not recomputed from the document (see `to_standalone`)."""
    kept: dict[bytes, str] = {}
    for entry in resources.files("docket.schemas").joinpath("released").iterdir():
        name, _, rest = entry.name.partition(".")
        if name == family and rest.endswith(".avsc"):
            kept[bytes.fromhex(rest.removesuffix(".avsc"))] = entry.name
    return kept


def released_text(family: str, fingerprint: bytes) -> str | None:
    """The kept version of ``family`` with this fingerprint, as its JSON document."""
    name = released(family).get(fingerprint)
    if name is None:
        return None
    return resources.files("docket.schemas").joinpath("released", name).read_text("utf-8")


def load_released(family: str, fingerprint: bytes) -> Any | None:
    """The parsed kept version of ``family`` with this fingerprint, or None."""
    text = released_text(family, fingerprint)
    return None if text is None else parse_schema(json.loads(text))


def keep_current(folder: Path) -> list[Path]:
    """Write each family's current schema into ``folder`` (the source tree's
    ``schemas/released``) unless it is there already; returns the files written."""
    written = []
    for family in FAMILIES:
        path = folder / f"{family}.{schema_fingerprint(current(family)).hex()}.avsc"
        if not path.exists():
            path.write_text(json.dumps(json.loads(to_standalone(current(family))), indent=1) + "\n")
            written.append(path)
    return written


@cache
def current(family: str) -> Any:
    """The current parsed schema of a record family (``command``, ``event``, ...)."""
    return parse_family(_load_json(family))


_NAMED_KINDS = ("record", "error", "enum", "fixed")


@cache
def standalone(family: str) -> str:
    """The current schema of ``family`` as one self-contained JSON document (`to_standalone`)."""
    return to_standalone(current(family))


def to_standalone(parsed: Any) -> str:
    """A parsed family schema as one self-contained JSON document, for readers
    outside Docket (the schemas topic, a schema registry): each named type is defined where
    it is first used, as Avro requires, and referred to by name after that; docs and
    defaults are kept. It describes the same records as the family's schema, but its
    canonical form per the Avro specification is not the one Docket's fingerprints are
    computed over (fastavro's expansion repeats a named type used twice): readers look
    fingerprints up, never recompute them."""
    named: dict[str, Any] = parsed["__named_schemas"]
    defined: set[str] = set()

    def inline(node: Any) -> Any:
        if isinstance(node, str):
            return inline(named[node]) if node in named and node not in defined else node
        if isinstance(node, list):  # a union
            return [inline(branch) for branch in node]
        if not isinstance(node, dict):
            return node
        out = {k: v for k, v in node.items() if not k.startswith("__")}
        if out.get("type") in _NAMED_KINDS:
            defined.add(out["name"])
        else:
            for key in ("type", "items", "values"):
                if key in out:
                    out[key] = inline(out[key])
        if "fields" in out:
            out["fields"] = [
                {
                    **{k: v for k, v in f.items() if not k.startswith("__")},
                    "type": inline(f["type"]),
                }
                for f in out["fields"]
            ]
        return out

    return json.dumps(inline(parsed))
