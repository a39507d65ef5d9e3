"""Handles on a workflow run and on an update, as a `Client` gives them out.

A handle sends through its client and reads through the client's state reader. What the
engine told a handle (its run exists; which run closed) it remembers, so that its reads
show at least that much (see `WorkflowHandle._as_told`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from docket.client_input import handler_name, return_hint
from docket.codec.failure import from_failure
from docket.codec.payload import from_payload
from docket.errors import (
    ReplyTimeoutError,
    UpdateFailedError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from docket.execution.fold import CLOSING_EVENTS
from docket.execution.ids import new_request_id
from docket.reader import HistoryEvent, WorkflowDescription, to_history_event

if TYPE_CHECKING:
    from docket.client import Client

R = TypeVar("R")
T = TypeVar("T")

_STORE_CATCH_UP_S = 2.0  # how long a handle's reads wait for the stores to show what it was told


class WorkflowHandle(Generic[R]):
    """A handle on one run of a workflow, generic in its result type."""

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        run_id: str | None,
        result_hint: Any = None,
        *,
        known: bool = False,
    ) -> None:
        self._client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self._hint = result_hint
        # What the engine told this handle: its run exists (it was started or found by a
        # start), and which run closed. Reads wait until the stores show as much.
        self._known = known
        self._closed_run: str | None = None

    def __repr__(self) -> str:
        return f"WorkflowHandle(workflow_id={self.workflow_id!r}, run_id={self.run_id!r})"

    async def result(self, *, timeout: float | None = None) -> R:
        """Wait for the run to close; return its result or raise WorkflowFailedError."""
        reply = await self._client._outcome(self.workflow_id, self.run_id, timeout)
        self._closed_run = reply["run_id"]
        if reply["kind"] == "completed":
            value: R = from_payload(
                reply["result"], self._hint, where=f"result of {self.workflow_id!r}"
            )
            return value
        cause = from_failure(reply["failure"])
        raise WorkflowFailedError(
            f"workflow {self.workflow_id!r} (run {reply['run_id']}) failed: {cause}",
            workflow_id=self.workflow_id,
            run_id=reply["run_id"],
        ) from cause

    async def signal(self, signal: Any, /, *args: Any, **kwargs: Any) -> None:
        """Send a signal (a ``@docket.signal`` method, or its name) to this workflow.

        Returns once it is recorded: it will be delivered exactly once, after every signal
        recorded before it. Raises WorkflowNotFoundError, or ClientError when the workflow is
        closed, has no such signal, or the arguments do not fit its handler.
        """
        await self._client._message(
            "signal",
            self.workflow_id,
            self.run_id,
            handler_name(signal, "__docket_signal__"),
            args,
            kwargs,
        )

    async def query(self, query: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Ask a query (a ``@docket.query`` method, or its name) and return the answer. It
        sees every signal recorded before it; closed workflows answer from their history."""
        name = handler_name(query, "__docket_query__")
        reply = await self._client._message(
            "query", self.workflow_id, self.run_id, name, args, kwargs
        )
        hint = return_hint(query)
        return from_payload(reply["result"], hint, where=f"answer to query {name!r}")

    async def execute_update(
        self, update: Any, /, *args: Any, update_id: str | None = None, **kwargs: Any
    ) -> Any:
        """Send an update (a ``@docket.update`` method, or its name) and return what its
        handler returns. Raises ClientError when it is rejected (no such update, arguments
        that do not fit, its validator raised, the run is closed: nothing is recorded then),
        UpdateFailedError when its handler raised. ``update_id`` (default: a new UUID)
        makes retries safe: the same ID is applied once, and a retry gets the same outcome."""
        handle = await self.start_update(update, *args, update_id=update_id, **kwargs)
        return await handle.result()

    async def start_update(
        self, update: Any, /, *args: Any, update_id: str | None = None, **kwargs: Any
    ) -> UpdateHandle:
        """Send an update and return once it is accepted (validated and recorded); await
        ``result()`` on the returned handle for the handler's outcome."""
        name = handler_name(update, "__docket_update__")
        update_id = update_id or new_request_id()
        body = self._client._update_body(self.run_id, name, update_id, args, kwargs)
        outcome = self._client._expect_outcome(update_id)
        command_id = new_request_id()
        try:
            reply = await self._client._request(
                self.workflow_id, command_id, ("UpdateWorkflow", body)
            )
        except BaseException:
            self._client._waiters.pop(f"update:{update_id}", None)
            raise
        return self._client._accepted(self, name, update_id, reply, outcome, update)

    async def cancel(self, reason: str = "") -> None:
        """Ask the run to stop: its code sees ``asyncio.CancelledError`` at its next await
        and may clean up (steps awaited after catching it still run). If it lets the error
        escape, ``result()`` raises WorkflowFailedError caused by CancelledError."""
        body = {"run_id": self.run_id, "reason": reason, "reply_to": self._client.client_id}
        reply = await self._client._request(
            self.workflow_id, new_request_id(), ("CancelWorkflow", body)
        )
        self._client._raise_refusal(reply, self.workflow_id, "cancel")

    async def terminate(self, reason: str = "") -> None:
        """Stop the run at once: no cleanup code runs, pending steps' results are ignored,
        and ``result()`` raises WorkflowFailedError. Recorded in history with ``reason``."""
        body = {"run_id": self.run_id, "reason": reason, "reply_to": self._client.client_id}
        reply = await self._client._request(
            self.workflow_id, new_request_id(), ("TerminateWorkflow", body)
        )
        self._client._raise_refusal(reply, self.workflow_id, "terminate")

    async def describe(self) -> WorkflowDescription:
        """This run's chain as it stands now, from the state stores (a run of an earlier
        start of the ID stays that run: it is not the ID's latest). It shows at least what
        this handle was told: a run it started, closed once its result came."""
        return await self._as_told(
            lambda: self._client._reader.describe(self.workflow_id, self.run_id),
            lambda found: found.run_id != self._closed_run or found.status != "running",
        )

    async def history(self) -> list[HistoryEvent]:
        return [to_history_event(e) for e in await self._events()]

    async def export_history(self, path: str | Path) -> None:
        """Write this run's exact events as JSON lines: a history file for `docket.replay`
        and ``docket workflow replay --history`` (keep a few as golden files in CI)."""
        from docket.replay import export_history

        export_history(await self._events(), path)

    async def _events(self) -> list[dict[str, Any]]:
        return await self._as_told(
            lambda: self._client._reader.history(self.workflow_id, self.run_id),
            lambda events: (
                self._closed_run != self.run_id or events[-1]["body"][0] in CLOSING_EVENTS
            ),
        )

    async def _as_told(self, read: Callable[[], T], shows: Callable[[T], bool]) -> T:
        """``read()`` until it shows what this handle was told, for up to _STORE_CATCH_UP_S.
        A processor writes its stores right after it appends a batch, replies included: a
        client in another process can read a reply, then the stores, in between."""
        deadline = time.monotonic() + _STORE_CATCH_UP_S
        while True:
            try:
                value = read()
            except WorkflowNotFoundError:
                if not self._known or time.monotonic() >= deadline:
                    raise
            else:
                if shows(value) or time.monotonic() >= deadline:
                    return value
            await asyncio.sleep(0.002)


