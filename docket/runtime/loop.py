"""DeterministicLoop: an asyncio event loop that runs workflow code until it is idle.

Its clock is the time of the activation being processed, so ``loop.time()`` and anything
built on it (``asyncio.sleep``, ``asyncio.timeout``) is deterministic; ``call_at`` turns
into a durable timer through ``timer_factory``. It runs on the caller's thread, nested in
the engine's real loop: while it steps, it is the thread's running loop, and the previous
one is restored afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from asyncio import events
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from docket.errors import WorkflowError
from docket.user_code import workflow_exit


class TimerFactory(Protocol):
    def __call__(self, when: float, handle: asyncio.TimerHandle) -> None: ...

    def cancelled(self, handle: asyncio.TimerHandle) -> None: ...


class DeterministicLoop(asyncio.AbstractEventLoop):
    def __init__(self, timer_factory: TimerFactory) -> None:
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._now = 0.0
        self._timer_factory = timer_factory
        self._closed = False
        self._running = False
        self.exceptions: list[dict[str, Any]] = []
        self._pending: set[asyncio.Task[Any]] = set()  # tasks not done (see has_pending_tasks)

    # -- driving -------------------------------------------------------------------------------

    def set_time(self, seconds: float) -> None:
        self._now = seconds

    def run_until_idle(self) -> None:
        """Run the ready callbacks until none is left.

        asyncio lets a SystemExit escape the task that raised it: out of workflow code
        (``sys.exit()``), it would end the engine's process, and again on every restart,
        since the command that ran the code is still unprocessed. It leaves as a
        WorkflowError instead, which stops that execution only (KeyboardInterrupt still
        goes through: it is how an operator interrupts the process)."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        self._running = True
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                if not handle._cancelled:
                    try:
                        handle._run()
                    except SystemExit as exc:
                        raise workflow_exit(exc, "workflow code") from exc
        finally:
            self._running = False
            events._set_running_loop(previous)

    # -- what asyncio needs ------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def call_soon(  # type: ignore[override]  # takes any callback
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]  # takes any callback
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]  # takes any callback
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._timer_factory(when, handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._timer_factory.cancelled(handle)

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any] | Any,
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    def has_pending_tasks(self) -> bool:
        """Whether a task of the workflow code is still waiting (asyncio.all_tasks would walk
        every task of the process)."""
        return bool(self._pending)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.exceptions.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.exceptions.append(context)

    def get_exception_handler(self) -> None:
        return None

    def get_task_factory(self) -> None:
        return None

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> Any:  # type: ignore[override]  # always refuses
        raise WorkflowError(
            f"workflow code cannot run {getattr(func, '__name__', func)!r} in a thread "
            "(asyncio.to_thread / run_in_executor): threads are not replayable; do it in a step"
        )
