"""Where workflow code asked for something: the file:line named in nondeterminism errors."""

from __future__ import annotations

import asyncio
import os
import sys
from types import FrameType

_DOCKET_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__))
# an editable install leaves docket.streams at the repository root
_STREAMS_DIR = os.path.join(os.path.dirname(_DOCKET_DIR), "streams") + os.sep
_OURS = (_DOCKET_DIR, _ASYNCIO_DIR, _STREAMS_DIR)


def user_location() -> str:
    """file:line of the nearest caller outside Docket and asyncio.

    ctx methods call this when they are called (not when their coroutine first runs), so a
    step handed to asyncio.gather or create_task still names the user's line.
    """
    return frame_location(sys._getframe(1))


def frame_location(frame: FrameType | None) -> str:
    """file:line of ``frame`` or, if it is in Docket or asyncio, of its nearest caller
    outside them."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_OURS):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"
