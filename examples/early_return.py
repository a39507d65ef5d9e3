"""Early return: start a workflow and get an early answer from it while it keeps working.

Why it matters: a payment, a booking, a sign-up often has a quick part the caller waits for
(validate, reserve) and a slow part it should not wait for (settle, notify). Update-with-
start sends the workflow's start and an update together: the update's handler waits until
the quick part is done and returns, so the caller has its answer in milliseconds, while the
workflow goes on to finish the slow part on its own.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("early_return")


@app.step
async def initialize_transaction(transaction_id: str, amount: int) -> str:
    if amount <= 0:
        raise docket.ApplicationError(f"invalid amount {amount}", non_retryable=True)
    return f"{transaction_id}: {amount} reserved"


@app.step
async def complete_transaction(transaction_id: str) -> str:
    await asyncio.sleep(0.5)  # the slow part: settlement with the bank
    return f"{transaction_id}: settled"


@app.workflow
class Transaction:
    def __init__(self) -> None:
        self.initialized: str | None = None
        self.error: str | None = None

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, transaction_id: str, amount: int) -> str:
        try:
            self.initialized = await ctx.step(initialize_transaction, transaction_id, amount)
        except docket.StepError as exc:
            self.error = str(exc)
            raise
        return await ctx.step(complete_transaction, transaction_id)

    @docket.update
    async def get_confirmation(self, ctx: docket.WorkflowContext) -> str:
        """Returns as soon as the transaction is initialized: the early return."""
        await ctx.wait_until(lambda: self.initialized is not None or self.error is not None)
        if self.error is not None:
            raise docket.ApplicationError(f"transaction failed: {self.error}")
        assert self.initialized is not None
        return self.initialized


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        client = engine.client
        started = asyncio.get_running_loop().time()
        update = await client.update_with_start(
            Transaction,
            "tx-1001",
            250,
            workflow_id="early-return-tx-1001",
            update=Transaction.get_confirmation,
        )
        confirmation = await update.result()
        early = asyncio.get_running_loop().time() - started
        print(f"Early answer after {early * 1000:.0f} ms: {confirmation}")
        status = (await update.workflow.describe()).status
        print(f"Workflow status then: {status}")
        assert confirmation == "tx-1001: 250 reserved"
        assert status == "running", "the workflow goes on after the early return"

        final = await update.workflow.result()
        print(f"Final result: {final}")
        assert final == "tx-1001: settled"


if __name__ == "__main__":
    asyncio.run(main())
