"""`docket.step_ref`: a step another app's worker runs, called with its options.

A bare name could only take the defaults (retry for ever, no timeouts, the workflow's
queue); a Temporal user calls an activity by name with its timeouts, retry policy and
task queue at the call site.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import docket
from docket.errors import DefinitionError, StepError, WorkflowFailedError

orders = docket.App("orders")  # the workflows: it does not import the payments code
payments = docket.App("payments")  # the steps, on their own queue, in their own worker

charge = docket.step_ref(
    "charge",
    task_queue="payments",
    start_to_close_timeout=timedelta(seconds=5),
    retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2),
)


@orders.workflow
async def checkout(ctx: docket.WorkflowContext, cents: int) -> str:
    return await ctx.step(charge, cents)


@orders.workflow
async def checkout_giving_up(ctx: docket.WorkflowContext, cents: int) -> str:
    try:
        return await ctx.step(charge.options(retry=docket.RetryPolicy(maximum_attempts=1)), cents)
    except StepError as exc:
        return f"gave up after attempt 1: {exc.__cause__}"


@orders.workflow
async def charges_inline(ctx: docket.WorkflowContext) -> str:
    return await ctx.local_step(charge, 1)


@payments.step(name="charge", task_queue="payments")
def charge_card(cents: int) -> str:
    attempt = docket.step_context().attempt
    if attempt == 1:
        raise RuntimeError("card network busy")
    return f"charged {cents} on attempt {attempt}"


async def test_a_step_ref_carries_its_options_to_another_apps_worker(tmp_path: Path) -> None:
    async with (
        docket.Engine(orders, data_dir=tmp_path) as engine,
        docket.Engine(payments, data_dir=tmp_path, processor=False, task_queues=["payments"]),
    ):
        handle = await engine.client.start(checkout, 250)
        assert await handle.result(timeout=20) == "charged 250 on attempt 2"  # its retry policy
        scheduled = next(e for e in await handle.history() if e.type == "StepScheduled")
        assert scheduled.attributes["task_queue"] == "payments"
        assert scheduled.attributes["start_to_close_ms"] == 5000
        assert scheduled.attributes["retry"]["maximum_attempts"] == 2

        gave_up = await engine.client.start(checkout_giving_up, 100)
        assert await gave_up.result(timeout=20) == "gave up after attempt 1: card network busy"


async def test_a_step_ref_is_not_a_local_step(tmp_path: Path) -> None:
    async with docket.Engine(orders, data_dir=tmp_path) as engine:
        handle = await engine.client.start(charges_inline)
        with pytest.raises(WorkflowFailedError, match="local step 'charge' is not registered"):
            await handle.result(timeout=20)


def test_a_step_ref_needs_a_name_and_valid_options() -> None:
    with pytest.raises(DefinitionError, match="step_ref needs the step's name"):
        docket.step_ref("")
    with pytest.raises(DefinitionError, match="start_to_close_timeout must be a timedelta"):
        docket.step_ref("charge", start_to_close_timeout=5)  # type: ignore[arg-type]
    with pytest.raises(docket.errors.WorkflowError, match="runs elsewhere"):
        charge(1)
