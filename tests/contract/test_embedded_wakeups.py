"""Wake-ups between processes sharing an embedded log (docket/log/wakeup.py), and the file
lock its writers queue on.

Readers also poll, so a broken wake-up would only make things late; these tests make the
polling fallback too slow to hide one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import docket.log.embedded as embedded
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


def test_an_append_waits_for_the_writers_lock(tmp_path: Path) -> None:
    """Writers queue on ``log.lock`` before SQLite's own lock (see _Txn)."""
    opened, locked, appended = threading.Event(), threading.Event(), threading.Event()

    def append() -> None:
        log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
        opened.set()
        locked.wait()
        log.append([OutRecord(TOPIC, 0, "k", b"after the lock")])
        appended.set()
        log.close()

    writer = threading.Thread(target=append)
    writer.start()
    assert opened.wait(30)
    holder = os.open(tmp_path / "log.lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        locked.set()
        assert not appended.wait(0.5), "the append did not wait for the lock"
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert appended.wait(30)
    finally:
        locked.set()
        os.close(holder)
        writer.join(30)
    log = EmbeddedLog(tmp_path, namespace="test", partitions=1)
    try:
        assert [r.value for r in log.read(TOPIC, 0, 0, 10)] == [b"after the lock"]
    finally:
        log.close()
