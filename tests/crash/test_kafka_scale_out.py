"""Scale-out on Kafka with real processes: two engines share the partitions; ``kill -9``
one and its in-flight workflows complete on the other; a third joins and the partitions
rebalance. Each engine has its own data directory (its own machine, as far as it knows):
the state of a partition that moves is rebuilt from the history topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from app_under_test import app, twenty_steps

import docket
from docket.codec.records import EVENTS
from docket.log.kafka import KafkaLog
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from tests.kafka_broker import Broker

HERE = Path(__file__).resolve().parent
WORKFLOWS, STEPS = 6, 20
SUM_OF_SQUARES = sum(i * i for i in range(1, STEPS + 1))


def kafka_env(broker: Broker, step_log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    env.update(
        DOCKET_BOOTSTRAP_SERVERS=broker.bootstrap,
        DOCKET_KAFKA_SESSION_TIMEOUT_MS="1000",
        CRASH_STEP_LOG=str(step_log),
        PYTHONUNBUFFERED="1",
    )
    return env


def spawn(tmp: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = tmp / f"{name}.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "app_under_test.py"), str(tmp / name)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while b"READY" not in out.read_bytes():
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, (
            f"engine {name} not ready: {out.read_text(errors='replace')}"
        )
        time.sleep(0.02)
    return proc


def step_runs(step_log: Path) -> int:
    return len(step_log.read_text().splitlines()) if step_log.exists() else 0


async def test_kill9_one_of_two_engines_then_a_third_joins(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    step_log = tmp_path / "steps.log"
    env = kafka_env(broker, step_log)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first, second = spawn(tmp_path, "a", env), spawn(tmp_path, "b", env)
        procs += [first, second]
        settings = docket.Settings(
            data_dir=tmp_path / "client",
            bootstrap_servers=broker.bootstrap,
            kafka_config={"session.timeout.ms": "1000"},
        )
        async with docket.Engine(app, settings=settings, processor=False, worker=False) as client:
            handles = [
                await client.client.start(twenty_steps, STEPS, workflow_id=f"wf-{i}")
                for i in range(WORKFLOWS)
            ]
            while step_runs(step_log) < WORKFLOWS * STEPS // 4:
                await asyncio.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            before_kill = step_runs(step_log)
            assert before_kill < WORKFLOWS * STEPS, "the kill came after everything had run"
            assert [await h.result(timeout=60) for h in handles] == [SUM_OF_SQUARES] * WORKFLOWS

            third = spawn(tmp_path, "c", env)  # joins: the partitions are shared again
            procs.append(third)
            more = [
                await client.client.start(twenty_steps, 3, workflow_id=f"later-{i}")
                for i in range(WORKFLOWS)
            ]
            assert [await h.result(timeout=60) for h in more] == [14] * WORKFLOWS
        runs = step_runs(step_log)
        # at least once: every step ran; only steps in flight at the kill (one per workflow)
        # ran again
        assert (
            WORKFLOWS * STEPS + WORKFLOWS * 3
            <= runs
            <= WORKFLOWS * STEPS + WORKFLOWS * 3 + WORKFLOWS
        )
        # each history, deduplicated by event id as every reader does, has ids 1..n and
        # no event recorded twice with different content
        log = KafkaLog(broker.bootstrap, namespace="default", partitions=4)
        try:
            history = Topics("default").history
            for i in range(WORKFLOWS):
                wid = f"wf-{i}"
                values, offset = [], 0  # a read returns what is at hand: read to the end
                while records := log.read(history, partition_of(wid, 4), offset, 100_000):
                    values += [r.value for r in records if r.key == wid]
                    offset = records[-1].offset + 1
                events: dict[int, bytes] = {}
                for value in values:
                    event = EVENTS.decode(value)
                    previous = events.setdefault(event["event_id"], value)
                    kind = event["body"]
                    assert EVENTS.decode(previous)["body"] == kind, (
                        f"{wid}: event {event['event_id']} differs"
                    )
                ids = sorted(events)
                assert ids == list(range(1, len(ids) + 1)), f"{wid}: ids {ids}"
                kinds = Counter(EVENTS.decode(v)["body"][0] for v in events.values())
                assert kinds["StepCompleted"] == STEPS and kinds["WorkflowCompleted"] == 1
        finally:
            log.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        broker.stop()
