"""Re-record the golden histories in tests/replay/histories/ (run by hand, then commit).

    python tests/replay/record_histories.py

Each golden file is the exact history of one example workflow. CI replays them against the
current code (tests/replay/test_golden.py): a failure there means a change would break
executions that are running in production. Also records ``nondeterministic_hello.jsonl``
from a variant of examples/hello_world.py that sleeps before greeting, to prove the check.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import docket

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).parent / "histories"

# example file -> (workflow attribute, arguments)
GOLDEN: dict[str, tuple[str, list[Any]]] = {
    "hello_world": ("say_hello", ["World"]),
    "branch": ("fan_out", [3]),
    "split_merge_ordered": ("split_merge", [4]),
    "concurrent_tasks": ("concurrent_sequences", [3]),
    "greetings_local": ("greetings_local", []),
}


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def record(app: docket.App, workflow: Any, args: list[Any], path: Path) -> None:
    async with docket.Engine(app, data_dir=tempfile.mkdtemp(prefix="docket-golden-")) as engine:
        handle = await engine.client.start(workflow, *args, workflow_id=path.stem)
        await handle.result(timeout=30)
        await handle.export_history(path)


def variant_app() -> tuple[docket.App, Any]:
    """examples/hello_world.py as an older release wrote it: a pause before the greeting."""
    app = docket.App("hello_world")

    @app.step
    async def compose_greeting(name: str) -> str:
        return f"Hello, {name}!"

    @app.workflow
    async def say_hello(ctx: docket.WorkflowContext, name: str) -> str:
        await ctx.sleep(0.01)
        return await ctx.step(compose_greeting, name)

    return app, say_hello


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    for name, (attribute, args) in GOLDEN.items():
        module = load_example(name)
        await record(module.app, getattr(module, attribute), args, HISTORIES / f"{name}.jsonl")
    app, workflow = variant_app()
    await record(app, workflow, ["World"], HISTORIES / "nondeterministic_hello.jsonl")


if __name__ == "__main__":
    asyncio.run(main())
