"""Multi-history replay: check recorded histories against workflow code before deploying it.

Why it matters: a running workflow resumes by re-running its code against its history, so a
code change that asks for different steps, in a different order, breaks executions already
in flight. Export histories of real runs (to JSON-lines files, as
``docket workflow history --json`` does), then replay every one against the new code, in a
test or in CI: ``replay_history`` runs no steps and writes nothing, and reports a
``NondeterminismError`` naming the event and the line of code that diverged.
"""

import asyncio
import os
import tempfile
from pathlib import Path

import docket
from docket.replay import load_history, replay_history

app = docket.App("multi_history_replay")


@app.step
async def compose(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@app.step
async def square(n: int) -> int:
    return n * n


@app.workflow
async def greet_all(ctx: docket.WorkflowContext, names: list[str]) -> list[str]:
    greetings = [await ctx.step(compose, "Hello", name) for name in names]
    await ctx.sleep(0.05)
    return greetings


@app.workflow
async def sum_of_squares(ctx: docket.WorkflowContext, numbers: list[int]) -> int:
    return sum(await asyncio.gather(*(ctx.step(square, n) for n in numbers)))


# The "next release": greet_all now waits *before* greeting. Histories recorded by the
# old code scheduled a step first, so this change would break runs already in flight.
next_release = docket.App("multi_history_replay")
next_release.workflow(sum_of_squares.fn)  # unchanged


@next_release.workflow(name="greet_all")
async def greet_all_v2(ctx: docket.WorkflowContext, names: list[str]) -> list[str]:
    await ctx.sleep(0.05)
    return [await ctx.step(compose, "Hello", name) for name in names]


async def record_histories(data_dir: str, out_dir: Path) -> list[Path]:
    runs = [
        (greet_all, ["Ada", "Grace"], "greet-1"),
        (greet_all, ["Linus"], "greet-2"),
        (sum_of_squares, [1, 2, 3, 4], "squares-1"),
    ]
    files = []
    async with docket.Engine(app, data_dir=data_dir) as engine:
        for workflow, arg, workflow_id in runs:
            handle = await engine.client.start(workflow, arg, workflow_id=workflow_id)
            print(f"ran {workflow_id}: {await handle.result()}")
            # the exact recorded events (what `docket workflow history --json` prints)
            path = out_dir / f"{workflow_id}.jsonl"
            await handle.export_history(path)
            files.append(path)
    return files


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    out_dir = Path(tempfile.mkdtemp(prefix="docket-histories-"))
    files = await record_histories(data_dir, out_dir)
    print(f"exported {len(files)} histories to {out_dir}")

    print("replaying against the current code:")
    for path in files:
        result = replay_history(app, load_history(path))
        print(f"  {path.name}: {result.events} events, {'OK' if result.ok else result.error}")
        assert result.ok, result.error

    print("replaying against the next release:")
    broken = []
    for path in files:
        result = replay_history(next_release, load_history(path))
        print(f"  {path.name}: {'OK' if result.ok else 'NONDETERMINISTIC'}")
        if result.error is not None:
            print(f"    {type(result.error).__name__}: {result.error}")
            assert isinstance(result.error, docket.errors.NondeterminismError)
            broken.append(result.workflow_id)
    assert broken == ["greet-1", "greet-2"], broken


if __name__ == "__main__":
    asyncio.run(main())
