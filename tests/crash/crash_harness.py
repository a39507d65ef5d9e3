"""Helpers for the crash tests: run `app_under_test.py` as a real process, kill it, restart it,
and read what is durable (the SQLite log itself, and the step-execution log file).

The checks read the log directly (the source of truth), not only the state stores, so a
store that lags behind the log after a crash cannot hide a lost or duplicated record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docket.codec.records import COMMANDS, EVENTS, TASKS
from docket.log import batches
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "app_under_test.py"
PARTITIONS = 4  # the Settings default, used by the runner and the test's client alike
TOPICS = Topics("default")
KILLED = 137  # os._exit(137) at a fault point
READY_TIMEOUT_S = 20.0
KAFKA_SESSION_MS = "1000"  # a killed runner's partitions move to the next one within ~1 s
EXIT_TIMEOUT_S = 20.0


class Runner:
    """One data directory and the `app_under_test.py` processes that take turns on it."""

    def __init__(self, tmp_path: Path, bootstrap: str | None = None) -> None:
        """``bootstrap``: run the engine on that Kafka broker instead of the embedded log
        (the test process must set DOCKET_BOOTSTRAP_SERVERS for its own client too)."""
        self.bootstrap = bootstrap
        self.data_dir = tmp_path / "data"
        self.step_log = tmp_path / "steps.log"
        self.out_dir = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawns = 0
        self._out: Path | None = None

    def env(self, fault: str | None = None, after: int = 0) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
        if os.environ.get("DOCKET_ALWAYS_REPLAY"):
            env["DOCKET_ALWAYS_REPLAY"] = os.environ["DOCKET_ALWAYS_REPLAY"]
        env["CRASH_STEP_LOG"] = str(self.step_log)
        if self.bootstrap is not None:
            env["DOCKET_BOOTSTRAP_SERVERS"] = self.bootstrap
            env["DOCKET_KAFKA_SESSION_TIMEOUT_MS"] = KAFKA_SESSION_MS
        env["PYTHONUNBUFFERED"] = "1"
        if fault is not None:
            env["DOCKET_FAULT"] = fault
            env["DOCKET_FAULT_AFTER"] = str(after)
        return env

    async def spawn(self, fault: str | None = None, after: int = 0) -> None:
        """Start the runner and wait until its engine is up (it printed READY)."""
        assert self.proc is None or self.proc.poll() is not None, "the previous runner still runs"
        self.spawns += 1
        self._out = self.out_dir / f"runner-{self.spawns}.out"
        with open(self._out, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(RUNNER), str(self.data_dir)],
                env=self.env(fault, after),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.out_dir,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b"READY" not in self._out.read_bytes():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"runner exited with {self.proc.returncode} before it was ready:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"runner not ready in {READY_TIMEOUT_S} s:\n{self.output()}")
            await asyncio.sleep(0.01)

    def output(self) -> str:
        return self._out.read_text(errors="replace") if self._out and self._out.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"runner pid {self.proc.pid} still alive after {timeout} s:\n{self.output()}"
                )
            await asyncio.sleep(0.01)
        return self.proc.returncode

    async def wait_step_lines(self, count: int, timeout: float = 20.0) -> None:
        """Wait until the step log has ``count`` lines (steps began that many times)."""
        deadline = time.monotonic() + timeout
        while len(self.step_lines()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.step_lines())} of {count} step runs after {timeout} s:\n"
                    f"{self.output()}"
                )
            await asyncio.sleep(0.002)

    async def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = await self.wait_exit()
        assert code in (-signal.SIGKILL, KILLED), f"runner exited with {code}:\n{self.output()}"

    async def terminate(self) -> int:
        """SIGTERM and wait: the runner stops its engine cleanly and exits 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return await self.wait_exit()

    def cleanup(self) -> None:
        """Never leave a runner behind (and reap it, so no ResourceWarning)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    # -- what is durable ------------------------------------------------------------------------

    def step_lines(self) -> list[tuple[str, int, int]]:
        if not self.step_log.exists():
            return []
        lines = []
        for raw in self.step_log.read_text().splitlines():
            wid, seq, attempt = raw.split()
            lines.append((wid, int(seq), int(attempt)))
        return lines

    def read_topic(self, topic: str, key: str) -> list[bytes]:
        """Every record of ``topic`` keyed ``key``, in offset order, straight from the log
        (SQLite, or the Kafka topic)."""
        if self.bootstrap is not None:
            return self._read_kafka_topic(topic, key)
        db = sqlite3.connect(f"file:{self.data_dir / 'log.sqlite3'}?mode=ro", uri=True)
        try:
            records = batches.read(db, topic, partition_of(key, PARTITIONS), 0, 10**9)
        finally:
            db.close()
        return [r.value for r in records if r.key == key]

    def _read_kafka_topic(self, topic: str, key: str) -> list[bytes]:
        from docket.log.kafka import KafkaLog

        assert self.bootstrap is not None
        log = KafkaLog(self.bootstrap, namespace="default", partitions=PARTITIONS)
        try:
            values, offset, p = [], 0, partition_of(key, PARTITIONS)
            while records := log.read(topic, p, offset, 10_000):
                values += [r.value for r in records if r.key == key]
                offset = records[-1].offset + 1
            return values
        finally:
            log.close()

    def snapshot(self, workflow_id: str) -> Snapshot:
        """What is durable now for one workflow (take it while no runner is alive)."""
        events = [EVENTS.decode(v) for v in self.read_topic(TOPICS.history, workflow_id)]
        if self.bootstrap is not None:
            events = _deduplicated(events)
        commands = [COMMANDS.decode(v) for v in self.read_topic(TOPICS.commands, workflow_id)]
        everything = self.step_lines()
        lines = [line for line in everything if line[0] == workflow_id]
        snapshot = Snapshot(workflow_id, events, commands, len(everything), lines)
        print(f"snapshot after runner {self.spawns}: {snapshot.summary()}")  # shown on failure
        return snapshot


@dataclass
class Snapshot:
    workflow_id: str
    events: list[dict[str, Any]]  # the workflow's history topic records, in log order
    commands: list[dict[str, Any]]  # its commands topic records, in log order
    step_log_length: int  # lines in the step log, all workflows
    lines: list[tuple[str, int, int]] = field(default_factory=list)  # this workflow's lines

    def kinds(self) -> list[str]:
        return [e["body"][0] for e in self.events]

    def completed_seqs(self) -> set[int]:
        """Steps whose StepCompleted is in history."""
        return {e["body"][1]["seq"] for e in self.events if e["body"][0] == "StepCompleted"}

    def reported_seqs(self) -> set[int]:
        """Steps whose worker report (CompleteStep) is durable in the commands topic."""
        return {c["body"][1]["seq"] for c in self.commands if c["body"][0] == "CompleteStep"}

    def started_seqs(self) -> set[int]:
        return {seq for _, seq, _ in self.lines}

    def summary(self) -> str:
        return (
            f"{self.workflow_id}: history {len(self.events)} events (last "
            f"{self.kinds()[-1] if self.events else None}), completed "
            f"{sorted(self.completed_seqs())}, reported {sorted(self.reported_seqs())}, "
            f"began {sorted(self.started_seqs())} ({len(self.lines)} runs)"
        )

    def closed(self) -> bool:
        return "WorkflowCompleted" in self.kinds() or "WorkflowFailed" in self.kinds()


def assert_history_sound(runner: Runner, workflow_id: str, history: list[Any]) -> list[str]:
    """The history (from the client) and the history topic agree: ids 1..n, no gap, no
    duplicate; every processor output was written exactly once. Returns the event kinds."""
    ids = [e.event_id for e in history]
    assert ids == list(range(1, len(ids) + 1)), f"event ids with a gap or duplicate: {ids}"
    final = runner.snapshot(workflow_id)
    log_ids = [e["event_id"] for e in final.events]
    assert log_ids == ids, f"history topic ids {log_ids} != store history ids {ids}"
    assert [e.type for e in history] == final.kinds()
    run_ids = {e["run_id"] for e in final.events}
    assert len(run_ids) == 1, f"more than one run: {run_ids}"
    # every completion reported on the log reached history (no lost command); a worker
    # beside the processor hands its reports over instead (streams/handoff.py), and those
    # reach history with the task offsets, or the task runs again
    reported = {
        (c["body"][1]["seq"], c["body"][1]["attempt"])
        for c in final.commands
        if c["body"][0] == "CompleteStep"
    }
    recorded = {
        (e["body"][1]["seq"], e["body"][1]["attempt"])
        for e in final.events
        if e["body"][0] == "StepCompleted"
    }
    assert reported <= recorded, f"reported {sorted(reported)} but recorded {sorted(recorded)}"
    # every task (step attempt) was emitted once: a duplicate would run a step twice
    tasks = [TASKS.decode(v) for v in runner.read_topic(TOPICS.tasks("default"), workflow_id)]
    if runner.bootstrap is not None:
        tasks = _deduplicated(tasks, "idempotency_key")
    keys = Counter(task["idempotency_key"] for task in tasks)
    duplicates = {k: n for k, n in keys.items() if n > 1}
    assert not duplicates, f"tasks emitted more than once: {duplicates}"
    return final.kinds()


def _deduplicated(
    records: list[dict[str, Any]], key: str = "run_id/event_id"
) -> list[dict[str, Any]]:
    """Kafka readers see the records of transactions a kill -9 cut short (read_uncommitted),
    and the batch then runs again: the log may hold a record twice, and every reader
    dedupes by its id. What must hold is that the copies are identical (deterministic
    outputs), so deduplicating loses nothing."""
    first: dict[Any, dict[str, Any]] = {}
    for record in records:
        ident = tuple(record[k] for k in key.split("/"))
        seen = first.setdefault(ident, record)
        assert seen == record, f"two different records with {key} {ident}: {seen} / {record}"
    return list(first.values())


def runs_per_seq(lines: list[tuple[str, int, int]]) -> Counter[int]:
    return Counter(seq for _, seq, _ in lines)


def assert_steps_ran_per_guarantees(
    runner: Runner, workflow_id: str, crashes: list[Snapshot], seqs: set[int]
) -> None:
    """Given the snapshots taken at each crash (in order) and the final step log:

    - a step whose StepCompleted was in history at a crash never began again afterwards;
    - nor did a step whose completion report was durable in the commands topic (the worker
      commits the task offset in the same transaction as the report);
    - a step runs more than once only if it was in flight (begun, not reported) at a crash,
      and at most once more per such crash; every other step ran exactly once.
    """
    everything = runner.step_lines()
    mine = [line for line in everything if line[0] == workflow_id]
    runs = runs_per_seq(mine)
    assert set(runs) == seqs, f"steps that ran: {sorted(runs)}, expected {sorted(seqs)}"
    if runner.bootstrap is not None:
        _assert_kafka_steps_ran_at_least_once(crashes, runs)
        return
    in_flight: Counter[int] = Counter()
    for number, crash in enumerate(crashes, 1):
        later = {seq for wid, seq, _ in everything[crash.step_log_length :] if wid == workflow_id}
        rerun = later & crash.completed_seqs()
        assert not rerun, (
            f"crash {number}: steps {sorted(rerun)} had StepCompleted in history and ran again"
        )
        rerun = later & crash.reported_seqs()
        assert not rerun, (
            f"crash {number}: steps {sorted(rerun)} were reported complete and ran again"
        )
        in_flight.update(crash.started_seqs() - crash.reported_seqs() - crash.completed_seqs())
    too_many = {s: n for s, n in runs.items() if n > 1 + in_flight[s]}
    assert not too_many, (
        f"steps ran more often than at-least-once allows (runs per seq {dict(runs)}, "
        f"in flight at crashes {dict(in_flight)}): {too_many}"
    )


def _assert_kafka_steps_ran_at_least_once(crashes: list[Snapshot], runs: Counter[int]) -> None:
    """The Kafka form of the step guarantees. Readers there are read_uncommitted, so a
    snapshot cannot tell a worker's committed report from one in the transaction a kill cut
    short: the processor may even have recorded that report's StepCompleted, and the worker,
    whose task offset did not commit, runs the step once more (its result is ignored). What
    still holds: a step runs again only after a crash that came once it had begun, at most
    once more per such crash (and the histories are sound: assert_history_sound)."""
    began_before: Counter[int] = Counter()
    for crash in crashes:
        began_before.update(crash.started_seqs())
    too_many = {s: n for s, n in runs.items() if n > 1 + began_before[s]}
    assert not too_many, f"steps ran more often than at-least-once allows: {too_many}"
