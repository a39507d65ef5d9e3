"""The `docket` CLI as a user runs it: real processes on one data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DOCKET = [sys.executable, "-m", "docket.cli"]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    env["DOCKET_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def docket_cli(data_dir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DOCKET, *args], env=_env(data_dir), capture_output=True, text=True, timeout=timeout)


def _spawn(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*DOCKET, *args], env=_env(data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    return out


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = _spawn(tmp_path, "run", "-A", "cli_app:app")
    _until(lambda: bool(_processor_owners(tmp_path)), "the engine holds its partitions")
    yield process
    if process.poll() is None:
        _stop(process)


def test_start_wait_describe_history_list_replay(tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    started = docket_cli(tmp_path, "workflow", "start", "greet", "--args", '["cli"]', "--id", "g-1", "--wait", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["result"] == "HELLO CLI!"

    described = json.loads(docket_cli(tmp_path, "workflow", "describe", "g-1", "--json").stdout)
    assert (described["status"], described["workflow_type"]) == ("completed", "greet")

    history = docket_cli(tmp_path, "workflow", "history", "g-1", "--json").stdout.splitlines()
    assert [json.loads(line)["body"][0] for line in history] == [
        "WorkflowStarted", "StepScheduled", "StepCompleted", "WorkflowCompleted"]

    listed = [json.loads(line) for line in docket_cli(tmp_path, "workflow", "list", "--json").stdout.splitlines()]
    assert [d["workflow_id"] for d in listed] == ["g-1"]

    result = docket_cli(tmp_path, "workflow", "result", "g-1")
    assert result.stdout.strip() == "HELLO CLI!"

    replayed = docket_cli(tmp_path, "workflow", "replay", "-A", "cli_app:app")
    assert replayed.returncode == 0 and "1 of 1 histories replayed cleanly" in replayed.stdout


def test_signal_and_query_from_the_command_line(tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    assert docket_cli(tmp_path, "workflow", "start", "Counter", "--id", "c-1").returncode == 0
    for amount in ("2", "3"):
        sent = docket_cli(tmp_path, "workflow", "signal", "c-1", "add", "--args", f"[{amount}]")
        assert sent.returncode == 0, sent.stderr
    assert docket_cli(tmp_path, "workflow", "query", "c-1", "value").stdout.strip() == "5"
    refused = docket_cli(tmp_path, "workflow", "signal", "c-1", "nope")
    assert refused.returncode == 1 and "has no signal 'nope'" in refused.stderr
    updated = docket_cli(tmp_path, "workflow", "update", "c-1", "set_to", "--args", "[7]", "--update-id", "u1")
    assert updated.returncode == 0 and updated.stdout.strip() == "5", updated.stderr
    again = docket_cli(tmp_path, "workflow", "update", "c-1", "set_to", "--args", "[7]", "--update-id", "u1")
    assert again.stdout.strip() == "5"  # the same update ID is applied once
    rejected = docket_cli(tmp_path, "workflow", "update", "c-1", "set_to", "--args", "[-1]")
    assert rejected.returncode == 1 and "must not be negative" in rejected.stderr
    assert docket_cli(tmp_path, "workflow", "signal", "c-1", "finish").returncode == 0
    assert docket_cli(tmp_path, "workflow", "result", "c-1", "--timeout", "10").stdout.strip() == "7"


def test_complete_a_step_by_its_task_token(tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    token_file = tmp_path / "token.txt"
    started = docket_cli(tmp_path, "workflow", "start", "approve", "--args", json.dumps([str(token_file)]),
                         "--id", "a-1")
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 15
    while not token_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    token = token_file.read_text()
    done = docket_cli(tmp_path, "step", "complete", token, "--result", '"approved"')
    assert done.returncode == 0 and "step completed" in done.stdout, done.stderr
    assert docket_cli(tmp_path, "workflow", "result", "a-1", "--timeout", "10").stdout.strip() == "approved"
    again = docket_cli(tmp_path, "step", "complete", token)
    assert again.returncode == 1 and "is not pending" in again.stderr
    garbage = docket_cli(tmp_path, "step", "fail", "garbage", "--message", "no")
    assert garbage.returncode == 1 and "is not a Docket task token" in garbage.stderr


def test_sigterm_finishes_running_step_and_loses_nothing(tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    started = docket_cli(tmp_path, "workflow", "start", "wait_and_shout", "--args", "[1.0]", "--id", "w-1")
    assert started.returncode == 0, started.stderr
    time.sleep(0.4)  # the 1 s step is running now
    _stop(engine)
    restarted = _spawn(tmp_path, "run", "-A", "cli_app:app")
    try:
        result = docket_cli(tmp_path, "workflow", "result", "w-1", "--timeout", "20")
        assert result.stdout.strip() == "DONE!", result.stderr
        history = [json.loads(line)["body"][0]
                   for line in docket_cli(tmp_path, "workflow", "history", "w-1", "--json").stdout.splitlines()]
        assert history.count("StepCompleted") == 2 and "StepAttemptFailed" not in history
    finally:
        _stop(restarted)


def test_worker_in_another_process(tmp_path: Path) -> None:
    """The engine runs no worker; a `docket worker` process runs the steps."""
    processor = subprocess.Popen(
        [sys.executable, "-c", (
            "import asyncio, docket, cli_app\n"
            "async def main():\n"
            "    async with docket.Engine(cli_app.app, worker=False) as engine:\n"
            "        h = await engine.client.start(cli_app.greet, 'remote', workflow_id='r-1')\n"
            "        print(await h.result(timeout=30))\n"
            "asyncio.run(main())\n")],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = _spawn(tmp_path, "worker", "-A", "cli_app:app", "--queue", "default")
    try:
        out, err = processor.communicate(timeout=40)
        assert processor.returncode == 0, err
        assert out.strip() == "HELLO REMOTE!"
    finally:
        log = _stop(worker)
    assert "docket worker (default) running app 'cli'" in log


@pytest.mark.parametrize(("args", "code", "message"), [
    (["workflow", "start", "nope"], 1, "unknown workflow type 'nope'"),
    (["workflow", "start", "greet", "--args", "[oops"], 2, "not valid JSON"),
    (["workflow", "start", "greet", "--args", '{"a": 1}'], 2, "must be a JSON list"),
    (["workflow", "describe", "missing"], 1, "no workflow with workflow_id='missing'"),
    (["workflow", "replay", "-A", "no_such_module:app"], 1, "cannot import app module 'no_such_module'"),
    (["workflow", "replay", "-A", "cli_app:missing"], 1, "cli_app.missing is nothing, not a docket.App"),
    (["worker", "-A", "cli_app:app", "-q", "defualt"], 2,
     "'defualt': no step of app 'cli' runs there; its queues are default"),
    # keys the client keeps for its own options: a TypeError, or taken silently (a start on
    # a queue no worker serves, a signal-with-start)
    (["workflow", "start", "greet", "--args", '["x"]', "--kwargs", '{"workflow_id": "y"}'], 2,
     "'workflow_id' cannot be passed by keyword"),
    (["workflow", "start", "greet", "--kwargs", '{"name": "x", "task_queue": "nowhere"}'], 2,
     "'task_queue' cannot be passed by keyword"),
    (["workflow", "update", "c-1", "set_to", "--kwargs", '{"update_id": "u"}'], 2,
     "'update_id' cannot be passed by keyword"),
    (["workflow", "start", "greet", "--args", '["x"]', "--id", ""], 1, "workflow_id '' is invalid"),
    (["workflow", "history", "missing", "--run-id", "r-1"], 1, "no run 'r-1' of workflow_id='missing'"),
    (["worker", "-A", "cli_app:app", "--concurrency", "0"], 2, "'--concurrency': 0 is not in the range x>=1"),
    (["run", "-A", "cli_app:app", "--concurrency", "-3"], 2, "'--concurrency': -3 is not in the range x>=1"),
    # refused before the start is appended (it gave up at once, after the start went out)
    (["workflow", "start", "greet", "--args", '["x"]', "--id", "t-1", "--timeout", "-1"], 2,
     "'--timeout': -1.0 is not a number of seconds above 0"),
    (["workflow", "result", "t-1", "--timeout", "nan"], 2, "nan is not a number of seconds above 0"),
    (["workflow", "start", "greet", "--args", '["x"]', "--run-timeout", "inf"], 1,
     "run_timeout must be a positive, finite timedelta or number of seconds, got inf"),  # traceback
    (["workflow", "start", "greet", "--args", '["x"]', "--execution-timeout", "nan"], 1,
     "execution_timeout must be a positive, finite"),
    (["workflow", "replay", "-A", "cli_app:app", "--workflow-id", "nope"], 1,
     "no history of workflow_id='nope' in the log"),  # exited 0: "0 of 0 histories replayed cleanly"
])
def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, engine: subprocess.Popen[str], args: list[str],
                                           code: int, message: str) -> None:
    result = docket_cli(tmp_path, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_start_with_a_bad_timeout_starts_nothing(tmp_path: Path, engine: subprocess.Popen[str]) -> None:
    refused = docket_cli(tmp_path, "workflow", "start", "greet", "--args", '["x"]', "--id", "t-0",
                         "--timeout", "0")
    assert refused.returncode == 2
    started = docket_cli(tmp_path, "workflow", "start", "greet", "--args", '["y"]', "--id", "t-9")
    assert started.returncode == 0, started.stderr  # the engine took the next start: not t-0
    assert docket_cli(tmp_path, "workflow", "result", "t-9", "--timeout", "20").returncode == 0
    missing = docket_cli(tmp_path, "workflow", "describe", "t-0")
    assert missing.returncode == 1 and "no workflow with workflow_id='t-0'" in missing.stderr


def test_missing_data_directory(tmp_path: Path) -> None:
    result = docket_cli(tmp_path / "nowhere", "workflow", "list")
    assert result.returncode == 1
    assert "no Docket data at" in result.stderr and "Traceback" not in result.stderr


def _processor_owners(data_dir: Path) -> dict[int, str]:
    import sqlite3

    """Who holds each processor partition; empty until an engine has made the log's tables."""
    try:
        with sqlite3.connect(f"file:{data_dir / 'log.sqlite3'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT partition, owner FROM leases WHERE grp='docket.default.processor'")
            return dict(rows.fetchall())
    except sqlite3.OperationalError:  # no file yet, or the first engine is creating the tables
        return {}


