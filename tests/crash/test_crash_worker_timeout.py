"""``kill -9`` of the only worker of a task queue, mid-attempt: the attempt times out
start-to-close after its recorded start (the processor's durable timer, no worker needed),
not after its dispatch (it waited in the queue first), and its retry runs on the next
worker of the queue.

Real processes on one data directory: ``docket run --no-worker`` (processor and timers,
no worker at all) and ``docket worker`` processes, which serve the app's queues, here the
step's ``remote`` queue. The CLI has no option to pick a worker's queues, so the engine
runs no worker rather than every queue but ``remote``.

The killed worker committed no task offset past attempt 1 (it was in flight), so the new
worker may be delivered attempt 1 again as well as attempt 2. That run returns at once, and
its late StartStep and CompleteStep must count for nothing: the result is attempt 2's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crash_harness import EXIT_TIMEOUT_S, READY_TIMEOUT_S, TOPICS, Runner
from worker_timeout_app import MARKERS_ENV, START_TO_CLOSE, remote_once

import docket
from docket.codec.records import COMMANDS, EVENTS

HERE = Path(__file__).resolve().parent
APP = "worker_timeout_app:app"
WID = "remote-1"
HOLD_S = 60.0  # attempt 1's first run: far longer than the test
QUEUED_S = 1.0  # attempt 1 waits in the queue at least this long: not part of its timeout
LIMIT_US = int(START_TO_CLOSE.total_seconds() * 1_000_000)
LATENESS_US = 10_000_000  # how late the timeout may fire on a busy machine


def cli_env(runner: Runner, markers: Path) -> dict[str, str]:
    env = runner.env()  # no DOCKET_* variables of this process, unbuffered output
    env["DOCKET_DATA_DIR"] = str(runner.data_dir)
    env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    env[MARKERS_ENV] = str(markers)
    return env


class Cli:
    """One `docket` command running as its own process, its output in a file."""

    def __init__(self, runner: Runner, markers: Path, name: str, *args: str) -> None:
        self.name = name
        self.out = runner.out_dir / f"{name}.out"
        with open(self.out, "wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "docket.cli", *args],
                env=cli_env(runner, markers),
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=runner.out_dir,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return f"--- {self.name} (pid {self.pid}):\n{self.out.read_text(errors='replace')}"

    async def ready(self) -> None:
        """Until it logged that it runs (after its engine started: partitions taken)."""
        await until(
            lambda: b"running app" in self.out.read_bytes(),
            f"{self.name} ready",
            READY_TIMEOUT_S,
            self,
        )

    async def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        await until(lambda: self.proc.poll() is not None, f"{self.name} gone", EXIT_TIMEOUT_S)
        assert self.proc.returncode == -signal.SIGKILL, self.output()

    async def stop(self) -> None:
        """SIGTERM: it stops cleanly and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        await until(lambda: self.proc.poll() is not None, f"{self.name} stopped", EXIT_TIMEOUT_S)
        assert self.proc.returncode == 0, self.output()
        assert "stopped with an error" not in self.output(), self.output()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(EXIT_TIMEOUT_S)  # reaped: no zombie whose pid still looks alive


async def until(condition: Callable[[], bool], what: str, seconds: float, *alive: Cli) -> None:
    """Wait for ``condition``, while every process in ``alive`` keeps running."""
    deadline = time.monotonic() + seconds
    while not condition():
        for cli in alive:
            assert cli.proc.poll() is None, f"{cli.name} exited while waiting until {what}:\n" + (
                cli.output()
            )
        assert time.monotonic() < deadline, (
            f"timed out after {seconds} s waiting until {what}:\n"
            + ("\n".join(cli.output() for cli in alive))
        )
        await asyncio.sleep(0.02)


def history(runner: Runner) -> list[dict[str, Any]]:
    """The workflow's events, straight from the history topic in the log."""
    return [EVENTS.decode(v) for v in runner.read_topic(TOPICS.history, WID)]


