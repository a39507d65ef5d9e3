"""Test kit: a clock tests own, and an engine whose time skips ahead when nothing is running.

``WorkflowEnvironment`` runs a real `Engine` (embedded log, RocksDB, timer service, worker)
on a `ManualClock`. Whenever every execution is idle (no command, timer request or task
waiting to be read, no step running, no timer already due), it moves the clock to the next
due timer, so a workflow that sleeps for 30 days finishes in milliseconds, through the same
timer service as in production::

    async with docket.testing.WorkflowEnvironment(app) as env:
        handle = await env.client.start(reminder, workflow_id="r-1")
        assert await handle.result() == "sent 3 reminders"

Durable time only: a step that really sleeps (``time.sleep``) still takes that long, and the
environment does not skip while it runs.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from docket.app import App
from docket.client import Client
from docket.engine import Engine

__all__ = ["ManualClock", "WorkflowEnvironment"]

SKIP_CHECK_S = 0.002


class ManualClock:
    """A clock that only moves when told to (`advance`, `set`)."""

    def __init__(self, start: float | None = None) -> None:
        self._now_us = int((time.time() if start is None else start) * 1e6)
        self._moved: list[asyncio.Future[None]] = []

    def now_us(self) -> int:
        return self._now_us

    def set_us(self, now_us: int) -> None:
        """Move to ``now_us`` (never backwards) and wake whoever waits for time."""
        if now_us <= self._now_us:
            return
        self._now_us = now_us
        moved, self._moved = self._moved, []
        for waiter in moved:
            if not waiter.done():
                waiter.set_result(None)

    def advance(self, duration: float | timedelta) -> None:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        self.set_us(self._now_us + int(seconds * 1e6))

    async def sleep_until(self, deadline_us: int, wake: asyncio.Event) -> None:
        while self._now_us < deadline_us and not wake.is_set():
            moved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._moved.append(moved)
            woken: asyncio.Future[Any] = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when this sleep is cancelled: else the task waits on `wake` for good
                woken.cancel()


class WorkflowEnvironment:
    """An `Engine` on a `ManualClock` that skips to the next timer whenever all is idle.

    Args:
        app: the workflows and steps under test.
        data_dir: where the log and state live (default: a new temporary directory).
        skip_time: jump ahead automatically when idle; with False, time only moves with
            `sleep` (or ``env.clock.advance``).
        engine_options: passed to `Engine` (``partitions``, ``workflow_cache_size``, ...).
    """

    def __init__(
        self,
        app: App,
        *,
        data_dir: str | Path | None = None,
        skip_time: bool = True,
        **engine_options: Any,
    ) -> None:
        self.clock = ManualClock()
        self.engine = Engine(
            app,
            data_dir=data_dir or tempfile.mkdtemp(prefix="docket-test-"),
            clock=self.clock,
            **engine_options,
        )
        self._skip_time = skip_time
        self._skipper: asyncio.Task[None] | None = None

    @property
    def client(self) -> Client:
        return self.engine.client

    async def __aenter__(self) -> WorkflowEnvironment:
        await self.engine.start()
        if self._skip_time:
            self._skipper = asyncio.get_running_loop().create_task(self._skip())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._skipper is not None:
            self._skipper.cancel()
            await asyncio.gather(self._skipper, return_exceptions=True)
        await self.engine.stop()

    async def sleep(self, duration: float | timedelta) -> None:
        """Move durable time forward by ``duration`` at once (timers due by then fire)."""
        self.clock.advance(duration)
        await asyncio.sleep(0)

    def idle(self) -> bool:
        """True when nothing is waiting to be processed and no step is running."""
        engine = self.engine
        log, processor, timers, worker = engine.log, engine.processor, engine.timers, engine.worker
        if log is None or processor is None or timers is None:
            return False
        topics = processor.topics
        if processor.inbox or processor.busy:  # commands handed over, not yet durable
            return False
        for partition, cursor in processor.partitions.items():
            if cursor.offset < log.end_offset(topics.commands, partition):
                return False
        for partition, offset in timers.offsets.items():
            if offset < log.end_offset(topics.timers, partition):
                return False
        for consumer in engine.sources.consumers if engine.sources is not None else ():
            for partition, offset in consumer.offsets.items():  # records of signal sources
                if offset < log.end_offset(consumer.source.topic, partition):
                    return False
        return worker is None or worker.idle()

    def _next_due_us(self) -> int | None:
        stores = self.engine.timers.stores.values() if self.engine.timers else []
        return min((d for d in (s.first_due() for s in stores) if d is not None), default=None)

    async def _skip(self) -> None:
        while True:
            await asyncio.sleep(SKIP_CHECK_S)
            due = self._next_due_us()
            if due is not None and due > self.clock.now_us() and self.idle():
                self.clock.set_us(due)
