"""Golden histories of the examples, replayed against the current code.

A failure here means the change breaks executions already running: guard it, or re-record
the histories on purpose (tests/replay/record_histories.py) if no such executions exist.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from docket.replay import load_history, replay_history
from tests.replay.record_histories import GOLDEN, HISTORIES, ROOT, load_example


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_history_replays_cleanly(name: str) -> None:
    events = load_history(HISTORIES / f"{name}.jsonl")
    result = replay_history(load_example(name).app, events)
    assert result.ok, result.error
    assert result.events == len(events) and events[-1]["body"][0] == "WorkflowCompleted"


def test_nondeterministic_history_is_caught_with_an_exact_message() -> None:
    events = load_history(HISTORIES / "nondeterministic_hello.jsonl")
    result = replay_history(load_example("hello_world").app, events)
    assert result.error is not None
    message = re.sub(r"run=[0-9a-f-]+", "run=RUN", str(result.error))
    location = f"{ROOT / 'examples' / 'hello_world.py'}:23"
    assert message == (
        "workflow 'say_hello' (workflow_id=nondeterministic_hello, run=RUN) asked for step "
        f"'compose_greeting' at seq 1 ({location}), but history event 2 recorded a timer at "
        "seq 1. The code changed in a replay-unsafe way: restore the old behaviour for running "
        "executions, or let them finish before deploying the change"
    )


def test_cli_replay_of_history_files_exits_non_zero_on_nondeterminism(tmp_path: Path) -> None:
    (tmp_path / "hello_app.py").write_text((ROOT / "examples" / "hello_world.py").read_text())
    files = [str(HISTORIES / "hello_world.jsonl"), str(HISTORIES / "nondeterministic_hello.jsonl")]
    command = [sys.executable, "-m", "docket.cli", "workflow", "replay", "-A", "hello_app:app"]
    ok = subprocess.run([*command, "--history", files[0]], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*command, "--history", files[0], "--history", files[1]],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 3
    assert "1 of 2 histories replayed cleanly" in bad.stdout
    assert "history event 2 recorded a timer at seq 1" in bad.stdout
