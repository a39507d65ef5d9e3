"""Particle swarm optimisation: a long iterative computation, bounded by continue-as-new.

Why it matters: optimisation, simulation and training loops run for thousands of
iterations; as a workflow they survive crashes and can be watched live, but their
history must not grow forever. A parent runs several independent attempts as child
workflows. Each child moves a swarm of particles: every iteration evaluates all particles
in parallel (one step each), moves them using the workflow's deterministic random
generator, and every few iterations continues as new, carrying the swarm as a dataclass.
A query shows an attempt's best point while it runs.
"""

import asyncio
import os
import tempfile
from dataclasses import dataclass, field

import docket

app = docket.App("particle_swarm")

PARTICLES, ITERATIONS, ITERATIONS_PER_RUN = 5, 12, 4


@dataclass
class Particle:
    position: list[float]
    velocity: list[float]
    best_position: list[float]
    best_value: float = float("inf")


@dataclass
class Swarm:
    particles: list[Particle] = field(default_factory=list)
    best_position: list[float] = field(default_factory=list)
    best_value: float = float("inf")
    iteration: int = 0


@app.step
def evaluate(position: list[float]) -> float:
    """The objective (the expensive part in real life): a bowl with its minimum at (1, -2)."""
    x, y = position
    return (x - 1) ** 2 + (y + 2) ** 2


@app.workflow
class SwarmAttempt:
    def __init__(self) -> None:
        self.swarm = Swarm()

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, swarm: Swarm | None = None) -> float:
        rng = ctx.random()  # deterministic: the same draws on every replay
        if swarm is None:
            swarm = Swarm()
            for _ in range(PARTICLES):
                start = [rng.uniform(-10, 10), rng.uniform(-10, 10)]
                swarm.particles.append(Particle(start, [0.0, 0.0], list(start)))
        self.swarm = swarm
        for _ in range(ITERATIONS_PER_RUN):
            if swarm.iteration == ITERATIONS:
                return swarm.best_value
            values = await asyncio.gather(*(ctx.step(evaluate, p.position) for p in swarm.particles))
            for particle, value in zip(swarm.particles, values, strict=True):
                if value < particle.best_value:
                    particle.best_value, particle.best_position = value, list(particle.position)
                if value < swarm.best_value:
                    swarm.best_value, swarm.best_position = value, list(particle.position)
            for particle in swarm.particles:
                for d in range(2):
                    pull_own = 1.5 * rng.random() * (particle.best_position[d] - particle.position[d])
                    pull_best = 1.5 * rng.random() * (swarm.best_position[d] - particle.position[d])
                    particle.velocity[d] = 0.6 * particle.velocity[d] + pull_own + pull_best
                    particle.position[d] += particle.velocity[d]
            swarm.iteration += 1
        ctx.continue_as_new(swarm)  # a fresh history every few iterations

    @docket.query
    def best(self, ctx: docket.QueryContext) -> dict[str, object]:
        return {"iteration": self.swarm.iteration, "value": self.swarm.best_value}


@app.workflow
async def optimise(ctx: docket.WorkflowContext, attempts: int) -> float:
    children = [
        await ctx.start_child(SwarmAttempt, workflow_id=f"{ctx.workflow_id}/attempt-{i}")
        for i in range(attempts)
    ]
    results = await asyncio.gather(*children)
    return min(results)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(optimise, 3, workflow_id="pso")
        await asyncio.sleep(0.2)
        live = await engine.client.get_handle("pso/attempt-0").query(SwarmAttempt.best)
        print(f"Attempt 0 while it runs: {live}")
        best = await handle.result(timeout=30)
        print(f"Best value over 3 attempts: {best:.4f}")
        assert best < 1.0, "the swarm should get close to the minimum"
        attempt = await engine.client.describe("pso/attempt-0")
        print(f"Attempt 0 ran {len(attempt.run_chain) + 1} runs")
        assert len(attempt.run_chain) == ITERATIONS // ITERATIONS_PER_RUN


if __name__ == "__main__":
    asyncio.run(main())
