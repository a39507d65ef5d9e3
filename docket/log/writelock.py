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
import weakref
from pathlib import Path

log = logging.getLogger("docket")

WARN_AFTER_S = 5.0
CHECK_EVERY_S = 1.0


class WriteLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT)  # the database's permissions
        self.waiting_since: float | None = None
        self.warned = False

    def acquire(self) -> None:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        self.warned = False
        self.waiting_since = started = time.monotonic()
        _watch(self)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        finally:
            self.waiting_since = None
        if self.warned:
            waited = time.monotonic() - started
            log.warning("the write lock of %s is free again after %.1f s", self.path, waited)

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)

    def holder(self) -> int | None:
        """The pid holding the lock (F_GETLK), or None if it is free or cannot be told."""
        # struct flock on Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(self.fd, fcntl.F_GETLK, query)
            kind, _, _, _, pid = struct.unpack("hhqqi", answer)
        except (OSError, struct.error):
            return None
        return None if kind == fcntl.F_UNLCK else pid


_locks: weakref.WeakSet[WriteLock] = weakref.WeakSet()
_watcher: threading.Thread | None = None
_guard = threading.Lock()


def _watch(lock: WriteLock) -> None:
    global _watcher
    _locks.add(lock)
    if _watcher is not None and _watcher.is_alive():
        return
    with _guard:
        if _watcher is None or not _watcher.is_alive():  # none yet, or this is a fork
            _watcher = threading.Thread(target=_run, name="docket-lock-watch", daemon=True)
            _watcher.start()


def _run() -> None:
    while True:
        time.sleep(CHECK_EVERY_S)
        now = time.monotonic()
        for lock in list(_locks):
            since = lock.waiting_since
            if since is None or lock.warned or now - since < WARN_AFTER_S:
                continue
            lock.warned = True
            pid = lock.holder()
            who = f"process {pid}" if pid else "another process"
            log.warning(
                "every write to %s has waited %.1f s for %s, which holds its write lock: is "
                "it stopped (SIGSTOP, Ctrl-Z, a debugger)? Writers on this data directory "
                "wait until it runs again (kill -CONT %s) or ends",
                lock.path.with_suffix(".sqlite3"),
                now - since,
                who,
                pid or "<pid>",
            )
