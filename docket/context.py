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
from docket.runtime.location import user_location

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
        self._random: _random.Random | None = None  # seeded on first use: seeding costs ~10 us

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs history it already recorded (keep logs quiet then)."""
        return self._instance.replaying

    # -- durable operations --------------------------------------------------------------------

    # These are plain functions returning coroutines, not ``async def``: they note the calling
    # line at once, so an error can name it even when the coroutine runs in another task.

    @overload
    def step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def step(
        self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def step(self, step: str, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]: ...

    def step(self, step: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Run a step on a worker, durably: recorded in history, retried by its policy.

        ``step`` is a registered step or a step name (steps may live in other processes).
        Await it, or hand it to ``asyncio.gather`` / ``create_task``.
        """
        return self._instance.run_step(step, args, kwargs, local=False, location=user_location())

    @overload
    def local_step(
        self, step: Step[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def local_step(
        self, step: Step[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...

    def local_step(self, step: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Run a short step inline in the processor (no task round-trip), still recorded in
        history and retried by its policy. Use it for quick, local work."""
        return self._instance.run_step(step, args, kwargs, local=True, location=user_location())

    def side_effect(
        self, fn: Callable[[], T] | Callable[[], Awaitable[T]]
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn`` once and record its result; replays return the recorded value."""
        return self._instance.run_side_effect(fn, user_location())

    def sleep(self, duration: float | timedelta) -> Coroutine[Any, Any, None]:
        """Sleep durably: a timer on the delay topic, firing even across restarts."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        return self._instance.durable_sleep(seconds, user_location())

    # -- deterministic helpers ---------------------------------------------------------------

    def now(self) -> datetime:
        """The time of the event being processed (UTC); the same on every replay."""
        return datetime.fromtimestamp(self._instance.loop.time(), UTC)

    def random(self) -> _random.Random:
        """A random generator seeded by the run: the same sequence on every replay."""
        if self._random is None:
            self._random = _random.Random(uuid.UUID(self.run_id).int)
        return self._random

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID drawn from the run's deterministic generator."""
        return uuid.UUID(int=self.random().getrandbits(128), version=4)