def _until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_two_engines_share_the_partitions_and_one_takes_over_from_a_killed_one(tmp_path: Path) -> None:
    """Two `docket run`s on one data directory split the partitions; after `kill -9` of one,
    the other takes its partitions over and finishes its workflows, those in flight too."""
    import asyncio

    import docket

    first = _spawn(tmp_path, "run", "-A", "cli_app:app")
    _until(lambda: bool(_processor_owners(tmp_path)), "the first engine holds partitions")
    second = _spawn(tmp_path, "run", "-A", "cli_app:app")
    try:
        _until(lambda: len(set(_processor_owners(tmp_path).values())) == 2, "both engines hold partitions")
        owners = _processor_owners(tmp_path)
        assert sorted(owners) == [0, 1, 2, 3]
        assert {o.split(":")[1] for o in owners.values()} == {str(first.pid), str(second.pid)}

        async def run() -> None:
            client = docket.Client.connect(data_dir=tmp_path)
            try:
                names = [f"n{i}" for i in range(24)]  # spread over all four partitions
                handles = [await client.start("greet", n, workflow_id=f"split-{n}") for n in names]
                assert [await h.result(timeout=30) for h in handles] == [f"HELLO {n.upper()}!" for n in names]
                slow = [await client.start("wait_and_shout", 1.5, workflow_id=f"slow-{i}") for i in range(8)]
                await asyncio.sleep(0.5)  # their first steps are running on both engines
                first.kill()  # kill -9: no chance to release its leases
                assert [await h.result(timeout=40) for h in slow] == ["DONE!"] * 8
                after = [await client.start("greet", f"a{i}", workflow_id=f"after-{i}") for i in range(8)]
                assert [await h.result(timeout=30) for h in after] == [f"HELLO A{i}!" for i in range(8)]
            finally:
                await client.close()

        asyncio.run(run())
        taken_over = _processor_owners(tmp_path)
        assert sorted(taken_over) == [0, 1, 2, 3]
        assert {o.split(":")[1] for o in taken_over.values()} == {str(second.pid)}
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
        _stop(second)


