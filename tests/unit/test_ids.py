"""Deterministic ids must not change across versions: stored histories name runs by them."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from docket.execution.ids import _RUN_NS, continued_run_id, run_id_for


@given(st.text())
def test_run_ids_are_uuid5_of_the_start_command(command_id: str) -> None:
    assert run_id_for(command_id) == str(uuid.uuid5(_RUN_NS, command_id))


def test_a_continued_run_id_is_uuid5_of_the_run_it_continues() -> None:
    run_id = run_id_for("a-start-command")
    assert continued_run_id(run_id) == str(uuid.uuid5(_RUN_NS, f"{run_id}/continued"))
    assert run_id_for("a-start-command") == "ac7b3693-8935-5f52-9ce8-aff71c50b330"  # pinned
