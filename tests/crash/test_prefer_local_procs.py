"""Two engine processes with ``prefer_local=True`` on one data directory, each starting its
own workflows (so each runs them on its own partitions), and one of them killed or stopped
while they are mid-step or mid-sleep: the other takes the partitions over and finishes
every workflow, no step that finished running again, and any client gets the results."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crash_harness import TOPICS, Runner

import docket
from docket.codec.records import EVENTS
from docket.log.partitioner import partition as partition_of

HERE = Path(__file__).resolve().parent
APP = HERE / "prefer_local_app.py"
PARTITIONS = 4  # the Settings default


class Process:
    """One `prefer_local_app.py` process on the test's data directory."""

    def __init__(self, tmp_path: Path, name: str, count: int, **env: str) -> None:
        self.name = name
        self.ids_file = tmp_path / f"{name}.ids"
        self.out = tmp_path / f"{name}.out"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
        environ.update(STEP_LOG=str(tmp_path / "steps.log"), PYTHONUNBUFFERED="1", **env)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), str(tmp_path / "data"), name, str(count)],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    async def printed(self, word: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while word not in self.output():
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"{self.name} never printed {word}:\n{self.output()}"
            )
            await asyncio.sleep(0.02)

    def ids(self) -> list[str]:
        return self.ids_file.read_text().split()

    async def exited(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"{self.name} still runs:\n{self.output()}"
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def step_runs(tmp_path: Path) -> list[tuple[str, int, int, int]]:
    """(workflow_id, seq, attempt, pid) of every step attempt begun so far."""
    log = tmp_path / "steps.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(w, int(s), int(a), int(p)) for w, s, a, p in (line.split() for line in lines)]


async def until_steps_began(
    tmp_path: Path, ids: list[str], seq: int, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while {w for w, s, _, _ in step_runs(tmp_path) if s == seq} < set(ids):
        assert time.monotonic() < deadline, f"step {seq} did not begin in all of {ids}"
        await asyncio.sleep(0.02)


def history(tmp_path: Path, workflow_id: str) -> list[dict[str, Any]]:
    return [EVENTS.decode(v) for v in Runner(tmp_path).read_topic(TOPICS.history, workflow_id)]


def check_histories(tmp_path: Path, ids: list[str]) -> None:
    """Each workflow's history: event IDs 1..n with no gap or repeat, one completion a step."""
    for workflow_id in ids:
        events = history(tmp_path, workflow_id)
        assert [e["event_id"] for e in events] == list(range(1, len(events) + 1)), workflow_id
        completed = Counter(e["body"][1]["seq"] for e in events if e["body"][0] == "StepCompleted")
        assert completed == {1: 1, 3: 1, 4: 1}, (workflow_id, completed)  # 2: the sleep
        assert events[-1]["body"][0] == "WorkflowCompleted", workflow_id


@contextlib.asynccontextmanager
async def two_processes(tmp_path: Path, count: int, **env: str) -> AsyncIterator[Process]:
    """Two processes, both ready: ``b`` starts no workflow, ``a`` (given) starts ``count``,
    on its own partitions; ``b`` is the one left to take them over. Both end at the exit."""
    processes: list[Process] = []
    try:
        for name, started in (("b", 0), ("a", count)):
            processes.append(Process(tmp_path, name, started, **env))
            await processes[-1].printed("READY")
        yield processes[1]
    finally:
        for process in processes:
            process.end()


async def results_elsewhere(tmp_path: Path, ids: list[str]) -> list[int]:
    """The workflows' results, asked by a client in this (third) process."""
    client = docket.Client.connect(data_dir=tmp_path / "data")
    try:
        return list(await asyncio.gather(*(client.get_handle(w).result(timeout=25) for w in ids)))
    finally:
        await client.close()


def leases_of(tmp_path: Path, pid: int, group: str) -> list[int]:
    """The partitions of ``group`` (processor, timers, worker.default) leased to ``pid``."""
    uri = f"file:{tmp_path / 'data' / 'log.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT partition, owner FROM leases WHERE grp=?", (TOPICS.group(group),))
        return sorted(p for p, owner in rows if owner.split(":")[1] == str(pid))


async def naps_elsewhere(tmp_path: Path, partitions: list[int], timeout: float) -> list[str]:
    """Start a `nap` on each partition from a client in this (third) process; their results."""
    client = docket.Client.connect(data_dir=tmp_path / "data")
    try:
        ids = [
            next(w for i in itertools.count() if partition_of(w := f"nap-{p}-{i}", PARTITIONS) == p)
            for p in partitions
        ]
        handles = [await client.start("nap", 0.2, workflow_id=w) for w in ids]
        return list(await asyncio.gather(*(h.result(timeout=timeout) for h in handles)))
    finally:
        await client.close()


async def test_a_graceful_stop_hands_its_workflows_over_at_once_and_runs_its_steps_to_the_end(
    tmp_path: Path,
) -> None:
    """A stopping process gives up its processor and timer partitions as soon as their
    loops end, not once its worker has drained: workflows started on them meanwhile finish
    in the other process within seconds (they waited for the whole drain, the other process
    unable to open the stores the stopping one kept locked). Its worker still runs its steps
    to the end, once, even past the session timeout (6 s): it keeps their task partitions
    while it waits for them (without that, the other process ran them a second time)."""
    async with two_processes(tmp_path, 3, STEP_S="10", SLEEP_S="0.1") as a:
        ids = a.ids()
        await until_steps_began(tmp_path, ids, 1)
        held = leases_of(tmp_path, a.proc.pid, "processor")
        assert held and held == leases_of(tmp_path, a.proc.pid, "timers")
        a.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert await naps_elsewhere(tmp_path, held, timeout=20) == ["rested"] * len(held)
        took = time.monotonic() - began
        assert took < 5 and a.proc.poll() is None, f"the naps took {took:.1f} s:\n{a.output()}"

        assert await a.exited() == 0, a.output()
        assert "STOPPED" in a.output()
        first_steps = [(w, p) for w, s, _, p in step_runs(tmp_path) if s == 1 and w in ids]
        assert sorted(first_steps) == sorted((w, a.proc.pid) for w in ids)
        assert await results_elsewhere(tmp_path, ids) == [6] * len(ids)
        check_histories(tmp_path, ids)


def kinds_by_workflow(tmp_path: Path, ids: list[str]) -> dict[str, list[str]]:
    return {w: [e["body"][0] for e in history(tmp_path, w)] for w in ids}


async def test_the_survivor_finishes_what_a_killed_process_started_mid_step_and_mid_sleep(
    tmp_path: Path,
) -> None:
    async with two_processes(tmp_path, 6, STEP_S="4", SLEEP_S="3") as a:
        ids = a.ids()
        sleeping, stepping = ids[:3], ids[3:]
        await until_steps_began(tmp_path, stepping, 1)
        deadline = time.monotonic() + 20
        while not all("TimerStarted" in k for k in kinds_by_workflow(tmp_path, sleeping).values()):
            assert time.monotonic() < deadline, kinds_by_workflow(tmp_path, sleeping)
            await asyncio.sleep(0.02)
        a.proc.send_signal(signal.SIGKILL)
        await a.exited()
        done_before = {
            (w, e["body"][1]["seq"])
            for w in ids
            for e in history(tmp_path, w)
            if e["body"][0] == "StepCompleted"
        }
        assert {w for w, _ in done_before} == set(sleeping)
        assert all(p == a.proc.pid for w, _, _, p in step_runs(tmp_path) if w in ids)

        assert await results_elsewhere(tmp_path, ids) == [6] * len(ids)
        check_histories(tmp_path, ids)
        runs = Counter((w, s) for w, s, _, _ in step_runs(tmp_path) if w in ids)
        assert {step: runs[step] for step in done_before} == dict.fromkeys(done_before, 1)
        # the steps that were running when it died ran again, in the survivor
        assert {runs[(w, 1)] for w in stepping} == {2}