def test_a_worker_joining_runs_no_step_that_runs_or_ran_elsewhere(tmp_path: Path) -> None:
    """A `docket worker` joins an engine whose worker is running steps of every task
    partition. The engine hands half of them over, but only once the steps it runs from
    them are reported and their task offsets committed: the newcomer, reading from the
    committed offset, would run them again (at the same time, or after they finished)."""
    import asyncio

    import docket

    engine = _spawn(tmp_path, "run", "-A", "cli_app:app")
    _until(lambda: bool(_processor_owners(tmp_path)), "the engine holds its partitions")
    joined = None
    try:
        async def run() -> None:
            nonlocal joined
            client = docket.Client.connect(data_dir=tmp_path)
            try:
                running = [await client.start("journal_step", str(tmp_path / f"running-{i}"), 2.5,
                                              workflow_id=f"running-{i}") for i in range(8)]
                # the steps of the last ones end about when the engine gives their partitions up
                ending = [await client.start("journal_step", str(tmp_path / f"ending-{i}"), 1.0 + i / 10,
                                             workflow_id=f"ending-{i}") for i in range(8)]
                await asyncio.sleep(0.5)  # every step has begun, in the engine
                joined = _spawn(tmp_path, "worker", "-A", "cli_app:app")
                for handle in running + ending:
                    await handle.result(timeout=40)
                await asyncio.sleep(2)  # the newcomer has taken its partitions, read their tasks
                after = [await client.start("journal_step", str(tmp_path / f"after-{i}"), 0.0,
                                            workflow_id=f"after-{i}") for i in range(8)]
                for handle in after:
                    await handle.result(timeout=40)
            finally:
                await client.close()

        asyncio.run(run())
    finally:
        engine_log = _stop(engine)
        joined_log = _stop(joined) if joined is not None else ""
    for journal in sorted(tmp_path.glob("running-*")) + sorted(tmp_path.glob("ending-*")):
        lines = journal.read_text().split()
        assert lines == ["begin", str(engine.pid), "end", str(engine.pid)], (journal.name, lines)
    assert "took partition" in joined_log, joined_log
    assert "gave up partition" in engine_log, engine_log
    ran_after = {(tmp_path / f"after-{i}").read_text().split()[1] for i in range(8)}
    assert ran_after == {str(engine.pid), str(joined.pid)}  # the work is shared from now on


