"""Messages into a running workflow: signals, conditions (`wait_until`) and queries.

Signals are delivered in the order they were recorded. A class workflow's ``@docket.signal``
handler runs as a task of the workflow; otherwise a signal goes to the oldest
``ctx.wait_for_signal(name)`` waiting for it, or waits in a buffer until one asks. Replay
delivers the same signals at the same points, so all of this is deterministic.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from docket.codec.payload import Payload, decode_args, from_payload

if TYPE_CHECKING:
    from docket.runtime.instance import WorkflowInstance


class Mailbox:
    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self._buffered: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._waiters: defaultdict[str, deque[asyncio.Future[Any]]] = defaultdict(deque)
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.query_handlers: dict[str, Callable[..., Any]] = {}
        self.handler_failure: BaseException | None = None

    # -- signals ----------------------------------------------------------------------------------

    def deliver(self, name: str, args: list[Payload], kwargs: dict[str, Payload]) -> None:
        instance = self._instance
        handler = instance.definition.signals.get(name)
        if handler is not None and instance.obj is not None:
            decoded, decoded_kwargs = decode_args(
                handler, args, kwargs, skip=2, where=f"signal {name!r}"
            )
            bound = getattr(instance.obj, handler.__name__)
            instance.loop.create_task(
                self._run_handler(bound, decoded, decoded_kwargs), name=f"signal {name}"
            )
            return
        value = _value([from_payload(p) for p in args])
        waiters = self._waiters[name]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return
        self._buffered[name].append(value)

    async def _run_handler(
        self, bound: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            result = bound(self._instance.ctx, *args, **kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a failing handler fails the run, as the main code would
            if self.handler_failure is None:
                self.handler_failure = exc

    def wait_for_signal(self, name: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._instance.loop.create_future()
        if self._buffered[name]:
            future.set_result(self._buffered[name].popleft())
        else:
            self._waiters[name].append(future)
        return future

    # -- conditions ---------------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._instance.loop.create_future()
        self._conditions.append((predicate, future))
        return future

    def settle_conditions(self) -> bool:
        """Resolve waiters whose predicate now holds; True if any was (run the loop again)."""
        resolved = False
        remaining = []
        for predicate, future in self._conditions:
            if future.done():
                continue  # cancelled, e.g. by a timeout
            if predicate():
                future.set_result(None)
                resolved = True
            else:
                remaining.append((predicate, future))
        self._conditions = remaining
        return resolved

    # -- queries --------------------------------------------------------------------------------------

    def query(
        self, name: str, args: list[Payload], kwargs: dict[str, Payload], context: Any
    ) -> Any:
        instance = self._instance
        handler = instance.definition.queries.get(name)
        if handler is not None and instance.obj is not None:
            decoded, decoded_kwargs = decode_args(
                handler, args, kwargs, skip=2, where=f"query {name!r}"
            )
            return getattr(instance.obj, handler.__name__)(context, *decoded, **decoded_kwargs)
        function = self.query_handlers.get(name)
        if function is None:
            known = sorted({*instance.definition.queries, *self.query_handlers})
            raise LookupError(
                f"workflow {instance.workflow_type!r} has no query {name!r}"
                + (
                    f"; it answers {', '.join(map(repr, known))}"
                    if known
                    else "; it defines no queries"
                )
            )
        decoded, decoded_kwargs = decode_args(
            function, args, kwargs, skip=1, where=f"query {name!r}"
        )
        return function(context, *decoded, **decoded_kwargs)


def _value(args: list[Any]) -> Any:
    """What wait_for_signal returns: nothing, the single argument, or a tuple of them."""
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)
