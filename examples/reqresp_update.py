"""Request/response through an update: one call sends the request and returns the answer.

Why it matters: compared with a signal plus query polling (reqresp_query.py), an update is
one round trip: the caller blocks until the workflow's handler returns, with no polling and
no request IDs to track. A validator refuses bad requests before anything is recorded.
This service runs forever, so it bounds its history: after a number of requests it
continues as new, but only when no request is in flight (``ctx.all_handlers_finished``),
so no caller ever loses its answer; requests arriving during the switch go to the new run.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("reqresp_update")

REQUESTS_PER_RUN = 5


@app.step
async def to_upper(text: str) -> str:
    await asyncio.sleep(0.02)  # pretend this is real work
    return text.upper()


@app.workflow
class UppercaseService:
    def __init__(self) -> None:
        self.served = 0  # in this run
        self.stopping = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext, served_before: int = 0) -> int:
        await ctx.wait_until(lambda: self.stopping or self.served >= REQUESTS_PER_RUN)
        await ctx.wait_until(ctx.all_handlers_finished)
        if not self.stopping:
            ctx.continue_as_new(served_before + self.served)
        return served_before + self.served

    @docket.update
    async def request(self, ctx: docket.WorkflowContext, text: str) -> str:
        answer = await ctx.step(to_upper, text)
        self.served += 1
        return answer

    @request.validator
    def check_request(self, ctx: docket.QueryContext, text: str) -> None:
        if not text.strip():
            raise ValueError("the text to upper-case is empty")

    @docket.signal
    def stop(self, ctx: docket.WorkflowContext) -> None:
        self.stopping = True


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(UppercaseService, workflow_id="uppercase-service")
        words = [f"word {i}" for i in range(12)]
        answers = await asyncio.gather(
            *(handle.execute_update(UppercaseService.request, word) for word in words)
        )
        print(f"Answers: {answers}")
        assert answers == [word.upper() for word in words]
        try:
            await handle.execute_update(UppercaseService.request, "   ")
        except docket.errors.ClientError as exc:
            print(f"Refused: {exc}")
        else:
            raise AssertionError("an empty request must be refused")

        await handle.signal(UppercaseService.stop)
        served = await handle.result(timeout=10)  # follows the chain of runs
        runs = len((await handle.describe()).run_chain) + 1
        print(f"Served {served} requests over {runs} runs")
        assert served == len(words) and runs >= 2


if __name__ == "__main__":
    asyncio.run(main())