def test_an_engine_paused_past_its_leases_hands_its_partitions_over_and_none_stops(tmp_path: Path) -> None:
    """SIGSTOP one of two engines for longer than the session timeout: the other takes its
    leases but cannot open the state stores it still holds. It must wait, not stop; once the
    paused one runs again it sees it lost the leases and lets go, and every workflow finishes."""
    import asyncio

    import docket

    paused = _spawn(tmp_path, "run", "-A", "cli_app:app")
    _until(lambda: bool(_processor_owners(tmp_path)), "the first engine holds partitions")
    other = _spawn(tmp_path, "run", "-A", "cli_app:app")
    try:
        _until(lambda: len(set(_processor_owners(tmp_path).values())) == 2, "both engines hold partitions")
        _pause_outside_a_write(paused, tmp_path)
        try:
            _until(lambda: {o.split(":")[1] for o in _processor_owners(tmp_path).values()} == {str(other.pid)},
                   "the other engine holds every lease", seconds=20)
            time.sleep(2)  # it has tried, and failed, to open the paused engine's stores
            assert other.poll() is None, other.communicate()[0]
        finally:
            paused.send_signal(signal.SIGCONT)

        async def run() -> None:
            client = docket.Client.connect(data_dir=tmp_path)
            try:
                names = [f"n{i}" for i in range(24)]  # all four partitions
                handles = [await client.start("greet", n, workflow_id=f"p-{n}") for n in names]
                assert [await h.result(timeout=40) for h in handles] == [f"HELLO {n.upper()}!" for n in names]
            finally:
                await client.close()

        asyncio.run(run())
        assert paused.poll() is None and other.poll() is None
    finally:
        out_paused = out_other = ""
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
            out_paused = _stop(paused)
        out_other = _stop(other)
    assert "to open its state: state for partition" in out_other, out_other
    assert f"is held by process {paused.pid}" in out_other, out_other
    assert "stopped with an error" not in out_paused + out_other


def _pause_outside_a_write(process: subprocess.Popen[str], data_dir: Path) -> None:
    """SIGSTOP ``process``, not while it holds the log's write lock: stopped inside an
    append it would hold up every writer, the other engine too (operations.md)."""
    from docket.log.writelock import WriteLock

    lock = WriteLock(data_dir / "log.lock")
    try:
        for _ in range(100):
            process.send_signal(signal.SIGSTOP)
            _wait_until_stopped(process.pid)
            if lock.holder() != process.pid:
                return
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        raise AssertionError("the engine held the write lock at every try")
    finally:
        lock.close()


def _wait_until_stopped(pid: int) -> None:
    """Until every thread of ``pid`` is stopped: one still running could take the lock
    after we looked."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:  # "tid (comm) S ...": the state follows the last ")"
                states.append(stat.read_text().rpartition(")")[2].split()[0])
            except OSError:
                continue  # a thread that ended meanwhile
        if states and all(state in "tT" for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop within 10 s of SIGSTOP")
