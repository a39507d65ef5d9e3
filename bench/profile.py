"""Summarise a py-spy raw profile: ``python -m bench.profile FILE.raw [--top N]``.

Record one with (from the repo root)::

    py-spy record -r 200 -f raw -o /tmp/hello.raw -- python -m bench hello --n 6000

Prints self and inclusive time per function (line numbers folded) and a breakdown by
component: each sample goes to the deepest frame that belongs to Docket (or the bench),
classified by its module; samples with no Docket frame are the event loop's own.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (path fragment, function name or None, component); first match wins, checked leaf first
_COMPONENTS = [
    ("docket/log/embedded.py", "_Txn.__exit__", "sqlite: COMMIT (fsync)"),
    ("docket/log/embedded.py", "_Txn.__enter__", "sqlite: BEGIN IMMEDIATE"),
    ("docket/log/embedded.py", "EmbeddedLog.change_token", "sqlite: PRAGMA data_version"),
    ("docket/log/embedded.py", "EmbeddedLog.read", "sqlite: read"),
    ("docket/log/embedded.py", None, "sqlite: append/other"),
    ("docket/log/base.py", None, "log: group commit"),
    ("docket/codec/records.py", None, "avro encode/decode"),
    ("docket/codec/compiled.py", None, "avro encode/decode"),  # also its generated code
    ("docket/codec/payload.py", None, "payload json/args"),
    ("docket/codec/failure.py", None, "failure codec"),
    ("docket/state/store.py", None, "rocksdb state store"),
    ("streams/timers.py", None, "timer service"),
    ("docket/runtime/", None, "workflow runtime (deterministic loop)"),
    ("docket/context.py", None, "workflow runtime (deterministic loop)"),
    ("docket/execution/", None, "decide/fold"),
    ("streams/outputs.py", None, "outputs"),
    ("streams/handoff.py", None, "processor (other)"),
    ("streams/batch.py", None, "rocksdb state store"),
    ("streams/host.py", None, "partition group"),
    ("streams/execution.py", None, "processor (other)"),
    ("docket/worker.py", None, "worker"),
    ("docket/client.py", None, "client"),
    ("docket/partitioner.py", None, "partitioner"),
    ("docket/log/partitioner.py", None, "partitioner"),
    ("bench/", None, "bench harness"),
    ("docket/", None, "docket (other)"),
]


def parse(line: str) -> tuple[list[tuple[str, str, str]], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw)
        frames.append((m["fn"], m["file"], m["line"] or "") if m else (raw, "", ""))
    return frames, int(count)


def component(frames: list[tuple[str, str, str]]) -> str:
    for fn, file, _ in reversed(frames):
        for fragment, name, label in _COMPONENTS:
            if fragment in file and (name is None or name == fn):
                return label
    return "event loop / other"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    comp: Counter[str] = Counter()
    asyncio_leaf = 0
    total = 0
    with open(args.raw) as f:
        for line in f:
            if not line.strip():
                continue
            frames, n = parse(line)
            if any(fn == "_watch" and "deadlock" in file for fn, file, _ in frames):
                continue  # the deadlock watchdog's thread: it sleeps (py-spy samples it anyway)
            total += n
            fn, file, _ = frames[-1]
            self_t[f"{fn} ({file})"] += n
            for key in {f"{fn} ({file})" for fn, file, _ in frames}:
                incl[key] += n
            comp[component(frames)] += n
            if "asyncio/" in file or "selectors" in file:
                asyncio_leaf += n
    pc = lambda n: f"{100.0 * n / total:5.1f}%"  # noqa: E731
    print(f"samples: {total}")
    print("\n== by component (deepest Docket frame) ==")
    for name, n in comp.most_common():
        print(f"{pc(n)}  {name}")
    print(f"\n(samples whose leaf is in asyncio/selectors: {pc(asyncio_leaf)})")
    print(f"\n== self time (top {args.top}) ==")
    for name, n in self_t.most_common(args.top):
        print(f"{pc(n)}  {name}")
    print(f"\n== inclusive time (top {args.top}) ==")
    for name, n in incl.most_common(args.top):
        print(f"{pc(n)}  {name}")


if __name__ == "__main__":
    main()
