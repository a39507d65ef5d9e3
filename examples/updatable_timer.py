"""Updatable timer: sleep until a wake-up time that outside events can move.

Why it matters: deadlines move. A payment reminder, an SLA, a "call me back at" can be
brought forward or pushed back while the workflow waits. The workflow waits for the
earlier of two things: its wake-up time (a durable timer) or a signal that changes it.
When the signal comes, the pending timer is cancelled (``TimerCancelled``, and the timer
service forgets it) and a new one starts for the new time (``TimerStarted``): the pause
stays durable across restarts, and a query tells anyone when it will wake.
"""

import asyncio
import os
import tempfile
from datetime import datetime, timedelta

import docket

app = docket.App("updatable_timer")


class UpdatableTimer:
    """Sleeps until ``wake_up_at``; `update` moves the time while it sleeps."""

    def __init__(self, ctx: docket.WorkflowContext, wake_up_at: datetime) -> None:
        self.ctx = ctx
        self.wake_up_at = wake_up_at
        self._changed = False

    async def sleep(self) -> None:
        while True:
            self._changed = False
            left = (self.wake_up_at - self.ctx.now()).total_seconds()
            if left <= 0:
                return
            try:  # wakes at the time, or as soon as the time changes
                await self.ctx.wait_until(lambda: self._changed, timeout=left)
            except TimeoutError:
                return

    def update(self, wake_up_at: datetime) -> None:
        self.wake_up_at = wake_up_at
        self._changed = True


@app.workflow
class Sleeper:
    def __init__(self) -> None:
        self.timer: UpdatableTimer | None = None

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, wake_up_at: datetime) -> str:
        self.timer = UpdatableTimer(ctx, wake_up_at)
        await self.timer.sleep()
        return f"woke up at {ctx.now():%H:%M:%S.%f}"

    @docket.signal
    def update_wake_up_time(self, ctx: docket.WorkflowContext, wake_up_at: datetime) -> None:
        assert self.timer is not None
        self.timer.update(wake_up_at)

    @docket.query
    def wake_up_time(self, ctx: docket.QueryContext) -> datetime | None:
        return self.timer.wake_up_at if self.timer else None


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        now = datetime.now().astimezone()
        handle = await engine.client.start(Sleeper, now + timedelta(days=1), workflow_id="sleeper")
        print(f"Sleeping until {await handle.query(Sleeper.wake_up_time)}")
        await handle.signal(Sleeper.update_wake_up_time, now + timedelta(hours=2))  # pushed back
        soon = datetime.now().astimezone() + timedelta(milliseconds=500)
        await handle.signal(Sleeper.update_wake_up_time, soon)  # then brought forward
        print(f"Moved to {await handle.query(Sleeper.wake_up_time)}")
        result = await handle.result(timeout=10)
        print(result)
        assert await handle.query(Sleeper.wake_up_time) == soon
        kinds = [event.type for event in await handle.history()]
        assert kinds.count("TimerStarted") == 3 and kinds.count("TimerCancelled") == 2
        assert kinds.count("TimerFired") == 1


if __name__ == "__main__":
    asyncio.run(main())
