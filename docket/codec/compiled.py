"""Avro encoder and decoder generated from a schema: Python source, compiled once per family.

Why it exists: fastavro's compiled writer interprets the schema dict on every call, and
for each ``["null", X]`` union it validates the value against X, recursively, before
writing it. On the engine's own records (captured from ``python -m bench hello``) that
was 8-25 µs per encode and 7-22 µs per decode, the largest CPU cost of the engine.
Generated code (the fields in order, records inlined, union branches picked by Python
type, varints from tables) encodes them 3-5x faster and decodes them 2-3x faster
(CPython 3.11, a 2-core VM, three runs): a StepCompleted event 8-12 -> 2.2 µs to encode,
8-10 -> 3.4 µs to decode; a state record with a pending step 18-23 -> 6.0-6.4 µs and
18-24 -> 8.8-9.2 µs. Its three timestamps (8-byte varints, 0.6 µs to write and 1 µs to
read each, in Python) are a third of what is left.

Why fastavro stays: it is the reference, and it resolves older writer schemas. This code
covers the current schema only, and is deliberately stricter than fastavro: whatever it
does not recognise (a value of an unexpected type, a shape fastavro would have to
validate, truncated or garbled bytes, bytes left over) raises, and the caller runs
fastavro instead, so errors and edge cases stay exactly fastavro's. Property tests
check the two byte for byte (``tests/codec/test_compiled.py``).

fastavro 1.13's conventions, mirrored (``_write.pyx``, ``_validation.pyx``, ``_read.pyx``):

1. Encoding a record: a missing field takes the field's default; with no default, it is
   None if ``"null" in`` the field's type, else an error.
2. Encoding a union: a ``(name, value)`` tuple names the branch (the full name of a
   named type, the type name of a primitive). Otherwise the first branch whose
   validation accepts the value wins. Only a record or map branch (recursive
   validation) can tie with another one of those, or an array with another array;
   such a union is handed to fastavro's ``write_data`` whole. Elsewhere the Python type
   picks the branch, and the branch's code accepts only what validation would.
3. Decoding a union whose branches hold exactly one record (or named reference) gives
   the plain value; in any other union a record (or named reference) branch gives
   ``(full name, value)`` (``return_record_name`` and ``return_record_name_override``).
4. Varints are zig-zag, at most 10 bytes and 64 bits; longer ones are fastavro's to read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from docket.errors import SerializationError

try:  # the union fastavro must validate (two record branches, no tuple) is written by it
    from fastavro._write import write_data as _write_data  # type: ignore[attr-defined]
except ImportError:  # pure-Python fastavro builds: such unions fall back to the caller
    _write_data = None

_PRIMITIVES = ("null", "boolean", "int", "long", "double", "string", "bytes")
_AVRO_TYPES = frozenset(  # fastavro.const.AVRO_TYPES: anything else is a named reference
    _PRIMITIVES
    + ("float", "fixed", "enum", "record", "error", "array", "map", "union", "request")
    + ("error_union",)
)
_RANGES = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}
_TABLE = 8192  # varints of -8192..8191 (1 or 2 bytes) come from a table
_DISPATCH = 4  # unions with more branches than this decode through a dict
_NONE: Mapping[str, str] = {}


class Unhandled(Exception):
    """Raised by the generated code for what it leaves to fastavro (it may also raise
    IndexError, KeyError, TypeError... on bad input: callers catch Exception)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@cache
