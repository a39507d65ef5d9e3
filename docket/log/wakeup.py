"""Wake-ups between the processes sharing one embedded log.

A process that commits to the SQLite log cannot make another process's reader return:
SQLite has no notifications, so readers would only notice by polling ``data_version``
every few milliseconds. Each `EmbeddedLog` therefore owns a named pipe (FIFO) in
``<data dir>/wakeups/``; after every commit it writes a byte to each peer's pipe, and the
peer's event loop, which watches its own pipe, wakes its waiting readers at once.

Named pipes, not sockets: they need no address-length limit (a deep data directory is
fine) and work on every POSIX system. A wake-up is a hint; losing one costs latency, never
data, because readers still poll as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

PEERS_REFRESH_S = 0.5  # how stale the list of peers may be: a newcomer polls meanwhile


class Wakeups:
    """This process's pipe (to be woken) and its peers' pipes (to wake them)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir) / "wakeups"
        self._peers: dict[str, int] = {}  # pipe name -> fd open for writing
        self._listed_at = -1.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_wake: Callable[[], None] | None = None
        self._reader = -1
        self._keepalive = -1
        self.name = ""
        self._pid = os.getpid()  # a forked child must not take its parent's pipe away
        if not hasattr(os, "mkfifo"):  # no named pipes here: readers poll
            return
        try:
            self.directory.mkdir(exist_ok=True)
            self.name = f"{os.getpid()}-{os.urandom(4).hex()}"
            # Made under a temporary name and opened before it is renamed, so a peer never
            # sees a pipe without a reader (which it takes for a dead process's).
            making = self.directory / f".{self.name}"
            os.mkfifo(making)  # 0666 less the umask, like the database's files
            self._reader = os.open(making, os.O_RDONLY | os.O_NONBLOCK)
            # Our own writer end keeps the pipe from reading as end-of-file forever once
            # every peer has closed theirs.
            self._keepalive = os.open(making, os.O_WRONLY | os.O_NONBLOCK)
            os.rename(making, self.directory / self.name)
        except OSError:  # a read-only or odd file system: readers poll
            self.close()

    def watch(self, on_wake: Callable[[], None]) -> None:
        """Call ``on_wake`` from the running loop whenever a peer commits."""
        if self._reader < 0 or os.getpid() != self._pid:
            return
        self._on_wake = on_wake
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._reader)
        self._loop = loop
        loop.add_reader(self._reader, self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._reader, 4096):
                pass
        if self._on_wake is not None:
            self._on_wake()

    def notify(self) -> None:
        """Wake every peer; never blocks (a full pipe already holds a wake-up)."""
        if self._reader < 0:
            return
        now = time.monotonic()
        if now - self._listed_at > PEERS_REFRESH_S:
            self._listed_at = now
            self._refresh()
        for name, fd in list(self._peers.items()):
            try:
                os.write(fd, b"\0")
            except BlockingIOError:
                pass
            except OSError:  # its reader is gone: the process died or closed its log
                self._forget(name)

    def _refresh(self) -> None:
        try:
            names = {n for n in os.listdir(self.directory) if not n.startswith(".")}
        except OSError:
            return
        names.discard(self.name)
        for gone in set(self._peers) - names:
            self._forget(gone)
        for name in names - set(self._peers):
            path = self.directory / name
            try:
                self._peers[name] = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody reads it: left by a killed process
                    with contextlib.suppress(OSError):
                        path.unlink()

    def _forget(self, name: str) -> None:
        fd = self._peers.pop(name, -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for name in list(self._peers):
            self._forget(name)
        if self._loop is not None and not self._loop.is_closed() and self._reader >= 0:
            self._loop.remove_reader(self._reader)
        self._loop = None
        if self.name and os.getpid() == self._pid:
            for path in (self.directory / self.name, self.directory / f".{self.name}"):
                with contextlib.suppress(OSError):
                    path.unlink()
        for fd in (self._reader, self._keepalive):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._reader = self._keepalive = -1
