"""Request/response through a query: send a request as a signal, poll a query for the answer.

Why it matters: a long-lived workflow can serve requests without the client running any
worker or callback endpoint. Each request is a signal carrying a request ID; the workflow
processes it (here, upper-casing text in a step) and keeps the response in its state; the
client polls a ``@docket.query`` for that ID. Signals are recorded, so no request is lost;
queries are not, so polling adds nothing to the history. (A service that runs forever
would also bound its history with continue-as-new: reqresp_update.py shows how.)
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("reqresp_query")


@app.step
async def to_upper(text: str) -> str:
    await asyncio.sleep(0.1)  # pretend this is real work
    return text.upper()


@app.workflow
class UppercaseService:
    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []  # (request ID, text), in arrival order
        self.responses: dict[str, str] = {}
        self.stopping = False

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> int:
        while True:
            await ctx.wait_until(lambda: bool(self.pending) or self.stopping)
            if not self.pending:  # stop only once every request has been answered
                return len(self.responses)
            request_id, text = self.pending.pop(0)
            self.responses[request_id] = await ctx.step(to_upper, text)
            if not ctx.is_replaying:
                print(f"  workflow: answered {request_id}")

    @docket.signal
    def request(self, ctx: docket.WorkflowContext, request_id: str, text: str) -> None:
        self.pending.append((request_id, text))

    @docket.signal
    def stop(self, ctx: docket.WorkflowContext) -> None:
        self.stopping = True

    @docket.query
    def response(self, ctx: docket.QueryContext, request_id: str) -> str | None:
        return self.responses.get(request_id)  # None: not answered (yet)


async def request(handle: docket.WorkflowHandle, request_id: str, text: str) -> str:
    """What a client does: send the request, then poll for its response."""
    await handle.signal(UppercaseService.request, request_id, text)
    polls = 0
    while True:
        polls += 1
        answer = await handle.query(UppercaseService.response, request_id)
        if answer is not None:
            print(f"client: {request_id} {text!r} -> {answer!r} (after {polls} polls)")
            return answer
        await asyncio.sleep(0.02)


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(UppercaseService, workflow_id="uppercase-service")
        texts = {"req-1": "hello", "req-2": "durable", "req-3": "world"}
        answers = await asyncio.gather(*(request(handle, rid, t) for rid, t in texts.items()))
        assert answers == ["HELLO", "DURABLE", "WORLD"]

        await handle.signal(UppercaseService.stop)
        answered = await handle.result(timeout=10)
        print(f"Workflow finished after answering {answered} requests")
        assert answered == 3
        late = await handle.query(UppercaseService.response, "req-2")  # answered from history
        assert late == "DURABLE"

        history = [event.type for event in await handle.history()]
        print(f"History: {', '.join(history)}")
        assert not any("Query" in kind for kind in history), "polling leaves no trace in history"
        assert history.count("StepCompleted") == 3


if __name__ == "__main__":
    asyncio.run(main())
