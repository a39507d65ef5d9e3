"""Replies to a client in the processor's own process, handed over in memory.

A client normally learns the outcome of its request by reading ``replies``: the processor
appends the reply with its batch, and the client's listener wakes up, reads it back and
decodes it. When the client lives in the same process as the processor (the engine's own
``engine.client``), that round trip through the log buys nothing: the processor hands the
reply to the client right after the batch is durable (appended and folded into the state
stores, the moment a client reading ``replies`` could have seen it), and never writes it.
This saves a reply's encode, its share of the append, the listener's read and decode, and
a wake-up per request; the hello workload's start and result are one request each.

Nothing acknowledged is lost: the reply is delivered only after the batch's append
returned, so what it acknowledges is on the log. A crash before delivery takes the client
with it (same process), like a client that crashed before reading its reply. Replies to
every other client, and every reply a processor in another process sends, still go
through ``replies``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Deliver = Callable[[dict[str, Any]], None]

log = logging.getLogger("docket")


class LocalReplies:
    """The clients of this process that take their replies in memory, by client ID."""

    def __init__(self) -> None:
        self._clients: dict[str, Deliver] = {}

    def __bool__(self) -> bool:
        return bool(self._clients)

    def __contains__(self, client_id: str) -> bool:
        return client_id in self._clients

    def register(self, client_id: str, deliver: Deliver) -> None:
        self._clients[client_id] = deliver

    def unregister(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    def deliver(self, replies: list[dict[str, Any]]) -> None:
        """Hand each reply to its client (call only once the batch is durable)."""
        for reply in replies:
            deliver = self._clients.get(reply["reply_to"])
            if deliver is None:  # unregistered meanwhile: closed, nobody waits
                continue
            try:
                deliver(reply)
            except Exception:  # the client's fault must not stop the processor's batch
                log.exception("client %s failed to take a reply", reply["reply_to"])
