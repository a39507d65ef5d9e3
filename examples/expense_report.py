"""Expense report: a step that a person finishes, through asynchronous step completion.

Why it matters: approvals, reviews and callbacks from outside systems finish a step long
after the step function has returned. Here the ``wait_for_decision`` step registers the
expense with an approval UI together with its **task token**, then calls
``complete_async()``: the attempt stays pending, and the worker moves on. When the manager
decides, the UI calls ``client.complete_step(token, decision)`` from its own process (here:
its own client), and the workflow continues to payment. The step's timeouts still apply: a
decision that comes too late is refused, and the step is retried or fails by its policy.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("expense_report")

approval_inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # the "UI": (expense, token)


@app.step
async def create_expense(expense_id: str) -> None:
    print(f"step: expense {expense_id} created")


@app.step(start_to_close_timeout=timedelta(minutes=10))
async def wait_for_decision(expense_id: str) -> str:
    token = docket.step_context().task_token
    await approval_inbox.put((expense_id, token))  # a real app would POST it to the UI
    print(f"step: expense {expense_id} sent for approval; completing asynchronously")
    docket.step_context().complete_async()


@app.step
async def payment(expense_id: str) -> str:
    return f"paid {expense_id}"


@app.workflow
async def expense_workflow(ctx: docket.WorkflowContext, expense_id: str) -> str:
    await ctx.step(create_expense, expense_id)
    decision = await ctx.step(wait_for_decision, expense_id)
    if decision != "APPROVED":
        return f"expense {expense_id} was {decision.lower()}"
    return await ctx.step(payment, expense_id)


async def approval_ui(data_dir: str, decisions: dict[str, str]) -> None:
    """The approval UI: its own client (it could be another process, or another machine
    once Docket runs on Kafka). Each decision completes the pending step by its token."""
    client = docket.Client.connect(data_dir=data_dir)
    try:
        for _ in decisions:
            expense_id, token = await approval_inbox.get()
            print(f"ui: manager decides {decisions[expense_id]} for {expense_id}")
            await client.complete_step(token, decisions[expense_id])
    finally:
        await client.close()


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        decisions = {"exp-1": "APPROVED", "exp-2": "REJECTED"}
        ui = asyncio.create_task(approval_ui(data_dir, decisions))
        handles = [
            await engine.client.start(expense_workflow, expense_id, workflow_id=expense_id)
            for expense_id in decisions
        ]
        results = [await handle.result(timeout=20) for handle in handles]
        await ui
        print(f"Results: {results}")
        assert results == ["paid exp-1", "expense exp-2 was rejected"]
        kinds = [event.type for event in await handles[0].history()]
        assert kinds.count("StepCompleted") == 3


if __name__ == "__main__":
    asyncio.run(main())
