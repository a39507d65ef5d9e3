"""Query: read a running workflow's state from outside, without disturbing it.

Why it matters: progress, current status, the contents of a cart... callers often need to
look inside a workflow. A ``@docket.query`` handler reads the live state; queries are never
recorded in history, and a workflow that has finished still answers from its history.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("query")


@app.workflow
class GreetingWorkflow:
    def __init__(self) -> None:
        self.greeting = ""
        self.go_on = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, name: str) -> str:
        self.greeting = f"Hello, {name}!"
        await ctx.wait_until(lambda: self.go_on)  # until the caller has looked once
        self.greeting = f"Goodbye, {name}!"
        await ctx.sleep(0.2)
        return self.greeting

    @docket.signal
    def proceed(self, ctx: docket.WorkflowContext) -> None:
        self.go_on = True

    @docket.query
    def current_greeting(self, ctx: docket.QueryContext) -> str:
        return self.greeting


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(GreetingWorkflow, "World", workflow_id="query-example")
        first = await handle.query(GreetingWorkflow.current_greeting)
        print(f"First greeting: {first}")
        await handle.signal(GreetingWorkflow.proceed)
        second = await handle.query(GreetingWorkflow.current_greeting)  # sees the signal's effect
        print(f"Second greeting: {second}")
        result = await handle.result()
        after = await handle.query("current_greeting")  # closed: answered by replaying history
        print(f"Result: {result}; query after completion: {after}")
        history = [event.type for event in await handle.history()]
        assert (first, second, after) == ("Hello, World!", "Goodbye, World!", "Goodbye, World!")
        assert result == "Goodbye, World!"
        assert not any("Query" in kind for kind in history), "queries leave no trace in history"


if __name__ == "__main__":
    asyncio.run(main())