def _runtime() -> dict[str, Any]:
    """The names generated code uses, built with the first codec compiled (the tables
    take ~10 ms and ~1.4 MB, once per process)."""
    # Varints from tables of 14-bit groups: a timestamp (8 bytes) is 4 lookups, no loop.
    last = tuple(  # a group that ends the varint
        [bytes((m,)) for m in range(128)]
        + [bytes(((m & 0x7F) | 0x80, m >> 7)) for m in range(128, 1 << 14)]
    )
    more = tuple([bytes(((m & 0x7F) | 0x80, (m >> 7) | 0x80)) for m in range(1 << 14)])

    def write_long(v: Any) -> bytes:
        if type(v) is not int or not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
            raise Unhandled
        n = v << 1 if v >= 0 else ~(v << 1)
        if n < 0x4000:
            return last[n]
        if n < 0x10000000:
            return more[n & 0x3FFF] + last[n >> 14]
        low = more[n & 0x3FFF] + more[(n >> 14) & 0x3FFF]
        n >>= 28
        if n < 0x4000:
            return low + last[n]
        if n < 0x10000000:
            return low + more[n & 0x3FFF] + last[n >> 14]
        return low + more[n & 0x3FFF] + more[(n >> 14) & 0x3FFF] + last[n >> 28]

    def write_int(v: Any) -> bytes:
        if type(v) is not int or not -0x80000000 <= v <= 0x7FFFFFFF:
            raise Unhandled
        return write_long(v)

    return {
        "_F": Unhandled,
        "_bad": _bad,
        # v in -8192..8191 at index v (negative ones from the end): its zig-zag varint
        "_Z": tuple(
            [last[v << 1] for v in range(_TABLE)] + [last[~(v << 1)] for v in range(-_TABLE, 0)]
        ),
        "_long": write_long,
        "_int": write_int,
        "_enc": str.encode,
        "_pd": struct.Struct("<d").pack,
        "_ud": struct.Struct("<d").unpack_from,
        # a 1-byte varint (first byte < 128): its value; a length: its value plus the byte
        # itself, negative lengths made too long to fit, so that the end check refuses them
        "_ZD": tuple((b >> 1) ^ -(b & 1) for b in range(128)),
        "_L1": tuple(1 + (b >> 1) if b % 2 == 0 else 1 << 62 for b in range(128)),
        "_rv": _read_varint,
        "_rl": _read_length,
        "_wd": _write_data,
    }


def _bad() -> bytes:
    raise Unhandled


