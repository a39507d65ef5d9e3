"""Deterministic ids: re-processing the same input yields the same ids, so readers dedupe."""

from __future__ import annotations

import uuid

_RUN_NS = uuid.UUID("6f1c1f9e-6a6b-4f0e-9d8e-3c1b2a4d5e6f")


def run_id_for(start_command_id: str) -> str:
    """A run's id derives from the command that started it: a re-delivered start is a no-op."""
    return str(uuid.uuid5(_RUN_NS, start_command_id))


def continued_run_id(run_id: str) -> str:
    """The run that continue-as-new starts after ``run_id``: the same on every replay."""
    return str(uuid.uuid5(_RUN_NS, f"{run_id}/continued"))


def timer_id(
    workflow_id: str, run_id: str, kind: str, seq: int, attempt: int, extra: int = 0
) -> str:
    suffix = f"/{extra}" if extra else ""
    return f"{workflow_id}/{run_id}/{kind}/{seq}/{attempt}{suffix}"


def idempotency_key(workflow_id: str, run_id: str, seq: int, attempt: int) -> str:
    """Stable per step attempt; a step can use it to dedupe its own side effects."""
    return f"{workflow_id}/{run_id}/{seq}/{attempt}"
