"""Timers and notifications: if a long step takes too long, tell someone, and keep waiting.

Why it matters: "email the customer if their order takes more than N minutes" is a
deadline that must not be lost when a process restarts. The workflow races the step
against a durable timer with ``asyncio.wait(..., return_when=FIRST_COMPLETED)``. If the
timer wins, a notification step runs while the long step carries on, and the workflow then
waits for the step's real result. If the step wins, the timer task is cancelled and no
notification is sent.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("timers_and_notifications")

THRESHOLD = 0.5  # seconds an order may take before the customer is told it is slow
notifications: list[str] = []  # what send_notification sent (same process, for the demo)


@app.step(heartbeat_timeout=timedelta(seconds=2))
async def process_order(order_id: str, seconds: float) -> str:
    """Pretend to process an order, taking ``seconds``, heartbeating as it goes."""
    steps = max(1, round(seconds / 0.05))
    for done in range(steps):
        await asyncio.sleep(seconds / steps)
        docket.step_context().heartbeat(done + 1)
    return f"order {order_id} processed"


@app.step
async def send_notification(order_id: str) -> None:
    notifications.append(order_id)
    print(f"  notification: order {order_id} is taking longer than {THRESHOLD} s")


@app.workflow
async def order_with_deadline(ctx: docket.WorkflowContext, order_id: str, seconds: float) -> str:
    processing = asyncio.create_task(ctx.step(process_order, order_id, seconds))
    timer = asyncio.create_task(ctx.sleep(THRESHOLD))  # a durable timer
    done, _ = await asyncio.wait([processing, timer], return_when=asyncio.FIRST_COMPLETED)
    if processing in done:  # checked first, so a tie goes to the step, on every replay
        timer.cancel()  # the deadline no longer matters
        if not ctx.is_replaying:
            print(f"  workflow: {order_id} finished in time; timer cancelled")
    else:
        if not ctx.is_replaying:
            print(f"  workflow: {order_id} is slow; notifying, still waiting for it")
        await ctx.step(send_notification, order_id)  # the long step keeps running meanwhile
    return await processing


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        print("A quick order (0.1 s):")
        quick = await engine.client.start(order_with_deadline, "A-1", 0.1, workflow_id="order-A-1")
        result = await quick.result(timeout=10)
        print(f"Result: {result}")
        assert result == "order A-1 processed"
        assert notifications == [], "a quick order must not trigger a notification"
        print(f"History: {', '.join(event.type for event in await quick.history())}")

        print("A slow order (1.5 s):")
        slow = await engine.client.start(order_with_deadline, "B-2", 1.5, workflow_id="order-B-2")
        result = await slow.result(timeout=10)
        print(f"Result: {result}")
        assert result == "order B-2 processed", "the slow step still delivers its result"
        assert notifications == ["B-2"]

        history = [event.type for event in await slow.history()]
        print(f"History: {', '.join(history)}")
        # the timer fired before the step completed, and the notification ran in between
        assert history.index("TimerFired") < history.index("StepCompleted")
        assert history.count("StepCompleted") == 2

        await asyncio.sleep(THRESHOLD)  # the quick order's cancelled timer is now due
        assert notifications == ["B-2"], "a cancelled timer must not notify"


if __name__ == "__main__":
    asyncio.run(main())
