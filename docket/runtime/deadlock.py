"""Stop workflow code that runs too long without awaiting anything.

Workflow code runs on the processor's event loop, between two of its awaits, in one go. A
loop that never awaits (``while True:`` around a condition that is already true, a long
computation, a blocking call) would hold the loop, and with it every other workflow of the
process, for ever. So a watchdog thread looks, four times a second, at how long the
current run of workflow code has taken; past the timeout it signals the main thread, and
the handler raises `DeadlockError` inside that code, at whatever line it is on (again every
half second, should the code catch it). The processor stops that execution as it stops
one whose code fails inside Docket: nothing of the batch is recorded for it, its commands
wait, and an engine with fixed code resumes it (`streams/execution.py`). Temporal's SDKs
stop workflow code after two seconds too.

The signal is a real-time one (``SIGRTMIN + 4``; ``SIGVTALRM`` where there are none), not
``SIGALRM``, which pytest-timeout and others use. Signal handlers run only in the main
thread, so an engine run from another thread goes without the check (and says so), as it
does when something else has a handler for that signal. ``DOCKET_DEADLOCK_TIMEOUT=0``
turns it off. Marking a run costs about a microsecond; the watchdog sleeps otherwise.

What it cannot stop: code that catches every exception inside its own loop, and a call
into C that holds the GIL (the watchdog cannot run then). Replaying an uncached run's
history is not timed (it replays code that ran before), only the new activation is; nor
is a side effect's function, which may do I/O (`suspended`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from docket.errors import DeadlockError
from docket.runtime.location import frame_location

log = logging.getLogger("docket")

DEFAULT_TIMEOUT_S = 2.0
REPEAT_S = 0.5
CHECK_S = 0.25
SIGNAL = signal.SIGRTMIN + 4 if hasattr(signal, "SIGRTMIN") else signal.SIGVTALRM


class DeadlockGuard:
    """One per processor: ``with guard.running(workflow_id):`` around each synchronous run
    of its code.

    The handler and the watchdog are the process's, shared by every processor in it: they
    all run on the main thread's loop, so only one runs workflow code at a time."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._armed = timeout_s > 0 and _install()

    def running(
        self, workflow_id: str, *, query: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Around a run of ``workflow_id``'s code; with ``query``, around a query or an update
        validator, where the error is the handler's failure, not the run's."""
        if not self._armed:
            return _UNGUARDED
        return _Run(workflow_id, self.timeout_s, query)


class _Run:
    __slots__ = ("workflow_id", "timeout_s", "query")

    def __init__(self, workflow_id: str, timeout_s: float, query: bool) -> None:
        self.workflow_id, self.timeout_s, self.query = workflow_id, timeout_s, query

    def __enter__(self) -> None:
        global _running, _raised
        _raised = None
        _running = (next(_runs), self.workflow_id, self.timeout_s, time.monotonic())

    def __exit__(self, *exc: object) -> None:
        global _running
        _running = None  # first: a signal handled from here on raises nothing
        if _raised is not None and exc[0] is None and not self.query:
            raise _raised  # the code caught it and went on: its run failed all the same


_UNGUARDED = contextlib.nullcontext()


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Around a call that is not workflow code, though it runs within an activation (a side
    effect): it may take its time, and the run's clock starts again after it."""
    global _running
    running, _running = _running, None
    try:
        yield
    finally:
        if running is not None:
            _running = (next(_runs), running[1], running[2], time.monotonic())


_runs = itertools.count()
# (run number, workflow, its timeout, when it began): the run of workflow code now, if any
_running: tuple[int, str, float, float] | None = None
_signalled: int | None = None  # the run the watchdog signalled about
_raised: DeadlockError | None = None
_watchdog: threading.Thread | None = None


def _install() -> bool:
    global _watchdog
    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "the engine runs outside the main thread: workflow code that never awaits "
            "cannot be stopped there (no deadlock detection)"
        )
        return False
    previous = signal.getsignal(SIGNAL)
    if previous is not _on_signal:
        if previous not in (signal.SIG_DFL, signal.SIG_IGN, None):
            log.warning(
                "signal %d already has a handler: Docket leaves it, and does without "
                "deadlock detection (set DOCKET_DEADLOCK_TIMEOUT=0 to silence this)",
                SIGNAL,
            )
            return False
        signal.signal(SIGNAL, _on_signal)
    if _watchdog is None or not _watchdog.is_alive():  # not yet, or a forked child
        main = threading.main_thread().ident
        assert main is not None
        _watchdog = threading.Thread(
            target=_watch, args=(main,), name="docket-deadlock-watchdog", daemon=True
        )
        _watchdog.start()
    return True


def _watch(main: int) -> None:
    global _signalled
    last: tuple[int, float] | None = None  # (run, when it was last signalled)
    while True:
        time.sleep(CHECK_S)
        running = _running
        if running is None:
            continue
        run, _, timeout_s, began = running
        now = time.monotonic()
        if now - began < timeout_s:
            continue
        if last is not None and last[0] == run and now - last[1] < REPEAT_S:
            continue
        last, _signalled = (run, now), run
        signal.pthread_kill(main, SIGNAL)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _raised
    running = _running
    if running is None or running[0] != _signalled:  # that run ended as it was signalled
        return
    _, workflow_id, timeout_s, began = running
    _raised = DeadlockError(
        f"workflow_id={workflow_id!r}: its code ran for {time.monotonic() - began:.1f} s "
        f"(more than {timeout_s:g} s) without awaiting anything, at {frame_location(frame)}. "
        "Workflow code must not block or loop without an await (wait with ctx.sleep or "
        "ctx.wait_until, and compute at length in a step); the execution is stopped until "
        "an engine with fixed code resumes it"
    )
    raise _raised


__all__ = ["DEFAULT_TIMEOUT_S", "SIGNAL", "DeadlockGuard", "suspended"]
