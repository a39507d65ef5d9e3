"""Hello World: a workflow that runs one step and returns its result.

Run it with ``python examples/hello_world.py``: no server, the embedded log lives in a
temporary data directory (set DOCKET_DATA_DIR to keep it).
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("hello_world")


@app.step
async def compose_greeting(name: str) -> str:
    return f"Hello, {name}!"


@app.workflow
async def say_hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(compose_greeting, name)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(say_hello, "World", workflow_id="hello-world")
        result = await handle.result()
        print(f"Result: {result}")
        assert result == "Hello, World!"


if __name__ == "__main__":
    asyncio.run(main())
