"""Saga: undo what succeeded when a later step fails, or the workflow is cancelled.

Register a compensation right after each step that needs one; if the block fails, the
compensations run as durable steps in reverse order, and the failure that triggered them
is raised again (compensations that themselves fail are attached as notes, never hide it).
A cancellation of the workflow (``handle.cancel()``) undoes the block the same way: the
compensations run shielded (a cancel must not cut its own clean-up short), then the
cancellation goes on. A cancellation that arrives while they run, for a failure or an
earlier cancel, waits until they are done::

    async with docket.Saga(ctx) as saga:
        await ctx.step(withdraw, account, amount)
        saga.compensate(deposit, account, amount)
        await ctx.step(deposit, other, amount)   # fails: deposit(account) runs, then it raises
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from docket.context import WorkflowContext


class Saga:
    """Compensations for a block of workflow code, run in reverse order on failure."""

    def __init__(self, ctx: WorkflowContext, *, parallel: bool = False) -> None:
        self._ctx = ctx
        self._parallel = parallel
        self._compensations: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def compensate(self, step: Any, *args: Any, **kwargs: Any) -> None:
        """Undo with ``step(*args, **kwargs)`` (a registered step or its name) if the saga fails."""
        self._compensations.append((step, args, kwargs))

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception | asyncio.CancelledError):
            return  # success, or a continue-as-new (nothing failed)
        async with self._ctx.shielded():  # a cancel arriving meanwhile waits for the undo
            await self.run_compensations(exc)

    async def run_compensations(self, cause: BaseException) -> None:
        """Run every registered compensation, newest first (all at once with ``parallel``)."""
        pending, self._compensations = list(reversed(self._compensations)), []
        if self._parallel:
            results = await asyncio.gather(
                *(self._ctx.step(s, *a, **k) for s, a, k in pending), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, Exception)]
        else:
            failures = []
            for step, args, kwargs in pending:
                try:
                    await self._ctx.step(step, *args, **kwargs)
                except Exception as error:  # keep compensating: each undo is independent
                    failures.append(error)
        for failed in failures:
            cause.add_note(f"compensation failed too: {type(failed).__name__}: {failed}")
