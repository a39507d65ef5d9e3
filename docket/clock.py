"""Clocks. The processor, timer service and worker read time only through a Clock, so tests
can own time (docket.testing.ManualClock)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Microseconds since the epoch."""

    async def sleep_until(self, deadline_us: int, wake: asyncio.Event) -> None:
        """Return at ``deadline_us`` or when ``wake`` is set, whichever comes first."""


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000

    async def sleep_until(self, deadline_us: int, wake: asyncio.Event) -> None:
        delay = (deadline_us - self.now_us()) / 1e6
        if delay <= 0 or wake.is_set():
            return
        waiter = asyncio.ensure_future(wake.wait())
        try:  # not wait_for: see EmbeddedLog.wait_for_append
            await asyncio.wait({waiter}, timeout=delay)
        finally:  # also when this sleep is cancelled: else the task waits on `wake` for good
            waiter.cancel()
