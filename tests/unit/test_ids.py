"""Deterministic ids must not change across versions: stored histories name runs by them."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from docket.execution.ids import _RUN_NS, continued_run_id, new_workflow_id, run_id_for


@given(st.text())
def test_run_ids_are_uuid5_of_the_start_command(command_id: str) -> None:
    assert run_id_for(command_id) == str(uuid.uuid5(_RUN_NS, command_id))


def test_a_continued_run_id_is_uuid5_of_the_run_it_continues() -> None:
    run_id = run_id_for("a-start-command")
    assert continued_run_id(run_id) == str(uuid.uuid5(_RUN_NS, f"{run_id}/continued"))
    assert run_id_for("a-start-command") == "ac7b3693-8935-5f52-9ce8-aff71c50b330"  # pinned


def test_a_new_workflow_id_is_a_random_uuid4_as_str_uuid4_writes_it() -> None:
    ids = [new_workflow_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for workflow_id in ids:
        parsed = uuid.UUID(workflow_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == workflow_id  # the canonical form: lower-case, dashed
