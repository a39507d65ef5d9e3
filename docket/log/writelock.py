"""The embedded log's write queue (``log.lock``), and a watch that names who blocks it.

Writers of every process queue on a POSIX record lock on ``log.lock`` before taking
SQLite's: the kernel hands it over the moment it is released, where SQLite's busy handler
sleeps 1, 2, 5, 10 ms... between tries, which would make every contended append between
processes milliseconds late. A record lock (``lockf``), not ``flock``: it belongs to this
process alone, so a child forked by a step does not keep it held after this process is
killed. SQLite's lock still does the excluding; this one only orders the queue.

SQLite has one writer at a time. A process stopped inside a transaction (SIGSTOP, Ctrl-Z,
a debugger) keeps both locks, and every writer of every process on the data directory
waits for it: nothing can take a lock from a live process. Waiting is right (its batch
may be half written); waiting in silence is not, so a thread looks in once a second and
logs the holder's pid when a wait has gone on for `WARN_AFTER_S`.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger("docket")

WARN_AFTER_S = 5.0
CHECK_EVERY_S = 1.0


class WriteLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT)  # the database's permissions

    def acquire(self) -> None:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        started = time.monotonic()
        _watch.waiting(self, started)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        finally:
            warned = _watch.done(self)
        if warned:
            log.warning(
                "the write lock of %s is free again after %.1f s",
                self.path.with_suffix(".sqlite3"),
                time.monotonic() - started,
            )

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)

    def holder(self) -> int | None:
        """The pid holding the lock (F_GETLK), or None if it is free or cannot be told."""
        # struct flock on Linux (x86_64 and aarch64 alike): l_type, l_whence (short),
        # l_start, l_len (off_t), l_pid (int), padded to 32 bytes
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(self.fd, fcntl.F_GETLK, query)
            kind, _, _, _, pid = struct.unpack("hhqqi4x", answer)
        except (OSError, struct.error):
            return None
        return None if kind == fcntl.F_UNLCK else pid


class _Watch:
    """The writers of this process that wait for the lock now, looked at once a second."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start empty; also in a forked child, which has none of the parent's threads."""
        self._guard = threading.Lock()
        self._waiting: dict[WriteLock, tuple[float, bool]] = {}  # lock -> (since, warned)
        self._thread: threading.Thread | None = None

    def waiting(self, lock: WriteLock, since: float) -> None:
        with self._guard:
            self._waiting[lock] = (since, False)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="docket-lock-watch")
                self._thread.daemon = True
                self._thread.start()

    def done(self, lock: WriteLock) -> bool:
        """Stop watching ``lock``; whether a warning went out while it waited."""
        with self._guard:
            _, warned = self._waiting.pop(lock, (0.0, False))
        return warned

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            with self._guard:  # holder() here: a lock no longer waited for may be closed
                due = [
                    (lock, now - since, lock.holder())
                    for lock, (since, warned) in self._waiting.items()
                    if not warned and now - since >= WARN_AFTER_S
                ]
                for lock, _, _ in due:
                    self._waiting[lock] = (self._waiting[lock][0], True)
            for lock, waited, pid in due:
                log.warning(
                    "every write to %s has waited %.0f s for %s, which holds its write lock: "
                    "is it stopped (SIGSTOP, Ctrl-Z, a debugger)? Writers on this data "
                    "directory wait until it runs again (kill -CONT %s) or ends (kill -9: a "
                    "stopped process does not act on SIGTERM)",
                    lock.path.with_suffix(".sqlite3"),
                    waited,
                    f"process {pid}" if pid else "another process",
                    pid or "<pid>",
                )


_watch = _Watch()
os.register_at_fork(after_in_child=_watch.reset)
