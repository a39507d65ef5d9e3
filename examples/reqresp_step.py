"""Request/response with step-based responses: the workflow pushes each answer to the caller.

Why it matters: instead of polling (reqresp_query.py) or holding a call open
(reqresp_update.py), the requester sends a signal that names *its own task queue*, and the
workflow answers by running a ``deliver_response`` step routed to that queue. Only the
requester's worker serves it, so the step runs in the requester's process and hands the
answer to the waiting caller: push-based responses, durable on both sides. The service
runs forever, so after a number of requests it continues as new, once no handler is
running, handing the requests still waiting to the next run as its argument: requests
that arrive during the switch go to the next run too, so none is lost.
"""

import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass

import docket

app = docket.App("reqresp_step")

REQUESTS_PER_RUN = 4
waiting: dict[str, asyncio.Future[str]] = {}  # the requester's pending requests, by ID


@dataclass
class Request:
    request_id: str
    text: str
    queue: str  # the requester's response queue


@app.step
async def to_upper(text: str) -> str:
    return text.upper()


@app.step
async def deliver_response(request_id: str, answer: str) -> None:
    """Runs on the requester's worker (its own queue): completes the caller's future."""
    future = waiting.pop(request_id, None)
    if future is not None and not future.done():
        future.set_result(answer)


@app.workflow
class UppercaseService:
    def __init__(self) -> None:
        self.pending: list[Request] = []
        self.served = 0
        self.stopping = False

    @docket.run
    async def run(
        self,
        ctx: docket.WorkflowContext,
        served_before: int = 0,
        waiting_requests: list[Request] | None = None,
    ) -> int:
        self.pending = [*(waiting_requests or []), *self.pending]
        while not (self.stopping and not self.pending):
            await ctx.wait_until(lambda: bool(self.pending) or self.stopping)
            if self.pending:
                request = self.pending.pop(0)
                answer = await ctx.step(to_upper, request.text)
                respond = deliver_response.options(task_queue=request.queue)
                await ctx.step(respond, request.request_id, answer)
                self.served += 1
            if self.served >= REQUESTS_PER_RUN and not self.stopping:
                await ctx.wait_until(ctx.all_handlers_finished)
                ctx.continue_as_new(served_before + self.served, self.pending)
        return served_before + self.served

    @docket.signal
    def request(self, ctx: docket.WorkflowContext, request_id: str, text: str, queue: str) -> None:
        self.pending.append(Request(request_id, text, queue))

    @docket.signal
    def stop(self, ctx: docket.WorkflowContext) -> None:
        self.stopping = True


class Requester:
    """A caller with its own response queue, served by its own worker."""

    def __init__(self, client: docket.Client) -> None:
        self.client = client
        self.queue = f"responses-{uuid.uuid4().hex[:8]}"

    async def ask(self, text: str) -> str:
        request_id = uuid.uuid4().hex
        future = waiting[request_id] = asyncio.get_running_loop().create_future()
        handle = self.client.get_handle("uppercase-service")
        await handle.signal(UppercaseService.request, request_id, text, self.queue)
        return await asyncio.wait_for(future, 10)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(UppercaseService, workflow_id="uppercase-service")
        requester = Requester(engine.client)
        # the requester's own worker: the only one serving its response queue
        async with docket.Engine(app, data_dir=data_dir, processor=False, task_queues=[requester.queue]):
            words = [f"word {i}" for i in range(10)]
            answers = await asyncio.gather(*(requester.ask(word) for word in words))
            print(f"Answers pushed back: {answers}")
            assert answers == [word.upper() for word in words]
            await handle.signal(UppercaseService.stop)
            served = await handle.result(timeout=10)
        runs = len((await handle.describe()).run_chain) + 1
        print(f"Served {served} requests over {runs} runs")
        assert served == len(words) and runs >= 2


if __name__ == "__main__":
    asyncio.run(main())
