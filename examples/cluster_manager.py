"""Safe message handlers: a cluster manager whose updates share state without racing.

Why it matters: a long-lived workflow that takes concurrent requests must keep its state
consistent while handlers await steps. Here updates assign and free cluster nodes for jobs;
each holds an ``asyncio.Lock`` across its steps, so two assignments never pick the same
nodes. Handlers wait (``wait_until``) until the cluster has started, assignment is
idempotent per job (a retried request gets the same nodes), a periodic health check runs
under the same lock, and every few requests the workflow continues as new, but only once
``ctx.all_handlers_finished()``, so no request is ever cut off.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass, field

import docket

app = docket.App("cluster_manager")

NODES = 6
REQUESTS_PER_RUN = 5  # continue as new after this many updates (small, to show it)


@dataclass
class ClusterState:
    started: bool = False
    shut_down: bool = False
    nodes: dict[str, str | None] = field(default_factory=dict)  # node -> job using it
    bad_nodes: list[str] = field(default_factory=list)


@app.step
async def start_cluster_nodes() -> list[str]:
    return [f"node-{i}" for i in range(NODES)]


@app.step
async def allocate_nodes(nodes: list[str], job: str) -> None:
    await asyncio.sleep(0.05)  # slow on purpose: concurrent handlers overlap here


@app.step
async def deallocate_nodes(nodes: list[str]) -> None:
    await asyncio.sleep(0.02)


@app.step
async def find_bad_nodes(nodes: list[str]) -> list[str]:
    return [node for node in nodes if node.endswith("5")]  # node-5 is flaky today


@app.workflow
class ClusterManager:
    def __init__(self) -> None:
        self.state = ClusterState()
        self.lock = asyncio.Lock()
        self.requests = 0

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, state: ClusterState | None = None) -> dict[str, int]:
        if state is not None:
            self.state = state
        await ctx.wait_until(lambda: self.state.started)
        if not self.state.nodes:
            self.state.nodes = {node: None for node in await ctx.step(start_cluster_nodes)}
        while not self.state.shut_down:
            try:
                await ctx.wait_until(
                    lambda: self.state.shut_down or self.requests >= REQUESTS_PER_RUN, timeout=0.5
                )
            except TimeoutError:
                async with self.lock:  # the health check also touches the node table
                    self.state.bad_nodes = await ctx.step(find_bad_nodes, list(self.state.nodes))
            if self.requests >= REQUESTS_PER_RUN and not self.state.shut_down:
                await ctx.wait_until(ctx.all_handlers_finished)
                ctx.continue_as_new(self.state)
        await ctx.wait_until(ctx.all_handlers_finished)
        used = sum(1 for job in self.state.nodes.values() if job is not None)
        return {"nodes": len(self.state.nodes), "in_use": used, "bad": len(self.state.bad_nodes)}

    @docket.signal
    def start_cluster(self, ctx: docket.WorkflowContext) -> None:
        self.state.started = True

    @docket.signal
    def shutdown_cluster(self, ctx: docket.WorkflowContext) -> None:
        self.state.shut_down = True

    @docket.update
    async def assign_nodes_to_job(self, ctx: docket.WorkflowContext, job: str, count: int) -> list[str]:
        self.requests += 1
        await ctx.wait_until(lambda: self.state.started and bool(self.state.nodes))
        async with self.lock:
            mine = sorted(node for node, owner in self.state.nodes.items() if owner == job)
            if mine:
                return mine  # idempotent: the job already has its nodes
            free = sorted(
                node
                for node, owner in self.state.nodes.items()
                if owner is None and node not in self.state.bad_nodes
            )
            if len(free) < count:
                raise docket.ApplicationError(f"cannot assign {count} nodes to {job}: {len(free)} free")
            chosen = free[:count]
            await ctx.step(allocate_nodes, chosen, job)  # others wait at the lock meanwhile
            for node in chosen:
                self.state.nodes[node] = job
            return chosen

    @assign_nodes_to_job.validator
    def check_assign(self, ctx: docket.QueryContext, job: str, count: int) -> None:
        if self.state.shut_down:
            raise ValueError("the cluster is shutting down")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")

    @docket.update
    async def delete_job(self, ctx: docket.WorkflowContext, job: str) -> list[str]:
        self.requests += 1
        async with self.lock:
            freed = sorted(node for node, owner in self.state.nodes.items() if owner == job)
            if freed:
                await ctx.step(deallocate_nodes, freed)
            for node in freed:
                self.state.nodes[node] = None
            return freed


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(ClusterManager, workflow_id="cluster-manager")
        early = await handle.start_update(ClusterManager.assign_nodes_to_job, "early", 1)
        await handle.signal(ClusterManager.start_cluster)  # the early request waited for this
        jobs = await asyncio.gather(
            *(handle.execute_update(ClusterManager.assign_nodes_to_job, f"job-{i}", 2) for i in range(2)),
            handle.execute_update(ClusterManager.assign_nodes_to_job, "job-0", 2),  # a retry
        )
        first = await early.result()
        print(f"early: {first}; job-0: {jobs[0]}; job-1: {jobs[1]}; job-0 again: {jobs[2]}")
        assigned = [node for nodes in (first, jobs[0], jobs[1]) for node in nodes]
        assert len(assigned) == len(set(assigned)) == 5, "no node was given to two jobs"
        assert jobs[2] == jobs[0], "assignment is idempotent per job"

        try:
            await handle.execute_update(ClusterManager.assign_nodes_to_job, "too-big", 4)
        except docket.errors.UpdateFailedError as exc:
            print(f"Failed as expected: {exc.__cause__}")
        freed = await handle.execute_update(ClusterManager.delete_job, "job-1")
        print(f"freed {freed}")
        reused = await handle.execute_update(ClusterManager.assign_nodes_to_job, "job-2", 2)
        assert reused == freed

        await handle.signal(ClusterManager.shutdown_cluster)
        summary = await handle.result()
        runs = len((await handle.describe()).run_chain) + 1
        print(f"Summary: {summary}; runs in the chain: {runs}")
        assert summary["nodes"] == NODES and summary["in_use"] == 5
        assert runs >= 2, "the manager continued as new along the way"


if __name__ == "__main__":
    asyncio.run(main())
