"""Dynamic handlers: one catch-all workflow and one catch-all step serve many type names.

Why it matters: sometimes the set of workflow or step types is not known when the code is
written: it comes from configuration, a DSL or tenants' data. A dynamic workflow receives
every workflow type nobody registered, with the type name first and the arguments as plain
JSON; a dynamic step does the same for step names. They dispatch at run time, and can
refuse a type they do not support, which fails that run with a clear error.
"""

import asyncio
import os
import tempfile
from typing import Any

import docket

app = docket.App("dynamic_handlers")

# Configuration, not code: adding a language needs no new registration.
GREETINGS = {"english": "Hello", "french": "Bonjour", "spanish": "Hola"}


@app.step(dynamic=True)
async def any_step(step_name: str, *args: Any) -> Any:
    kind, _, language = step_name.partition(".")
    if kind == "compose-greeting":
        (name,) = args
        return f"{GREETINGS[language]}, {name}!"
    raise docket.ApplicationError(f"no step called {step_name!r}", non_retryable=True)


@app.workflow(dynamic=True)
async def any_workflow(ctx: docket.WorkflowContext, workflow_type: str, *args: Any) -> Any:
    kind, _, language = workflow_type.partition(".")
    if kind != "greeting" or language not in GREETINGS:
        raise docket.ApplicationError(f"unsupported workflow type {workflow_type!r}")
    (person,) = args
    return await ctx.step(f"compose-greeting.{language}", person["name"])


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        client = engine.client
        for language in ("english", "french", "spanish"):
            handle = await client.start(
                f"greeting.{language}", {"name": "Docket"}, workflow_id=f"greeting-{language}"
            )
            result = await handle.result()
            print(f"greeting.{language}: {result}")
            assert result == f"{GREETINGS[language]}, Docket!"

        handle = await client.start("greeting.klingon", {"name": "Docket"}, workflow_id="klingon")
        try:
            await handle.result()
        except docket.WorkflowFailedError as failed:
            print(f"greeting.klingon failed as expected: {failed.__cause__}")
            assert "unsupported workflow type 'greeting.klingon'" in str(failed.__cause__)
        else:
            raise AssertionError("an unsupported type should fail")


if __name__ == "__main__":
    asyncio.run(main())
