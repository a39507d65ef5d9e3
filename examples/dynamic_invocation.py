"""Dynamic invocation: start workflows and call steps by their names, chosen at run time.

Why it matters: a name is enough to invoke something, so the code that starts or runs work
does not need to import it. A generic executor can follow a plan that arrives as data
(configuration, a DSL, a message), and steps can live in other processes. Values are JSON
on the log; a caller that only knows a name has no type to rebuild them with, so the client
that started ``"text-pipeline"`` by name gets a step's dataclass result back as a dict.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import docket

app = docket.App("dynamic_invocation")


@dataclass
class WordStats:
    text: str
    words: int


@app.step(name="strip")
def strip(text: str) -> str:
    return text.strip()


@app.step(name="title")
def title(text: str) -> str:
    return text.title()


@app.step(name="exclaim")
def exclaim(text: str) -> str:
    return text + "!"


@app.step(name="word-stats")
def word_stats(text: str) -> WordStats:
    return WordStats(text, words=len(text.split()))


@app.workflow(name="text-pipeline")
async def text_pipeline(ctx: docket.WorkflowContext, text: str, plan: list[str]) -> Any:
    value: Any = text
    for step_name in plan:  # the plan is data: step names, resolved when the step runs
        value = await ctx.step(step_name, value)
    return value


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        client = engine.client
        plans = {
            "shout": ["strip", "title", "exclaim"],
            "stats": ["strip", "word-stats"],
        }
        results = {}
        for label, plan in plans.items():
            handle = await client.start(  # the workflow, too, is named by a string
                "text-pipeline", "  hello dynamic docket  ", plan, workflow_id=f"pipeline-{label}"
            )
            results[label] = await handle.result()
            print(f"{' -> '.join(plan)}: {results[label]!r}")

        assert results["shout"] == "Hello Dynamic Docket!"
        assert results["stats"] == {"text": "hello dynamic docket", "words": 3}


if __name__ == "__main__":
    asyncio.run(main())