def step_events(events: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    """(type, attempt) of the step's events, in order."""
    return [
        (e["body"][0], e["body"][1].get("attempt"))
        for e in events
        if e["body"][0].startswith("Step")
    ]


def the(events: list[dict[str, Any]], kind: str, attempt: int) -> dict[str, Any] | None:
    """The one event of ``kind`` for ``attempt``, or None (more than one is an error)."""
    found = [e for e in events if e["body"][0] == kind and e["body"][1]["attempt"] == attempt]
    assert len(found) <= 1, f"{kind} of attempt {attempt} recorded {len(found)} times: {found}"
    return found[0] if found else None


def step_runs(markers: Path) -> Counter[tuple[int, int]]:
    """How many times each (attempt, worker pid) began, from the step's marker files."""
    runs: Counter[tuple[int, int]] = Counter()
    for marker in markers.iterdir():
        attempt, pid, _ = marker.name.removeprefix("attempt").split(".")
        runs[(int(attempt), int(pid))] += 1
    return runs


async def test_kill9_of_the_only_worker_times_the_attempt_out_and_the_retry_runs_on_the_next(
    tmp_path: Path,
) -> None:
    runner = Runner(tmp_path)  # its data directory, and its reading of the log
    markers = tmp_path / "markers"
    markers.mkdir()
    clis: list[Cli] = []
    try:
        engine = Cli(runner, markers, "engine", "run", "-A", APP, "--no-worker")
        clis.append(engine)
        await engine.ready()
        client = docket.Client.connect(data_dir=runner.data_dir)
        try:
            handle = await client.start(remote_once, HOLD_S, workflow_id=WID)
            await until(
                lambda: "StepScheduled" in [e["body"][0] for e in history(runner)],
                "attempt 1 is dispatched",
                30,
                engine,
            )
            await asyncio.sleep(QUEUED_S)  # it waits in the queue: no worker serves it yet
            first = Cli(runner, markers, "worker-1", "worker", "-A", APP)
            clis.append(first)
            await first.ready()

            # attempt 1 runs on the first worker, and its start is recorded
            await until(
                lambda: (
                    the(history(runner), "StepStarted", 1) is not None
                    and step_runs(markers)[(1, first.pid)] == 1
                ),
                "attempt 1 began and its StepStarted is in history",
                30,
                engine,
                first,
            )
            await first.kill9()

            # no worker serves the queue now: only the start-to-close timer can end attempt 1
            await until(
                lambda: the(history(runner), "StepAttemptFailed", 1) is not None,
                "attempt 1 timed out with no worker alive",
                (LIMIT_US + LATENESS_US) / 1e6 + 5,
                engine,
            )
            events = history(runner)
            started, failed = the(events, "StepStarted", 1), the(events, "StepAttemptFailed", 1)
            assert started is not None and failed is not None
            failure = failed["body"][1]["failure"]
            assert failure["kind"] == "timeout.start_to_close", failure
            assert failure["type"] == "TimeoutError", failure
            scheduled = next(e for e in events if e["body"][0] == "StepScheduled")
            queued_us = started["ts_us"] - scheduled["ts_us"]
            assert queued_us >= QUEUED_S * 1_000_000, queued_us
            took_us = failed["ts_us"] - started["ts_us"]  # from dispatch, it would be less
            assert LIMIT_US <= took_us < LIMIT_US + LATENESS_US, (
                f"attempt 1 timed out {took_us / 1e6:.3f} s after its start, not about "
                f"{LIMIT_US / 1e6} s"
            )
            assert step_runs(markers) == {(1, first.pid): 1}, step_runs(markers)

            # the retry waits in the queue for the next worker, and finishes there
            second = Cli(runner, markers, "worker-2", "worker", "-A", APP)
            clis.append(second)
            await second.ready()
            result = await handle.result(timeout=40)
            assert result == f"attempt 2 in pid {second.pid}", result
        finally:
            await client.close()

        cli_history = subprocess.run(
            [sys.executable, "-m", "docket.cli", "workflow", "history", WID, "--json"],
            env=cli_env(runner, markers),
            capture_output=True,
            text=True,
            timeout=60,
        )
        await second.stop()  # it finishes and reports what it holds
        await engine.stop()

        assert cli_history.returncode == 0, cli_history.stderr
        events = [json.loads(line) for line in cli_history.stdout.splitlines()]
        logged = history(runner)
        assert [e["event_id"] for e in events] == [e["event_id"] for e in logged]
        assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
        assert [e["body"][0] for e in events] == [e["body"][0] for e in logged]
        assert step_events(events) == [
            ("StepScheduled", None),
            ("StepStarted", 1),
            ("StepAttemptFailed", 1),
            ("StepRetried", 2),
            ("StepStarted", 2),
            ("StepCompleted", 2),
        ], events
        assert events[-1]["body"][0] == "WorkflowCompleted"

        # each attempt began once where it should; the new worker reads attempt 1's task
        # again (its offset was never committed), and skips it when the history already
        # records the attempt's timeout, else runs it, its late reports counting for nothing
        runs = step_runs(markers)
        assert runs[(1, first.pid)] == 1 and runs[(2, second.pid)] == 1, runs
        assert set(runs) <= {(1, first.pid), (2, second.pid), (1, second.pid)}, runs
        assert runs[(1, second.pid)] <= 1, runs
        late = Counter(
            c["body"][0]
            for c in (COMMANDS.decode(v) for v in runner.read_topic(TOPICS.commands, WID))
            if c["body"][0] in ("StartStep", "CompleteStep", "FailStep")
            and c["body"][1]["attempt"] == 1
        )
        again = runs[(1, second.pid)]  # the stopped worker had reported all it ran
        assert late == Counter({"StartStep": 1 + again, "CompleteStep": again}), late
        print(
            f"queued {queued_us / 1e6:.3f} s, timed out {took_us / 1e6:.3f} s after the start; "
            f"step runs {dict(runs)}"
        )
    finally:
        for cli in reversed(clis):
            cli.cleanup()
