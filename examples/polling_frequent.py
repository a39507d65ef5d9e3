"""Frequent polling: poll a service in a loop inside one step, heartbeating every iteration.

Why it matters: to check something every second or faster, one long-running step that loops
is far cheaper than a retry per poll (see polling_infrequent.py): nothing is recorded per
poll except throttled heartbeats. The step has a long ``start_to_close_timeout`` (it may
poll for a long time) and a short ``heartbeat_timeout``: if the worker running it hangs or
dies, the heartbeats stop and Docket retries the step within the heartbeat timeout instead
of waiting out the long one. Here the first attempt hangs on purpose to show it; the demo
polls every 0.05 s instead of every second. Left out: the original's graceful exit when the
workflow is cancelled, because cancellation does not reach a running step in Docket yet.
"""

import asyncio
import os
import tempfile
import time
from datetime import timedelta

import docket

app = docket.App("polling_frequent")

POLL_EVERY = 0.05  # seconds between polls
HEARTBEAT_TIMEOUT = timedelta(seconds=0.5)  # short: a hung attempt is noticed quickly
START_TO_CLOSE = timedelta(seconds=30)  # long: the polling itself may take a while
HANG_FOR = 2.0  # seconds the first attempt freezes (well past the heartbeat timeout)


class FakeService:
    """Stand-in for a remote system that only has the answer after a number of requests."""

    def __init__(self, ready_after: int) -> None:
        self.ready_after = ready_after
        self.calls = 0

    def get(self) -> str | None:
        self.calls += 1
        return "the result" if self.calls >= self.ready_after else None


service = FakeService(ready_after=20)
attempts: list[tuple[int, float]] = []  # (attempt, start time), for the demo's output


@app.step(
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    start_to_close_timeout=START_TO_CLOSE,
    retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3),
)
async def poll_service() -> str:
    ctx = docket.step_context()
    attempts.append((ctx.attempt, time.monotonic()))
    polls = 0
    while True:
        answer = service.get()
        if answer is not None:
            return f"{answer} (attempt {ctx.attempt}, {polls + 1} polls in this attempt)"
        polls += 1
        ctx.heartbeat(polls)  # "still alive": each iteration
        if ctx.attempt == 1 and polls == 5:
            print(f"  attempt 1: hanging after {polls} polls (heartbeats stop)")
            await asyncio.sleep(HANG_FOR)  # a stuck worker; its late outcome is discarded
            return "stale result from the hung attempt"
        await asyncio.sleep(POLL_EVERY)


@app.workflow
async def frequent_polling(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(poll_service)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        began = time.monotonic()
        handle = await engine.client.start(frequent_polling, workflow_id="polling-frequent")
        result = await handle.result(timeout=10)
        print(f"Result: {result}")
        for attempt, started in attempts:
            print(f"  attempt {attempt} started at +{started - began:.2f} s")
        history = await handle.history()
        failures = [e.attributes["failure"] for e in history if e.type == "StepAttemptFailed"]
        for failure in failures:
            print(f"  recorded failure: {failure['message']}")
        print(f"History: {', '.join(e.type for e in history)}")

        assert result.startswith("the result (attempt 2,"), result
        assert service.calls >= service.ready_after
        assert len(failures) == 1 and "heartbeat" in failures[0]["message"].lower()
        retried_after = attempts[1][1] - attempts[0][1]
        assert retried_after < HANG_FOR, "the heartbeat timeout, not the hang's end, retried it"
        assert [e.type for e in history].count("StepCompleted") == 1


if __name__ == "__main__":
    asyncio.run(main())
