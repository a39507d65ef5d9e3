"""Await signals: signals may arrive in any order; the workflow consumes them in its own
order, with a timeout between signals and one for the whole exchange.

Why it matters: external systems rarely call back in the order a process needs. Signal
handlers just record what arrived (shared state on the workflow object); the main code
waits with ``ctx.wait_until(predicate, timeout=...)``, whose timeouts are durable timers.
"""

import asyncio
import os
import tempfile

import docket

app = docket.App("await_signals")

BETWEEN_SIGNALS = 2.0  # seconds allowed from one expected signal to the next
TOTAL = 5.0  # seconds allowed for all three


@app.workflow
class AwaitSignals:
    def __init__(self) -> None:
        self.arrived: list[str] = []

    @docket.run
    async def run(self, ctx: docket.WorkflowContext) -> str:
        try:
            async with asyncio.timeout(TOTAL):  # durable too: asyncio timers are workflow timers
                for name in ("signal1", "signal2", "signal3"):
                    await ctx.wait_until(lambda n=name: n in self.arrived, timeout=BETWEEN_SIGNALS)
                    if not ctx.is_replaying:  # replays re-run this code: stay quiet then
                        print(f"  workflow: took {name} at {ctx.now():%H:%M:%S}")
        except TimeoutError:
            return f"timed out; arrived so far: {self.arrived}"
        return f"all signals processed; they arrived as {self.arrived}"

    @docket.signal
    def signal1(self, ctx: docket.WorkflowContext) -> None:
        self.arrived.append("signal1")

    @docket.signal
    def signal2(self, ctx: docket.WorkflowContext) -> None:
        self.arrived.append("signal2")

    @docket.signal
    def signal3(self, ctx: docket.WorkflowContext) -> None:
        self.arrived.append("signal3")


async def main() -> None:
    data_dir = os.environ.get("DOCKET_DATA_DIR") or tempfile.mkdtemp(prefix="docket-")
    async with docket.Engine(app, data_dir=data_dir) as engine:
        handle = await engine.client.start(AwaitSignals, workflow_id="await-signals")
        for name in ("signal3", "signal1", "signal2"):  # out of order on purpose
            print(f"client: sending {name}")
            await handle.signal(name)
            await asyncio.sleep(0.1)
        result = await handle.result()
        print(f"Result: {result}")
        assert result == "all signals processed; they arrived as ['signal3', 'signal1', 'signal2']"

        late = await engine.client.start(AwaitSignals, workflow_id="await-signals-late")
        await late.signal(AwaitSignals.signal1)  # signal2 never comes: the gap timeout fires
        result = await late.result()
        print(f"Result: {result}")
        assert result == "timed out; arrived so far: ['signal1']"


if __name__ == "__main__":
    asyncio.run(main())
