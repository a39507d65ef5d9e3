"""Messages into a running workflow: signals, updates, conditions (`wait_until`), queries.

Signals are delivered in the order they were recorded. A class workflow's ``@docket.signal``
handler runs as a task of the workflow; otherwise a signal goes to the oldest
``ctx.wait_for_signal(name)`` waiting for it, or waits in a buffer until one asks. Replay
delivers the same signals at the same points, so all of this is deterministic.

Updates are validated against the live code before anything is recorded (`validate_update`,
called by the processor, read-only like a query); an accepted update's handler runs as a
task and its outcome becomes an ``UpdateCompleted`` command.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from docket.codec.failure import to_failure
from docket.codec.payload import Payload, decode_args, from_payload, to_payload
from docket.context import ContinueAsNew
from docket.definitions import validator_of
from docket.user_code import call_without_exit, workflow_exit

if TYPE_CHECKING:
    from docket.runtime.instance import WorkflowInstance


class Mailbox:
    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        # signals no wait_for_signal took yet, as recorded (continue-as-new hands them on)
        self._buffered: defaultdict[str, deque[tuple[list[Payload], dict[str, Payload]]]] = (
            defaultdict(deque)
        )
        self._waiters: defaultdict[str, deque[asyncio.Future[Any]]] = defaultdict(deque)
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.query_handlers: dict[str, Callable[..., Any]] = {}
        self.update_handlers: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {}
        # what a handler ended the run with: its failure, or a ContinueAsNew it raised
        self.handler_failure: BaseException | None = None
        self.running_handlers = 0  # signal and update handlers that have not returned yet

    # -- signals ----------------------------------------------------------------------------------

    def deliver(self, name: str, args: list[Payload], kwargs: dict[str, Payload]) -> None:
        instance = self._instance
        handler = instance.definition.signals.get(name)
        if handler is not None and instance.obj is not None:
            decoded, decoded_kwargs = decode_args(
                handler, args, kwargs, skip=2, where=f"signal {name!r}"
            )
            bound = getattr(instance.obj, handler.__name__)
            self.running_handlers += 1  # from now: code checking all_handlers_finished waits
            instance.loop.create_task(
                self._run_handler(bound, decoded, decoded_kwargs), name=f"signal {name}"
            )
            return
        waiters = self._waiters[name]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(_value([from_payload(p) for p in args]))
                return
        self._buffered[name].append((args, kwargs))

    async def _run_handler(
        self, bound: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            result = bound(self._instance.ctx, *args, **kwargs)
            if inspect.isawaitable(result):
                await result
        except (Exception, ContinueAsNew) as exc:  # it ends the run, as the main code would
            self._end_run(exc)
        finally:
            self.running_handlers -= 1

    def _end_run(self, exc: BaseException) -> None:
        """A handler failed the run or continued it as new; the first one that did counts.
        Left to escape its task, a ContinueAsNew would end only the handler, unnoticed."""
        if self.handler_failure is None:
            self.handler_failure = exc

    def wait_for_signal(self, name: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._instance.loop.create_future()
        if self._buffered[name]:
            args, _ = self._buffered[name].popleft()
            future.set_result(_value([from_payload(p) for p in args]))
        else:
            self._waiters[name].append(future)
        return future

    def unconsumed_signals(self) -> list[dict[str, Any]]:
        """Signals recorded but not taken by any wait_for_signal, oldest first per name."""
        return [
            {"signal_name": name, "args": args, "kwargs": kwargs}
            for name, buffered in self._buffered.items()
            for args, kwargs in buffered
        ]

    # -- updates ----------------------------------------------------------------------------------

    def _update_handler(
        self, name: str
    ) -> tuple[Callable[..., Any], Callable[..., Any] | None, int]:
        """(handler, validator, leading parameters to skip), bound to the workflow object."""
        instance = self._instance
        method = instance.definition.updates.get(name)
        if method is not None and instance.obj is not None:
            check = validator_of(method)
            bound_check = getattr(instance.obj, check.__name__) if check is not None else None
            return getattr(instance.obj, method.__name__), bound_check, 2
        found = self.update_handlers.get(name)
        if found is None:
            known = sorted({*instance.definition.updates, *self.update_handlers})
            raise LookupError(
                f"workflow {instance.workflow_type!r} has no update {name!r}"
                + (f"; it takes {', '.join(map(repr, known))}" if known else "; it defines none")
            )
        return found[0], found[1], 1

    def validate_update(
        self, name: str, args: list[Payload], kwargs: dict[str, Payload], context: Any
    ) -> None:
        """Raise if the update must be rejected: no such handler, arguments that do not fit
        it, or its validator raising. Runs on live state; records nothing."""
        from docket.runtime.instance import bind_check

        handler, check, skip = self._update_handler(name)
        where = f"update {name!r}"
        method = getattr(handler, "__func__", handler)
        decoded, decoded_kwargs = decode_args(method, args, kwargs, skip=skip, where=where)
        bind_check(method, skip, decoded, decoded_kwargs, where)
        if check is not None:
            outcome = call_without_exit(
                check, f"the validator of {where}", context, *decoded, **decoded_kwargs
            )
            if inspect.isawaitable(outcome):
                close = getattr(outcome, "close", None)
                if close is not None:
                    close()
                raise TypeError(
                    f"the validator of {where} returned an awaitable: use a plain 'def'"
                )

    def accept_update(
        self, update_id: str, name: str, args: list[Payload], kwargs: dict[str, Payload]
    ) -> None:
        handler, _, skip = self._update_handler(name)
        method = getattr(handler, "__func__", handler)
        decoded, decoded_kwargs = decode_args(
            method, args, kwargs, skip=skip, where=f"update {name!r}"
        )
        self.running_handlers += 1
        self._instance.loop.create_task(
            self._run_update(update_id, name, handler, decoded, decoded_kwargs),
            name=f"update {name}",
        )

    async def _run_update(
        self,
        update_id: str,
        name: str,
        handler: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        body: dict[str, Any] = {"update_id": update_id, "result": None, "failure": None}
        try:
            result = handler(self._instance.ctx, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            body["result"] = to_payload(result, where=f"result of update {name!r}")
        except (Exception, asyncio.CancelledError) as exc:  # the update fails, not the run
            body["failure"] = to_failure(exc)
        except ContinueAsNew as request:  # the run continues as new: the update is cut off
            self._end_run(request)
            return
        finally:
            self.running_handlers -= 1
        self._instance.update_completed(body)

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
            try:
                holds = predicate()
            except Exception as exc:  # raised where ctx.wait_until waits, as on its first check
                future.set_exception(exc)
                resolved = True
                continue
            except SystemExit as exc:  # as from any workflow code (DeterministicLoop)
                raise workflow_exit(exc, "a wait_until predicate") from exc
            if holds:
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
            bound = getattr(instance.obj, handler.__name__)
            return call_without_exit(bound, f"query {name!r}", context, *decoded, **decoded_kwargs)
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
        return call_without_exit(function, f"query {name!r}", context, *decoded, **decoded_kwargs)


def _value(args: list[Any]) -> Any:
    """What wait_for_signal returns: nothing, the single argument, or a tuple of them."""
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)
