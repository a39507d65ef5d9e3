"""Named fault points for crash tests: ``DOCKET_FAULT=<name>`` makes the process exit at once
(as ``kill -9`` would, no cleanup) the first time it reaches that point.

``DOCKET_FAULT_AFTER=N`` lets N passes through before failing, to crash mid-run.
``DOCKET_FAULT_PAUSE_S=S`` makes every pass stop the process for S seconds instead (a slow
disk, say), to hold a race window open.
"""

from __future__ import annotations

import os
import time

_POINT = os.environ.get("DOCKET_FAULT", "")
_AFTER = int(os.environ.get("DOCKET_FAULT_AFTER", "0") or 0)
_PAUSE_S = float(os.environ.get("DOCKET_FAULT_PAUSE_S", "0") or 0)
_passes = 0

POINTS = (
    "after_append_before_writebatch",  # outputs and offsets are in the log, state is not
    "before_append",  # the batch was processed in memory only
    "after_writebatch",  # all durable, before the next poll
    "timer_after_fire_append",  # timer commands appended, timer store not updated
    "worker_after_step",  # step ran, its completion not yet appended
    "source_after_append",  # a signal source's commands and offsets appended, not noted in memory
    "growth_before_switch",  # a new generation is copied, the layout not yet switched
    "kafka_mid_transaction",  # a processor transaction's history records reached the broker, not the rest
    "kafka_before_commit",  # all of a processor transaction's records reached the broker, not its commit
)


def fault(point: str) -> None:
    global _passes
    if point != _POINT:
        return
    if _PAUSE_S:
        time.sleep(_PAUSE_S)
        return
    _passes += 1
    if _passes > _AFTER:
        os._exit(137)


def armed(point: str) -> bool:
    """Whether this process is set to fail at ``point`` (to set a fault point up only then)."""
    return point == _POINT
