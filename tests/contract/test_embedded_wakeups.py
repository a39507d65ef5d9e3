"""Wake-ups between processes sharing an embedded log (docket/log/wakeup.py), and the file
lock its writers queue on.

Readers also poll, so a broken wake-up would only make things late; these tests make the
polling fallback too slow to hide one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import docket.log.embedded as embedded
import docket.log.writelock as writelock
from docket.errors import ConfigurationError
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog
from docket.log.wakeup import Wakeups

TOPIC = "docket.test.commands"

APPEND_ONE = textwrap.dedent(
    """
    import sys
    from docket.log.base import OutRecord
    from docket.log.embedded import EmbeddedLog
    log = EmbeddedLog(sys.argv[1], namespace="test", partitions=1)
    log.append([OutRecord(sys.argv[2], 0, "k", b"from another process")])
    log.close()
    """
)


def pipes(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


async def woken(wakeups: Wakeups, seconds: float) -> bool:
    """Whether ``wakeups`` fires within ``seconds``."""
    fired = asyncio.Event()
    wakeups.watch(fired.set)
    try:
        await asyncio.wait_for(fired.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def test_a_notify_wakes_every_peer_but_not_itself(tmp_path: Path) -> None:
    first, second, third = Wakeups(tmp_path), Wakeups(tmp_path), Wakeups(tmp_path)
    try:
        assert pipes(first.directory) == {first.name, second.name, third.name}
        assert not await woken(second, 0.2)  # nobody notified: no wake-up
        first.notify()
        assert await woken(second, 10)
        assert await woken(third, 10)
        assert not await woken(first, 0.2)
    finally:
        for wakeups in (first, second, third):
            wakeups.close()
    assert pipes(first.directory) == set()


async def test_a_pipe_left_by_a_killed_process_is_removed(tmp_path: Path) -> None:
    code = "import sys, time; from docket.log.wakeup import Wakeups; Wakeups(sys.argv[1]); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    directory = tmp_path / "wakeups"
    deadline = time.monotonic() + 30
    while not pipes(directory) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    left = pipes(directory)
    assert len(left) == 1
    proc.kill()
    proc.wait()
    survivor = Wakeups(tmp_path)
    try:
        survivor.notify()  # lists the peers: the dead one's pipe has no reader
        assert pipes(directory) == {survivor.name}
    finally:
        survivor.close()


async def test_an_append_in_another_process_wakes_a_waiting_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "POLL_INTERVAL", 120.0)  # polling alone would take minutes
    log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
    try:
        token = log.change_token()
        waiting = asyncio.ensure_future(log.wait_for_append(token, 120.0))
        await asyncio.sleep(0)  # the reader watches its pipe from here on
        started = time.monotonic()
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", APPEND_ONE, str(tmp_path), TOPIC
        )
        assert await writer.wait() == 0
        await asyncio.wait_for(waiting, 60)
        assert time.monotonic() - started < 60, "the reader waited for its poll, not the wake-up"
        assert [r.value for r in log.poll(TOPIC, 0, 0, 10)] == [b"from another process"]
    finally:
        log.close()


HOLD_THE_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(os.path.join(sys.argv[1], "log.lock"), os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
    """
)

# A writer that forks a long-lived child (as a step starting a fork-based process pool
# would) and is killed mid-transaction: the child inherits its open files.
FORK_THEN_HOLD = textwrap.dedent(
    """
    import os, sys, time
    from docket.log.embedded import EmbeddedLog
    log = EmbeddedLog(sys.argv[1], namespace="test", partitions=1)
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    with log._transaction():
        print(child, flush=True)
        time.sleep(120)
    """
)

APPEND_IN_A_PROCESS = textwrap.dedent(
    """
    import sys
    from docket.log.base import OutRecord
    from docket.log.embedded import EmbeddedLog
    log = EmbeddedLog(sys.argv[1], namespace="test", partitions=1)
    log.append([OutRecord("docket.test.commands", 0, "k", b"v")])
    print("appended")
    """
)


def test_an_append_waits_for_the_writers_lock(tmp_path: Path) -> None:
    """Writers queue on ``log.lock`` before SQLite's own lock (see _Txn)."""
    EmbeddedLog(tmp_path, namespace="test", partitions=1).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    appended = threading.Event()

    def append() -> None:
        log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
        log.append([OutRecord(TOPIC, 0, "k", b"after the lock")])
        appended.set()
        log.close()

    writer = threading.Thread(target=append)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        writer.start()
        assert not appended.wait(0.5), "the append did not wait for the lock"
        holder.communicate("\n", timeout=30)  # the holder lets go
        assert appended.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if writer.is_alive():
            writer.join(30)
    log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
    try:
        assert [r.value for r in log.read(TOPIC, 0, 0, 10)] == [b"after the lock"]
    finally:
        log.close()


STOPPED_IN_A_TRANSACTION = textwrap.dedent(
    """
    import sys
    from docket.log.embedded import EmbeddedLog
    log = EmbeddedLog(sys.argv[1], namespace="test", partitions=1)
    with log._transaction():
        print("in", flush=True)
        sys.stdin.readline()
    """
)


def test_writers_behind_a_stopped_writer_log_its_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A writer stopped (SIGSTOP) inside its transaction holds every other writer up: they
    wait, and say which process to look at, and go on once it runs again."""
    monkeypatch.setattr(writelock, "WARN_AFTER_S", 0.3)
    monkeypatch.setattr(writelock, "CHECK_EVERY_S", 0.1)
    holder = subprocess.Popen([sys.executable, "-c", STOPPED_IN_A_TRANSACTION, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    appended = threading.Event()

    def append() -> None:
        log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
        log.append([OutRecord(TOPIC, 0, "k", b"v")])
        appended.set()
        log.close()

    writer = threading.Thread(target=append)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
        holder.send_signal(signal.SIGSTOP)
        with caplog.at_level("WARNING", logger="docket"):
            writer.start()
            deadline = time.monotonic() + 30
            while f"for process {holder.pid}, which holds its write lock" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
            assert not appended.is_set()
            holder.send_signal(signal.SIGCONT)
            holder.communicate("\n", timeout=30)  # its transaction ends
            assert appended.wait(30)
            writer.join(30)
        assert "is free again after" in caplog.text
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait()
        if writer.is_alive():
            writer.join(30)
    log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
    try:
        assert [r.value for r in log.read(TOPIC, 0, 0, 10)] == [b"v"]
    finally:
        log.close()


def test_a_killed_writers_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """The kernel drops a killed writer's lock even while a child it forked still has the
    lock file open (a flock would stay held by the child, and every writer wait forever)."""
    holder = subprocess.Popen([sys.executable, "-c", FORK_THEN_HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        holder.kill()  # kill -9, mid-transaction
        holder.wait()
        done = subprocess.run([sys.executable, "-c", APPEND_IN_A_PROCESS, str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == "appended", done.stderr
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if holder.stdout is not None:
            holder.stdout.close()  # the child had it open too: not read to its end


def test_a_log_that_fails_to_open_leaves_no_file_open(tmp_path: Path) -> None:
    EmbeddedLog(tmp_path, namespace="test", partitions=1).close()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(ConfigurationError, match="namespace 'other' does not exist"):
            EmbeddedLog(tmp_path, namespace="other", partitions=1, create=False)
    assert len(os.listdir("/proc/self/fd")) == before
    assert pipes(tmp_path / "wakeups") == set()
    log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
    log.close()
    log.close()  # closing twice is harmless
