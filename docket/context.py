"""WorkflowContext: the only door from workflow code to durable operations and deterministic
helpers. Workflow code must not read the wall clock, random, uuid or do I/O directly (see
docs/determinism.md); it asks ``ctx`` instead, and replay gives it the same answers.
"""

from __future__ import annotations

import random as _random
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from docket.definitions import Step

if TYPE_CHECKING:
    from docket.runtime.instance import WorkflowInstance

P = ParamSpec("P")
T = TypeVar("T")


class WorkflowContext:
    """Passed as the first argument to every workflow. Deterministic by construction."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self.workflow_id: str = instance.workflow_id
        self.run_id: str = instance.run_id
        self.workflow_type: str = instance.workflow_type
        self._random = _random.Random(uuid.UUID(instance.run_id).int)

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs history it already recorded (keep logs quiet then)."""
        return self._instance.replaying

    # -- durable operations --------------------------------------------------------------------

    @overload
    async def step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def step(self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    @overload
    async def step(self, step: str, *args: Any, **kwargs: Any) -> Any: ...

    async def step(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a step on a worker, durably: recorded in history, retried by its policy.

        ``step`` is a registered step or a step name (steps may live in other processes).
        """
        return await self._instance.schedule_step(step, args, kwargs, local=False)

    @overload
    async def local_step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def local_step(self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def local_step(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a short step inline in the processor (no task round-trip), still recorded in
        history and retried by its policy. Use it for quick, local work."""
        return await self._instance.schedule_step(step, args, kwargs, local=True)

    async def side_effect(self, fn: Callable[[], T] | Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once and record its result; replays return the recorded value."""
        result: T = await self._instance.schedule_side_effect(fn)
        return result

    async def sleep(self, duration: float | timedelta) -> None:
        """Sleep durably: a timer on the delay topic, firing even across restarts."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        if seconds <= 0:
            return
        await self._instance.durable_sleep(seconds)

    # -- deterministic helpers ---------------------------------------------------------------

    def now(self) -> datetime:
        """The time of the event being processed (UTC); the same on every replay."""
        return datetime.fromtimestamp(self._instance.loop.time(), UTC)

    def random(self) -> _random.Random:
        """A random generator seeded by the run: the same sequence on every replay."""
        return self._random

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID drawn from the run's deterministic generator."""
        return uuid.UUID(int=self._random.getrandbits(128), version=4)