class UpdateHandle:
    """An accepted update: ``await result()`` for what its handler returned."""

    def __init__(
        self,
        workflow: WorkflowHandle[Any],
        name: str,
        update_id: str,
        outcome: asyncio.Future[dict[str, Any]],
        result_hint: Any,
    ) -> None:
        self.workflow = workflow
        self.name = name
        self.update_id = update_id
        self._outcome = outcome
        self._hint = result_hint

    def __repr__(self) -> str:
        return (
            f"UpdateHandle(workflow_id={self.workflow.workflow_id!r}, update_id={self.update_id!r})"
        )

    async def result(self, *, timeout: float | None = None) -> Any:
        """Wait for the handler to finish; return its value or raise UpdateFailedError."""
        workflow_id = self.workflow.workflow_id
        try:
            reply = await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except TimeoutError:
            raise ReplyTimeoutError(
                f"update {self.name!r} ({self.update_id}) of workflow_id={workflow_id!r} has "
                f"not finished after {timeout} s; it is still running"
            ) from None
        if reply["kind"] == "update_completed":
            return from_payload(
                reply["result"], self._hint, where=f"result of update {self.name!r}"
            )
        cause = from_failure(reply["failure"])
        raise UpdateFailedError(
            f"update {self.name!r} ({self.update_id}) of workflow_id={workflow_id!r} failed: {cause}",
            workflow_id=workflow_id,
            update_id=self.update_id,
        ) from cause
