"""The head a file store recorded for a session in its lock page, for ``verify``.

The digest chain proves each record follows the one before it, but not that the log
goes on as far as it went: records cut from the end (or a whole active segment
removed) leave a chain that checks. Every appender publishes the head it wrote in the
session's lock page (see ``SHARED_BYTES`` in the backend), so a published page that
names a seq past the end of the log, or another digest at the log's last seq, means
acknowledged records are missing or were replaced.
"""

from __future__ import annotations

import os
import struct

from ...core._codec import Head
from ._dirs import Dirs

PAGE = struct.Struct("=4Q16s")
"""The lock page's first 48 bytes: generation, active segment, its size, last seq, last h."""


def page_head(fd: int) -> Head | None:
    """The head published in the page of the lock file open as ``fd``, or None if nothing
    is published (an odd generation: a lock holder other than an appender, or one that
    died mid-write, left it to be read from the files; 0: never published)."""
    data = os.pread(fd, PAGE.size, 0)
    if len(data) < PAGE.size:
        return None
    generation, _first, _size, seq, digest = PAGE.unpack(data)
    if generation & 1 or not generation:
        return None
    return Head(seq, digest.hex())


def recorded_head(dirs: Dirs, session_id: str) -> Head | None:
    """``FileBackend.recorded_head``: the head published in the session's lock page."""
    return dirs.read_lock_file(session_id, page_head)
