"""Greetings with local steps: the same three-step sequence, run inline by the processor.

Why it matters: a normal step costs a round trip (a task on the log, a worker picks it up,
its result comes back as a command). For short, idempotent work that is mostly overhead.
``ctx.local_step`` runs the function right where the workflow runs, yet its result is
still recorded in history and its retry policy still applies. To prove no task round trip
happens, this engine runs with no worker at all.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("greetings_local")


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
async def greetings_local(ctx: docket.WorkflowContext) -> str:
    greeting = await ctx.local_step(get_greeting)
    name = await ctx.local_step(get_name)
    return await ctx.local_step(say_greeting, greeting, name)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    # worker=False: nothing in this process consumes step tasks, so the workflow can only
    # finish if its steps really run inline.
    async with docket.Engine(app, data_dir=data_dir, worker=False) as engine:
        handle = await engine.client.start(greetings_local, workflow_id="greetings-local")
        result = await handle.result(timeout=10)
        print(f"Result: {result}")
        assert result == "Hello Docket!"

        history = await handle.history()
        scheduled = [e.attributes for e in history if e.type == "StepScheduled"]
        for step in scheduled:
            print(f"  recorded step {step['step_name']!r} (local={step['local']})")
        assert [s["step_name"] for s in scheduled] == ["get_greeting", "get_name", "say_greeting"]
        assert all(s["local"] for s in scheduled)


if __name__ == "__main__":
    asyncio.run(main())
