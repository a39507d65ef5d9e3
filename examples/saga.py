"""Saga: a money transfer that undoes the withdrawal when the deposit fails.

Why it matters: a business transaction across services cannot be rolled back by one
database. Each step that changes something registers how to undo it; when a later step
fails for good, ``docket.Saga`` runs the compensations as durable steps, newest first, and
the original failure still reaches the caller.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("saga")
ledger: list[str] = []  # what the "bank" did, in order (same process, for the demo)
NO_RETRY = docket.RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2)


@app.step
def withdraw(account: str, amount: int) -> None:
    ledger.append(f"withdraw {amount} from {account}")


@app.step
def withdraw_compensation(account: str, amount: int) -> None:
    ledger.append(f"refund {amount} to {account}")


@app.step(retry=NO_RETRY)
def deposit(account: str, amount: int) -> None:
    if account == "closed-account":
        raise docket.ApplicationError(
            f"{account} is closed", type="AccountClosed", non_retryable=True
        )
    ledger.append(f"deposit {amount} to {account}")


@app.step
def deposit_compensation(account: str, amount: int) -> None:
    ledger.append(f"take back {amount} from {account}")


@app.workflow
async def transfer(ctx: docket.WorkflowContext, source: str, target: str, amount: int) -> str:
    async with docket.Saga(ctx) as saga:
        await ctx.step(withdraw, source, amount)
        saga.compensate(withdraw_compensation, source, amount)
        await ctx.step(deposit, target, amount)
        saga.compensate(deposit_compensation, target, amount)
    return f"moved {amount} from {source} to {target}"


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        ok = await engine.client.start(transfer, "alice", "bob", 100, workflow_id="transfer-ok")
        print(f"Result: {await ok.result()}")
        assert ledger == ["withdraw 100 from alice", "deposit 100 to bob"]

        ledger.clear()
        bad = await engine.client.start(
            transfer, "alice", "closed-account", 50, workflow_id="transfer-bad"
        )
        try:
            await bad.result()
            raise AssertionError("the transfer should have failed")
        except docket.WorkflowFailedError as failed:
            step_error = failed.__cause__
            print(f"Failed as expected: {step_error}")
            assert isinstance(step_error, docket.StepError)
            assert (
                step_error.__cause__ is not None
                and step_error.__cause__.type_name == "AccountClosed"
            )
        print(f"Ledger: {ledger}")
        assert ledger == ["withdraw 50 from alice", "refund 50 to alice"]


if __name__ == "__main__":
    asyncio.run(main())
