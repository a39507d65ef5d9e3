"""User values <-> ``Payload{encoding, data}``.

JSON is the default encoding because histories are for people too (audit, ``docket workflow
history``). Dataclasses are encoded as objects and rebuilt from the receiving function's
type hints, so a step declared ``def charge(order: Order)`` receives an ``Order``. The
same goes for the standard value types JSON lacks: ``datetime``, ``date`` and ``time`` (ISO
8601 strings), ``timedelta`` (seconds), ``UUID`` and ``Decimal`` (strings) and enums (their
values).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import inspect
import json
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

from docket.errors import SerializationError

Payload = dict[str, Any]  # {"encoding": str, "data": bytes}, as in schemas/payload.avsc

JSON = "json/plain"
NULL = "binary/null"
_NULL_PAYLOAD: Payload = {"encoding": NULL, "data": b""}


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__qualname__} is not JSON-encodable")


_ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"))  # json.dumps makes one per call
_DECODER = json.JSONDecoder()
# (str, index) -> (value, end); set by JSONDecoder.__init__, missing from typeshed
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """``json.loads`` without its two whitespace regexes, for what our encoder writes: one
    value spanning the text (5x faster for a short string). Anything else (whitespace
    around it, trailing data) takes the full decoder, which also raises its errors."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


def to_payload(value: Any, *, where: str = "value") -> Payload:
    """Encode one user value; ``where`` names it in the error (e.g. "argument 'order' of step 'charge'")."""
    if value is None:
        return _NULL_PAYLOAD
    try:
        data = _ENCODER.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"cannot encode {where}: {exc}. Use JSON types, dataclasses, or convert it first"
        ) from exc
    return {"encoding": JSON, "data": data}


def from_payload(payload: Payload, hint: Any = None, *, where: str = "value") -> Any:
    """Decode one payload, rebuilding dataclasses named by ``hint`` (a type annotation)."""
    try:
        return _value(payload, hint)
    except SerializationError as exc:
        raise SerializationError(f"cannot decode {where}: {exc}") from exc


def _value(payload: Payload, hint: Any) -> Any:
    """`from_payload` without naming the value in the error: its callers name it only
    when decoding fails, not on every call."""
    encoding = payload["encoding"]
    if encoding == NULL:
        return None
    if encoding != JSON:
        raise SerializationError(f"unknown payload encoding {encoding!r}")
    try:
        value = _decode(payload["data"].decode())  # UTF-8, as written: skips sniffing
    except ValueError as exc:
        raise SerializationError(str(exc)) from exc
    if hint is None or _as_decoded(hint):
        return value
    return _shape(value, hint)


# what decoded JSON already is: a hint naming only these (also in lists, dicts and unions)
# leaves the value as decoded, so it skips _shape's walk (most steps take and return these)
_JSON_TYPES = frozenset({str, int, float, bool, list, dict, object, type(None)})
_JSON_CONTAINERS = frozenset({list, dict, typing.Sequence, collections.abc.Sequence, Union})


@functools.lru_cache(maxsize=4096)
def _hashable_as_decoded(hint: Any) -> bool:
    if hint is Any or hint in _JSON_TYPES:
        return True
    origin = get_origin(hint)
    if origin in _JSON_CONTAINERS or origin is types.UnionType or origin is collections.abc.Mapping:
        return all(_hashable_as_decoded(arg) for arg in get_args(hint))
    return False


def _as_decoded(hint: Any) -> bool:
    """Whether `_shape` would give any decoded JSON back unchanged for ``hint``."""
    try:
        return _hashable_as_decoded(hint)
    except TypeError:  # an unhashable hint (Annotated metadata): shaped, as before
        return False


