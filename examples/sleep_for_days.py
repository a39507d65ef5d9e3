"""Sleep for days: send a reminder every 30 days until told to stop.

Why it matters: durable timers make "wait a month" one line of workflow code that survives
restarts and deploys. Run for real, this takes months; here it runs on Docket's
time-skipping test kit, whose clock jumps to the next due timer whenever nothing else is
running, so three months pass in well under a second, through the real timer service.
"""

import asyncio
from datetime import timedelta

import docket
from docket.testing import WorkflowEnvironment

app = docket.App("sleep_for_days")
sent: list[str] = []


@app.step
async def send_email(text: str) -> None:
    sent.append(text)


@app.workflow
class Reminders:
    def __init__(self) -> None:
        self.done = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        count = 0
        while not self.done:
            count += 1
            await ctx.step(send_email, f"reminder {count} ({ctx.now():%Y-%m-%d})")
            try:  # sleep 30 days, or less if told to stop
                await ctx.wait_until(lambda: self.done, timeout=timedelta(days=30))
            except TimeoutError:
                pass
        return count

    @docket.signal
    def stop(self, ctx: docket.WorkflowContext) -> None:
        self.done = True


async def main() -> None:
    async with WorkflowEnvironment(app) as env:
        handle = await env.client.start(Reminders, workflow_id="reminders")
        while len(sent) < 4:  # let durable time run on: four reminders, ~90 days
            await asyncio.sleep(0.01)
        await handle.signal(Reminders.stop)
        count = await handle.result()
        for line in sent:
            print(line)
        print(f"Stopped after {count} reminders")
        assert count == len(sent) >= 4


if __name__ == "__main__":
    asyncio.run(main())
