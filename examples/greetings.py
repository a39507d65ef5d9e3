"""Greetings: three steps in sequence, each one's output feeding the next.

Why it matters: a workflow is ordinary sequential code, yet every step result is recorded,
so a crash between steps resumes after the last finished one instead of starting over.
The steps are methods of one object: that is how a step reaches shared dependencies
(a client, a config) without globals; register the bound methods with ``app.step``.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("greetings")


class GreetingSteps:
    """Steps that share configuration (stand-in for a database or an HTTP client)."""

    def __init__(self, greeting: str, name: str) -> None:
        self.greeting = greeting
        self.name = name

    async def get_greeting(self) -> str:
        return self.greeting

    async def get_name(self) -> str:
        return self.name

    async def say_greeting(self, greeting: str, name: str) -> str:
        return f"{greeting} {name}!"


steps = GreetingSteps(greeting="Hello", name="Docket")
get_greeting = app.step(steps.get_greeting)
get_name = app.step(steps.get_name)
say_greeting = app.step(steps.say_greeting)


@app.workflow
async def greetings(ctx: docket.WorkflowContext) -> str:
    greeting = await ctx.step(get_greeting)
    name = await ctx.step(get_name)
    return await ctx.step(say_greeting, greeting, name)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(greetings, workflow_id="greetings")
        result = await handle.result()
        print(f"Result: {result}")
        assert result == "Hello Docket!"

        history = await handle.history()
        ran = [e.attributes["step_name"] for e in history if e.type == "StepScheduled"]
        print(f"Steps, in order: {' -> '.join(ran)}")
        assert ran == ["get_greeting", "get_name", "say_greeting"]


if __name__ == "__main__":
    asyncio.run(main())
