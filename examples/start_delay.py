"""Workflow start delay: start a workflow now that begins working later.

Why it matters: "send the welcome survey in three days", "retry the import tonight": the
caller records the workflow at once and can go away; Docket keeps the delay as a durable
timer, so the workflow begins on time even if every process restarted in between. The
workflow code knows nothing about it: it simply starts later. Until then, describe() shows
when it will begin, and signals sent meanwhile wait for it.
"""

import asyncio
import os
import tempfile
import time
from datetime import timedelta

import docket

app = docket.App("start_delay")


@app.step
async def send_survey(customer: str) -> str:
    return f"survey sent to {customer}"


@app.workflow
async def welcome_survey(ctx: docket.WorkflowContext, customer: str) -> str:
    return await ctx.step(send_survey, customer)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        asked = time.time()
        handle = await engine.client.start(
            welcome_survey,
            "ada@example.com",
            workflow_id="survey-ada",
            start_delay=timedelta(seconds=1),  # days in real life
        )
        description = await handle.describe()
        print(f"Recorded at once; status {description.status}, begins at {description.delayed_until}")
        assert description.delayed_until is not None

        result = await handle.result()
        waited = time.time() - asked
        print(f"{result} after {waited:.2f} s")
        assert waited >= 0.95 and result == "survey sent to ada@example.com"
        kinds = [event.type for event in await handle.history()]
        assert kinds[:2] == ["WorkflowStarted", "StartDelayElapsed"]


if __name__ == "__main__":
    asyncio.run(main())
