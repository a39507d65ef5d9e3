"""Infrequent polling: poll a slow external service by letting the retry policy repeat a step.

Why it matters: for polls a minute or more apart, the cheapest poller is no loop at all.
The step asks once and raises if the answer is not ready; a ``RetryPolicy`` with
``backoff_coefficient=1.0`` turns that into a fixed-interval poll (``initial_interval`` is
the poll period; ``maximum_attempts=0`` polls until it succeeds). Nothing holds a worker
between polls: each retry is a durable timer, so polling survives restarts. The demo polls
every 0.2 s instead of every minute.

Note: every failed poll is recorded in history (two events each), unlike Temporal, which
records only the final outcome; poll rarely, or bound long polls with ``maximum_attempts``.
"""

import asyncio
import os
import tempfile
import time
from datetime import timedelta

import docket

app = docket.App("polling_infrequent")

POLL_EVERY = timedelta(seconds=0.2)


class ExternalService:
    """Stand-in for a remote system that only has the answer after a few requests."""

    def __init__(self, ready_after: int) -> None:
        self.ready_after = ready_after
        self.calls: list[float] = []

    def get_status(self) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) < self.ready_after:
            raise RuntimeError(f"not ready yet (request {len(self.calls)})")
        return "report is ready"


service = ExternalService(ready_after=4)


@app.step(
    retry=docket.RetryPolicy(initial_interval=POLL_EVERY, backoff_coefficient=1.0),
    start_to_close_timeout=timedelta(seconds=2),  # one poll should answer quickly
)
def poll_service() -> str:
    return service.get_status()


@app.workflow
async def wait_for_report(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(poll_service)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(wait_for_report, workflow_id="polling-infrequent")
        result = await handle.result()
        print(f"Result: {result} after {len(service.calls)} polls")
        gaps = [b - a for a, b in zip(service.calls, service.calls[1:], strict=False)]
        print("Gaps between polls: " + ", ".join(f"{g:.2f} s" for g in gaps))
        assert result == "report is ready"
        assert len(service.calls) == service.ready_after
        period = POLL_EVERY.total_seconds()
        assert all(g >= period * 0.95 for g in gaps), "polled faster than the retry interval"
        assert max(gaps) < period * 2.5, "the interval should stay fixed (no backoff)"

        history = await handle.history()
        print(f"History: {len(history)} events ({', '.join(e.type for e in history)})")


if __name__ == "__main__":
    asyncio.run(main())