def _shape(value: Any, hint: Any) -> Any:
    """Turn decoded JSON into the annotated type: dataclasses (recursively, also inside
    lists, tuples, dicts and Optional/unions), bytes and sets."""
    if value is None or hint is Any:
        return value
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            return _dataclass(value, hint)
        if hint is bytes and isinstance(value, str):
            return value.encode("latin-1")
        if hint in (set, frozenset) and isinstance(value, list):
            return hint(value)
        rebuild = _SCALARS.get(hint)
        if rebuild is not None and isinstance(value, _SCALAR_JSON[hint]):
            try:
                return rebuild(value)
            except (ValueError, decimal.InvalidOperation) as exc:
                raise SerializationError(f"{value!r} is not a {hint.__qualname__}: {exc}") from None
        if issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError as exc:
                raise SerializationError(str(exc)) from None
        return value
    origin = get_origin(hint)
    args = get_args(hint)
    if (
        origin in (list, typing.Sequence, collections.abc.Sequence)
        and args
        and isinstance(value, list)
    ):
        return [_shape(v, args[0]) for v in value]
    if origin in (set, frozenset) and isinstance(value, list):
        return origin(_shape(v, args[0]) if args else v for v in value)
    if origin is tuple and args and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_shape(v, args[0]) for v in value)
        return tuple(_shape(v, a) for v, a in zip(value, args, strict=False))
    if origin in (dict, collections.abc.Mapping) and len(args) == 2 and isinstance(value, dict):
        return {k: _shape(v, args[1]) for k, v in value.items()}
    if origin in (Union, types.UnionType):
        for arm in args:
            if arm is not type(None) and _fits(value, arm):
                return _shape(value, arm)
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether decoded JSON ``value`` could be an instance of ``hint`` (to pick a union arm)."""
    if hint is Any:  # any value is; and isinstance(value, Any) raises TypeError
        return True
    target = get_origin(hint) or hint
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return isinstance(value, dict)
    if target in (list, tuple, set, frozenset, typing.Sequence, collections.abc.Sequence):
        return isinstance(value, list)
    if target in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if target is bytes:
        return isinstance(value, str)
    if target in _SCALARS:
        return isinstance(value, _SCALAR_JSON[target])
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return any(member.value == value for member in target)
    return isinstance(target, type) and isinstance(value, target)


# standard types JSON lacks: how each is rebuilt, and the JSON type it was written as
_SCALARS: dict[Any, Any] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    dt.timedelta: lambda seconds: dt.timedelta(seconds=seconds),
    uuid.UUID: uuid.UUID,
    decimal.Decimal: decimal.Decimal,
}
_SCALAR_JSON: dict[Any, Any] = {
    dt.datetime: str,
    dt.date: str,
    dt.time: str,
    dt.timedelta: int | float,
    uuid.UUID: str,
    decimal.Decimal: str,
}


def _dataclass(value: dict[str, Any], hint: type) -> Any:
    hints = typing.get_type_hints(hint)
    fields = {f.name for f in dataclasses.fields(hint)}
    kwargs = {k: _shape(v, hints.get(k, Any)) for k, v in value.items() if k in fields}
    try:
        return hint(**kwargs)
    except TypeError as exc:
        raise SerializationError(
            f"cannot rebuild {hint.__qualname__} from {sorted(value)}: {exc}. The data was "
            "written with another shape of the class: give new fields defaults"
        ) from exc


def encode_args(
    args: tuple[Any, ...], kwargs: dict[str, Any], *, where: str
) -> tuple[list[Payload], dict[str, Payload]]:
    return (
        [to_payload(a, where=f"argument {i} of {where}") for i, a in enumerate(args)],
        {k: to_payload(v, where=f"argument {k!r} of {where}") for k, v in kwargs.items()},
    )


@functools.lru_cache(maxsize=4096)
def _signature_hints(fn: Any, skip: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(hint of each positional parameter, hints by name) for ``fn``, computed once."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode as plain JSON
        hints = {}
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        params = []
    positional = tuple(
        hints.get(p.name) for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    return positional, hints


def decode_args(
    fn: Any, args: list[Payload], kwargs: dict[str, Payload], *, skip: int = 0, where: str
) -> tuple[list[Any], dict[str, Any]]:
    """Decode arguments for ``fn``, using its annotations; ``skip`` leading params (ctx, self)."""
    positional, hints = _signature_hints(fn, skip)
    out_args = []
    for i, payload in enumerate(args):
        hint = positional[i] if i < len(positional) else None
        try:
            out_args.append(_value(payload, hint))
        except SerializationError as exc:
            raise SerializationError(f"cannot decode argument {i} of {where}: {exc}") from exc
    out_kwargs = {}
    for name, payload in kwargs.items():
        try:
            out_kwargs[name] = _value(payload, hints.get(name))
        except SerializationError as exc:
            raise SerializationError(f"cannot decode argument {name!r} of {where}: {exc}") from exc
    return out_args, out_kwargs
