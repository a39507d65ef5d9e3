"""Distributed mutex: workflows take turns on a shared resource through a lock workflow.

Why it matters: several executions (maybe on different machines) must not use one
resource at once: one account, one device, one external API key. A lock-manager workflow
per resource keeps a queue of requesters. A requester signals-with-start the manager (so
the first request creates it), waits for a ``lock_acquired`` signal carrying a lease ID,
works, and signals ``release`` with that lease. The manager grants the next requester only
after a release, or after the lease times out if a holder never releases. Every message
is a durable signal between workflows, so a crash anywhere loses no turn.
"""

import asyncio
import os
import tempfile
from datetime import timedelta

import docket

app = docket.App("distributed_mutex")

LEASE_TIMEOUT = timedelta(seconds=10)
journal: list[str] = []  # what the critical sections did, in order (same process, for the demo)
_client: list[docket.Client] = []  # the client steps use (a real app would create one per worker)


@app.step
async def request_lock(resource: str, requester: str) -> None:
    """Signal-with-start: the manager is created by the first request for the resource."""
    await _client[0].start(
        LockManager,
        workflow_id=f"mutex-{resource}",
        start_signal=LockManager.request,
        start_signal_args=(requester,),
    )


@app.step
async def use_resource(requester: str) -> None:
    journal.append(f"{requester} enters")
    await asyncio.sleep(0.05)  # while one holder works, nobody else may enter
    journal.append(f"{requester} leaves")


@app.workflow
class LockManager:
    def __init__(self) -> None:
        self.queue: list[str] = []
        self.released: set[str] = set()

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        granted = 0
        while True:
            try:  # idle for a while with nobody waiting: the manager ends
                await ctx.wait_until(lambda: bool(self.queue), timeout=2)
            except TimeoutError:
                return granted
            holder = self.queue.pop(0)
            lease = str(ctx.uuid4())
            await ctx.external_workflow(holder).signal("lock_acquired", lease)
            granted += 1
            try:
                await ctx.wait_until(lambda lease=lease: lease in self.released, timeout=LEASE_TIMEOUT)
            except TimeoutError:
                pass  # the holder vanished: the lease expires, the next requester goes

    @docket.signal
    def request(self, ctx: docket.WorkflowContext, requester: str) -> None:
        self.queue.append(requester)

    @docket.signal
    def release(self, ctx: docket.WorkflowContext, lease: str) -> None:
        self.released.add(lease)


@app.workflow
async def worker_job(ctx: docket.WorkflowContext, resource: str) -> str:
    await ctx.step(request_lock, resource, ctx.workflow_id)
    lease = await ctx.wait_for_signal("lock_acquired")
    try:
        await ctx.step(use_resource, ctx.workflow_id)
    finally:
        await ctx.external_workflow(f"mutex-{resource}").signal(LockManager.release, lease)
    return f"{ctx.workflow_id} done"


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        _client.append(engine.client)
        jobs = [
            await engine.client.start(worker_job, "printer", workflow_id=f"job-{i}")
            for i in range(4)
        ]
        results = [await job.result(timeout=20) for job in jobs]
        print(f"Results: {results}")
        print("Journal:\n  " + "\n  ".join(journal))
        for i in range(0, len(journal), 2):  # enter/leave pairs never interleave
            who = journal[i].split()[0]
            assert journal[i : i + 2] == [f"{who} enters", f"{who} leaves"], journal
        assert sorted(journal[0::2]) == [f"job-{i} enters" for i in range(4)]


if __name__ == "__main__":
    asyncio.run(main())
