"""Child workflow: a workflow that starts another workflow and waits for its result.

Why it matters: big processes are easier to build, test and reuse as smaller workflows.
A child has its own workflow ID and history (and lives on its own partition), gets its
arguments from the parent and hands its result back; if it fails, the parent gets a
`ChildWorkflowError` caused by the child's own failure, and decides what to do.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("child_workflow")


@app.step
async def compose_greeting(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@app.workflow
async def greeting_child(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(compose_greeting, "Hello", name)


@app.workflow
async def greeting_parent(ctx: docket.WorkflowContext, name: str) -> str:
    greeting = await ctx.child(greeting_child, name, workflow_id=f"{ctx.workflow_id}-child")
    return f"the child said: {greeting}"


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(greeting_parent, "World", workflow_id="parent")
        result = await handle.result()
        print(f"Result: {result}")
        assert result == "the child said: Hello, World!"
        child = await engine.client.describe("parent-child")
        print(f"Child {child.workflow_id}: {child.status}, {child.history_length} events of its own")
        assert child.status == "completed"
        kinds = [event.type for event in await handle.history()]
        print(f"Parent history: {', '.join(kinds)}")
        assert kinds.count("ChildWorkflowCompleted") == 1


if __name__ == "__main__":
    asyncio.run(main())
