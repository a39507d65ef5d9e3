"""The bench harness still runs: each mode prints one JSON line with right results.

Figures are not asserted (speed is measured by `python -m bench`, never in a test); what
is asserted is that every workflow came back with the right result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "mode",
    [[], ["--processors", "2", "--spread"], ["--processors", "2", "--spread", "--prefer-local"]],
    ids=["one", "spread", "spread-local"],
)
def test_hello_runs_and_every_result_is_right(tmp_path: Path, mode: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "hello", "--n", "40", "--latency-n", "5",
         "--data-root", str(tmp_path), *mode],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    figures = json.loads(line)
    assert (figures["workflows"], figures["errors"]) == (40, 0)
    assert figures["workflows_per_s"] > 0 and figures["params"]["spread"] == bool(mode)
    assert figures["params"]["prefer_local"] == ("--prefer-local" in mode)
    assert list(tmp_path.iterdir()) == []  # the temporary data directory is gone


def test_spread_needs_processors() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "hello", "--spread"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--spread is for hello with --processors 2" in done.stderr


def test_timer_index_fires_every_timer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "timer-index", "--n", "3000", "--data-root", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["timers"], figures["errors"]) == (3000, 0)
    assert list(tmp_path.iterdir()) == []