_U64 = struct.Struct("<Q").unpack_from
_STOPS = 0x8080808080808080
_GROUPS = tuple((1 << (7 * k)) - 1 for k in range(9))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos``, whose first byte has the continuation bit: two
    bytes directly, up to 8 as one integer whose 7-bit groups are packed in three steps."""
    b = data[pos + 1]
    if b < 0x80:  # two bytes
        n = (data[pos] & 0x7F) | (b << 7)
        return (n >> 1) ^ -(n & 1), pos + 2
    if pos + 8 > len(data):
        return _read_varint_bytewise(data, pos)
    (x,) = _U64(data, pos)
    ends = ~x & _STOPS
    if not ends:  # 9 or 10 bytes
        return _read_varint_bytewise(data, pos)
    k = (ends & -ends).bit_length() >> 3
    x = (x & 0x007F007F007F007F) | ((x & 0x7F007F007F007F00) >> 1)
    x = (x & 0x00003FFF00003FFF) | ((x & 0x3FFF00003FFF0000) >> 2)
    n = ((x & 0x0FFFFFFF) | ((x >> 4) & 0x00FFFFFFF0000000)) & _GROUPS[k]
    return (n >> 1) ^ -(n & 1), pos + k


def _read_varint_bytewise(data: bytes, pos: int) -> tuple[int, int]:
    n = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Unhandled  # fastavro's 64-bit arithmetic decides what this means
    if n >> 64:
        raise Unhandled
    return (n >> 1) ^ -(n & 1), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_varint(data, pos)
    if n < 0:
        raise Unhandled
    return n, pos


class CompiledCodec:
    """The codec of one fastavro-parsed schema (with its ``__named_schemas``).

    ``encode(record, prefix)`` returns prefix + body; ``decode(data, offset)`` reads the
    body from offset to the very end. Both raise on anything they do not handle, for the
    caller to run fastavro instead. The code is generated on first use (the event
    family's ~3,000 lines take ~40 ms to compile, which an import should not pay); the
    schema is checked at once, so an unsupported type fails where the codec is made.

    ``relative`` maps fields of the top-level record to a namespace: their unions take
    and give record names relative to it (``"StepCompleted"`` for
    ``"docket.v1.StepCompleted"``), as records.py's callers write ``body``.
    """

    encode: Callable[[Any, bytes], bytes]
    decode: Callable[[bytes, int], Any]

    def __init__(
        self, schema: Any, *, label: str = "record", relative: Mapping[str, str] | None = None
    ) -> None:
        self._schema = schema
        self._label = label
        self._relative = dict(relative or {})
        self._named: dict[str, Any] = (
            schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
        )
        _Generator(self._named).find_recursive(schema)  # SerializationError if unsupported
        self._source = ""
        self.encode = self._encode_first
        self.decode = self._decode_first

    @property
    def source(self) -> str:
        """The generated module, for reading and debugging."""
        self._load()
        return self._source

    def _load(self) -> None:
        if self._source:
            return
        gen = _Generator(self._named)
        source = gen.module(self._schema, self._relative)
        namespace = dict(_runtime())
        namespace.update(gen.consts)
        exec(compile(source, f"<docket/codec/compiled.py: {self._label}>", "exec"), namespace)
        self.encode, self.decode = namespace["encode"], namespace["decode"]
        self._source = source

    def _encode_first(self, record: Any, prefix: bytes) -> bytes:
        self._load()
        return self.encode(record, prefix)

    def _decode_first(self, data: bytes, offset: int) -> Any:
        self._load()
        return self.decode(data, offset)


# The encoder is generated as items: a piece (an expression giving bytes, appended to the
# output list P later, several at once), a statement that does not touch P (a check, a
# local), or a line that writes P itself (a loop, a branch), before which the pieces
# waiting are flushed. So a run of fields costs one ``P += (...)``, and the record one
# ``b"".join(P)``: measured per piece, ``bytearray +=`` took ~45 ns, a list extended by
# tuples ~30 ns, and the pieces of one join ~20 ns.
_PIECE, _STMT, _WRITE = "p", "s", "w"
# Or if/elif branches, each (header, items, or None to raise): the pieces waiting are
# written in each branch, together with the branch's own.
_BRANCHES = "b"
_Item = tuple[str, Any]
_SIMPLE = frozenset(("null", "boolean", "int", "long", "double", "string", "bytes", "enum"))


def _render(items: list[_Item]) -> list[str]:
    lines: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if len(pending) == 1:
            lines.append(f"P.append({pending[0]})")
        elif pending:
            lines.append(f"P += ({', '.join(pending)})")
        pending.clear()

    for kind, text in items:
        if kind == _PIECE:
            pending.append(text)
        elif kind == _STMT:
            lines.append(text)
        elif kind == _BRANCHES:
            carried = [(_PIECE, piece) for piece in pending]
            pending.clear()
            for header, branch in text:
                lines.append(header)
                lines += _indent(["raise _F"] if branch is None else _render(carried + branch))
        else:
            flush()
            lines.append(text)
    flush()
    return lines


def _statements(*lines: str) -> list[_Item]:
    return [(_STMT, line) for line in lines]


def _writes(lines: list[str]) -> list[_Item]:
    return [(_WRITE, line) for line in lines]


def _indent(lines: list[str], levels: int = 1) -> list[str]:
    pad = "    " * levels
    return [pad + line for line in lines]


class _Generator:
    """Writes the module source; ``consts`` are the values it refers to by name."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.consts: dict[str, Any] = {}
        self.functions: list[str] = []
        self.tables: list[str] = []  # after the functions they name
        self.writers: dict[str, str] = {}  # record full name -> its writer's name
        self.readers: dict[str, str] = {}
        self.recursive: set[str] = set()
        self.unique = 0

    def const(self, value: Any, prefix: str) -> str:
        name = f"_{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self.unique += 1
        return f"{prefix}{self.unique}"

    def function(self, header: str, body: list[str]) -> None:
        self.functions.append("\n".join([header, *_indent(body or ["pass"])]))

    def resolve(self, t: Any, where: str) -> tuple[str, Any]:
        """(kind, schema) with named references followed; refuses what is not supported."""
        if isinstance(t, list):
            return "union", t
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return t, t
            if t in self.named:
                return self.resolve(self.named[t], where)
            raise _unsupported(t, where)
        if isinstance(t, dict):
            kind = t.get("type")
            if "logicalType" in t:
                raise _unsupported(f"{kind} with logicalType {t['logicalType']}", where)
            if kind in _PRIMITIVES or kind in ("record", "enum", "array", "map"):
                return str(kind), t
            raise _unsupported(kind, where)
        raise _unsupported(repr(t), where)

    def find_recursive(self, root: Any) -> None:
        """Records that contain themselves (Failure.cause) get a function; the others are
        written inline where they are used. Every cycle has a back edge to a record
        marked here, so inlining ends."""

        def walk(t: Any, stack: tuple[str, ...], seen: set[str], where: str) -> None:
            kind, s = self.resolve(t, where)
            if kind == "record":
                if s["name"] in stack:
                    self.recursive.update(stack[stack.index(s["name"]) :])
                elif s["name"] not in seen:
                    seen.add(s["name"])
                    for f in s["fields"]:
                        walk(f["type"], (*stack, s["name"]), seen, f"{s['name']}.{f['name']}")
            elif kind == "union":
                for i, b in enumerate(s):
                    walk(b, stack, seen, f"{where}|{i}")
            elif kind in ("array", "map"):
                walk(s["items" if kind == "array" else "values"], stack, seen, f"{where}[]")

        walk(root, (), set(), "top")

    def module(self, schema: Any, relative: Mapping[str, str]) -> str:
        self.find_recursive(schema)
        kind, top = self.resolve(schema, "top")
        if kind == "record" and top["name"] not in self.recursive:
            writes = self.record_fields(top, "r", relative)
            reads = self.record_values(top, "r", 0, relative)
        else:
            writes = self.encoder(schema, "r", "top")
            reads = self.decoder(schema, "r", 0, "top")
        items: list[_Item] = [(_PIECE, "prefix"), *writes]
        if any(k in (_WRITE, _BRANCHES) for k, _ in items):
            encode = ["P = []", *_render(items), "return b''.join(P)"]
        else:
            pieces = ", ".join(text for k, text in items if k == _PIECE)
            encode = [text for k, text in items if k == _STMT]
            encode.append(f"return b''.join(({pieces}))")
        decode = [*reads, "if p != len(d):", "    raise _F", "return r"]
        self.function("def encode(r, prefix):", encode)
        self.function("def decode(d, p):", decode)
        return "\n\n".join([*self.functions, *self.tables]) + "\n"

    # -- the encoder ---------------------------------------------------------------------

    def encoder(
        self, t: Any, v: str, where: str, strip: str = "", checked: bool = False
    ) -> list[_Item]:
        """Items that write the value in variable ``v`` (fastavro's write_data); with
        ``checked``, a union's branch test has already checked its Python type."""
        kind, s = self.resolve(t, where)
        if kind == "null":
            return _statements(f"if {v} is not None:", "    raise _F")
        if kind == "boolean":
            return [
                (_PIECE, f"(b'\\x01' if {v} is True else b'\\x00' if {v} is False else _bad())")
            ]
        if kind in ("int", "long"):
            test = f"-{_TABLE} <= {v} < {_TABLE}"
            if checked:  # in range too
                return [(_PIECE, f"(_Z[{v}] if {test} else _long({v}))")]
            return [(_PIECE, f"(_Z[{v}] if type({v}) is int and {test} else _{kind}({v}))")]
        if kind == "double":
            return [(_PIECE, f"(_pd({v}) if type({v}) is float or type({v}) is int else _bad())")]
        if kind == "string":
            x = self.fresh("x")
            return [(_STMT, f"{x} = _enc({v})"), self.length(x), (_PIECE, x)]
        if kind == "bytes":
            return [
                *_statements(f"if type({v}) is not bytes:", "    raise _F"),
                self.length(v),
                (_PIECE, v),
            ]
        if kind == "enum":
            table = self.const({sym: _varint(i << 1) for i, sym in enumerate(s["symbols"])}, "E")
            return [(_PIECE, f"{table}[{v}]")]
        if kind in ("array", "map"):
            return self.container_encoder(kind, s, v, where)
        if kind == "record":
            if s["name"] in self.recursive:
                return [(_WRITE, f"{self.record_writer(s)}({v}, P)")]
            return self.record_fields(s, v, checked=checked)
        return self.union_encoder(s, v, where, strip)

    def length(self, x: str) -> _Item:
        n = self.fresh("n")
        return (_PIECE, f"(_Z[{n}] if ({n} := len({x})) < {_TABLE} else _long({n}))")

    def container_encoder(self, kind: str, s: dict[str, Any], v: str, where: str) -> list[_Item]:
        """One block of all the items, then 0; just 0 when empty (write_array, write_map)."""
        item = self.fresh("v")
        if kind == "array":
            head = f"for {item} in {v}:"
            inner = self.encoder(s["items"], item, f"{where}[]")
        else:
            key, x = self.fresh("k"), self.fresh("x")
            head = f"for {key}, {item} in {v}.items():"
            inner = [
                (_STMT, f"{x} = _enc({key})"),
                self.length(x),
                (_PIECE, x),
                *self.encoder(s["values"], item, f"{where}{{}}"),
            ]
        block = _render([self.length(v), (_WRITE, head), *_writes(_indent(_render(inner)))])
        pytype = "list" if kind == "array" else "dict"
        return [
            *_statements(f"if type({v}) is not {pytype}:", "    raise _F"),
            *_writes([f"if {v}:", *_indent(block)]),
            (_PIECE, "b'\\x00'"),
        ]

    def record_fields(
        self,
        s: dict[str, Any],
        r: str,
        relative: Mapping[str, str] = _NONE,
        checked: bool = False,
    ) -> list[_Item]:
        """write_record: fields in order; a missing one takes its default (rule 1)."""
        items = [] if checked else _statements(f"if type({r}) is not dict:", "    raise _F")
        for f in s["fields"]:
            name, v = f["name"], self.fresh("v")
            if "default" in f and f["default"] is not None:
                items.append((_STMT, f"{v} = {r}.get({name!r}, {self.literal(f['default'])})"))
            elif "default" in f or "null" in f["type"]:  # the latter is fastavro's test
                items.append((_STMT, f"{v} = {r}.get({name!r})"))
            else:
                items.append((_STMT, f"{v} = {r}[{name!r}]"))
            items += self.encoder(f["type"], v, f"{s['name']}.{name}", relative.get(name, ""))
        return items

    def literal(self, value: Any) -> str:
        if value is None or isinstance(value, bool | int | str):
            return repr(value)
        return self.const(value, "D")

    def record_writer(self, s: dict[str, Any]) -> str:
        name = s["name"]
        if name not in self.writers:
            fn = self.writers[name] = f"_w{len(self.writers)}"
            self.function(f"def {fn}(r, P):  # {name}", _render(self.record_fields(s, "r")))
        return self.writers[name]

    def union_encoder(self, branches: list[Any], v: str, where: str, strip: str) -> list[_Item]:
        """write_union (rule 2)."""
        kinds = [self.resolve(b, where)[0] for b in branches]
        key, value, table = (
            self.fresh("k"),
            self.fresh("v"),
            self.tuple_table(branches, where, strip),
        )
        by_name = [f"{key}, {value} = {v}", f"t, f = {table}[{key}]"]
        if sum(k in ("record", "map") for k in kinds) > 1 or kinds.count("array") > 1:
            by_type: list[_Item] | None = None
            if _write_data is not None:
                schema, named = self.const(branches, "S"), self.const(self.named, "N")
                by_type = [
                    *_statements("T = bytearray()", f"_wd(T, {v}, {schema}, {named}, '', {{}})"),
                    (_PIECE, "T"),
                ]
            by_tuple = [*_statements(*by_name), (_PIECE, "t"), (_WRITE, f"f({value}, P)")]
            return [(_BRANCHES, [(f"if type({v}) is tuple:", by_tuple), ("else:", by_type)])]
        lines: list[str] = []
        if all(k in _SIMPLE for k in kinds):  # computed into a local: no flush
            u = self.fresh("u")
            for i, (b, kind) in enumerate(zip(branches, kinds, strict=True)):
                lines.append(f"{'elif' if lines else 'if'} {self.branch_test(kind, b, v, where)}:")
                items = [] if kind == "null" else self.encoder(b, v, f"{where}|{i}", "", True)
                pieces = [repr(_varint(i << 1))] + [t for k, t in items if k == _PIECE]
                lines += _indent([t for k, t in items if k == _STMT])
                lines.append(f"    {u} = {' + '.join(pieces)}")
            lines += [
                f"elif type({v}) is tuple:",
                *_indent(by_name),
                "    T = [t]",
                f"    f({value}, T)",
                f"    {u} = b''.join(T)",
                "else:",
                "    raise _F",
            ]
            return [*_statements(*lines), (_PIECE, u)]
        out: list[tuple[str, list[_Item] | None]] = []
        for i, (b, kind) in enumerate(zip(branches, kinds, strict=True)):
            header = f"{'elif' if out else 'if'} {self.branch_test(kind, b, v, where)}:"
            items = [] if kind == "null" else self.encoder(b, v, f"{where}|{i}", "", True)
            if kind == "record":  # validate_record's test of the "-type" key
                items = [*_statements(f"if '-type' in {v}:", "    raise _F"), *items]
            out.append((header, [(_PIECE, repr(_varint(i << 1))), *items]))
        by_tuple = [*_statements(*by_name), (_PIECE, "t"), (_WRITE, f"f({value}, P)")]
        out += [(f"elif type({v}) is tuple:", by_tuple), ("else:", None)]
        return [(_BRANCHES, out)]

    def branch_test(self, kind: str, branch: Any, v: str, where: str) -> str:
        """What fastavro's validation accepts for this branch (narrowed to exact types)."""
        if kind == "null":
            return f"{v} is None"
        if kind == "boolean":
            return f"type({v}) is bool"
        if kind in ("int", "long"):
            lo, hi = _RANGES[kind]
            return f"type({v}) is int and {lo} <= {v} <= {hi}"
        if kind == "double":
            return f"(type({v}) is float or type({v}) is int)"
        if kind in ("string", "bytes"):
            return f"type({v}) is {'str' if kind == 'string' else 'bytes'}"
        if kind == "enum":
            symbols = self.const(frozenset(self.resolve(branch, where)[1]["symbols"]), "Y")
            return f"type({v}) is str and {v} in {symbols}"
        return f"type({v}) is {'list' if kind == 'array' else 'dict'}"

    def tuple_table(self, branches: list[Any], where: str, strip: str) -> str:
        """Branch name -> (index varint, writer), for the names fastavro's writer and its
        validation agree on (a record's full name, a reference, a primitive's type)."""
        table: dict[str, tuple[bytes, str]] = {}
        for i, b in enumerate(branches):
            if isinstance(b, dict) and b.get("type") == "record":
                name = b["name"]
            elif isinstance(b, str):
                name = b
            else:
                continue
            if strip:  # the caller prefixes the namespace: other names cannot be reached
                if not name.startswith(strip):
                    continue
                name = name[len(strip) :]
            kind, s = self.resolve(b, where)
            if kind == "record":
                writer = self.record_writer(s)
            else:
                writer = self.fresh("_wb")
                self.function(f"def {writer}(v, P):", _render(self.encoder(b, "v", where)))
            table.setdefault(name, (_varint(i << 1), writer))
        name = self.fresh("_T")
        entries = ", ".join(f"{n!r}: ({t!r}, {w})" for n, (t, w) in table.items())
        self.tables.append(f"{name} = {{{entries}}}")
        return name

    # -- the decoder: lines that read the value at ``p`` of ``d`` into ``t`` -------------

    def decoder(self, ty: Any, t: str, depth: int, where: str, strip: str = "") -> list[str]:
        kind, s = self.resolve(ty, where)
        if kind == "null":
            return [f"{t} = None"]
        if kind == "boolean":
            return [f"{t} = d[p] != 0", "p += 1"]
        if kind in ("int", "long"):
            return _read_long(t)
        if kind == "double":
            return [f"{t} = _ud(d, p)[0]", "p += 8"]
        if kind in ("string", "bytes"):
            tail = ".decode()" if kind == "string" else ""
            return [  # lengths of one byte and of two (64 to 8191) inline
                "b = d[p]",
                "if b < 128:",
                "    e = p + _L1[b]",
                f"    {t} = d[p + 1:e]{tail}",
                "elif (n := b & 127 | d[p + 1] << 7) < 16384 and not n & 1:",
                "    e = p + 2 + (n >> 1)",
                f"    {t} = d[p + 2:e]{tail}",
                "else:",
                "    n, p = _rl(d, p)",
                "    e = p + n",
                f"    {t} = d[p:e]{tail}",
                "p = e",
            ]
        if kind == "enum":
            symbols = self.const(dict(enumerate(s["symbols"])), "E")
            return [*_read_long("i"), f"{t} = {symbols}[i]"]
        if kind in ("array", "map"):
            return self.container_decoder(kind, s, t, depth, where)
        if kind == "record":
            if s["name"] in self.recursive:
                return [f"{t}, p = {self.record_reader(s)}(d, p)"]
            return self.record_values(s, t, depth)
        return self.union_decoder(s, t, depth, where, strip)

    def container_decoder(
        self, kind: str, s: dict[str, Any], t: str, depth: int, where: str
    ) -> list[str]:
        """read_array, read_map: blocks until a count of 0; negative counts (with a block
        size) are fastavro's to read."""
        item, count = f"x{depth}", f"c{depth}"
        if kind == "array":
            inner = [
                *self.decoder(s["items"], item, depth + 1, f"{where}[]"),
                f"{t}.append({item})",
            ]
            guard = (
                []
                if self.min_size(s["items"])
                else [  # else a garbled count loops
                    f"if {count} > len(d) - p:",
                    "    raise _F",
                ]
            )
        else:
            key = f"q{depth}"
            inner = [
                *self.decoder("string", key, depth + 1, f"{where}{{}}"),
                *self.decoder(s["values"], item, depth + 1, f"{where}{{}}"),
                f"{t}[{key}] = {item}",
            ]
            guard = []
        return [
            f"{t} = {'[]' if kind == 'array' else '{}'}",
            *_read_long(count),
            f"while {count}:",
            f"    if {count} < 0:",
            "        raise _F",
            *_indent(guard),
            f"    for _ in range({count}):",
            *_indent(inner, 2),
            *_indent(_read_long(count)),
        ]

    def record_values(
        self, s: dict[str, Any], t: str, depth: int, relative: Mapping[str, str] = _NONE
    ) -> list[str]:
        """read_record: a dict of the fields, in order."""
        lines: list[str] = []
        names = []
        for f in s["fields"]:
            var = self.fresh("f")
            names.append(f"{f['name']!r}: {var}")
            where = f"{s['name']}.{f['name']}"
            lines += self.decoder(f["type"], var, depth, where, relative.get(f["name"], ""))
        return [*lines, f"{t} = {{{', '.join(names)}}}"]

    def record_reader(self, s: dict[str, Any]) -> str:
        name = s["name"]
        if name not in self.readers:
            fn = self.readers[name] = f"_r{len(self.readers)}"
            body = self.record_values(s, "r", 0)
            self.function(f"def {fn}(d, p):  # {name}", [*body, "return r, p"])
        return self.readers[name]

    def min_size(self, ty: Any) -> int:
        """Fewest bytes a value takes: 0 for null and records of nothing."""
        kind, s = self.resolve(ty, "schema")
        if kind == "null":
            return 0
        if kind == "record" and s["name"] not in self.recursive:
            return sum(self.min_size(f["type"]) for f in s["fields"])
        return 1

    def union_decoder(
        self, branches: list[Any], t: str, depth: int, where: str, strip: str
    ) -> list[str]:
        """read_union with return_record_name and its override (rule 3). With up to 64
        branches the index is one byte, matched as is; any other byte is fastavro's."""
        names = [n if n is None else n.removeprefix(strip) for n in self.union_names(branches)]
        if len(branches) <= 64:
            lines, keys = ["i = d[p]", "p += 1"], [i << 1 for i in range(len(branches))]
        else:
            lines, keys = _read_long("i"), list(range(len(branches)))
        if len(branches) > _DISPATCH:
            entries = []
            for i, b in enumerate(branches):
                fn = self.fresh("_rb")
                self.function(
                    f"def {fn}(d, p):", [*self.decoder(b, "v", 0, f"{where}|{i}"), "return v, p"]
                )
                entries.append(f"{keys[i]}: ({names[i]!r}, {fn})")
            table = self.fresh("_T")
            self.tables.append(f"{table} = {{{', '.join(entries)}}}")
            return [
                *lines,
                f"m, u = {table}[i]",
                f"{t}, p = u(d, p)",
                "if m is not None:",
                f"    {t} = (m, {t})",
            ]
        for i, b in enumerate(branches):
            lines.append(f"{'if' if i == 0 else 'elif'} i == {keys[i]}:")
            lines += _indent(self.decoder(b, t, depth, f"{where}|{i}"))
            if names[i] is not None:
                lines.append(f"    {t} = ({names[i]!r}, {t})")
        return [*lines, "else:", "    raise _F"]

    def union_names(self, branches: list[Any]) -> list[str | None]:
        """The name read_union pairs each branch's value with, if any."""

        def counts_as_record(b: Any) -> bool:
            kind = b.get("type") if isinstance(b, dict) else b
            return kind == "record" or (isinstance(kind, str) and kind not in _AVRO_TYPES)

        if sum(counts_as_record(b) for b in branches) == 1:
            return [None] * len(branches)
        names: list[str | None] = []
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "record":
                names.append(b["name"])
            elif isinstance(b, str) and b not in _AVRO_TYPES:
                names.append(self.named[b]["name"])
            else:
                names.append(None)
        return names


def _read_long(t: str) -> list[str]:
    return [
        "b = d[p]",
        "if b < 128:",
        f"    {t} = _ZD[b]",
        "    p += 1",
        "else:",
        f"    {t}, p = _rv(d, p)",
    ]


def _unsupported(kind: Any, where: str) -> SerializationError:
    return SerializationError(
        f"the compiled Avro codec cannot handle type {kind!r} (at {where}): it supports "
        "null, boolean, int, long, double, string, bytes, record, enum, array, map and "
        "unions. Add the type to docket/codec/compiled.py, encoder and decoder, with its "
        "case in the strategies of tests/codec/test_compiled.py"
    )
