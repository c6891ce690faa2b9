"""Torn tails the way a writer's death leaves them (file backend).

A writer killed in the middle of its write leaves the first bytes of its records at the
end of the log, and whatever the store's own bookkeeping says about an unfinished
append. Writing bytes into a segment from outside would skip the second half, and a
live store may rightly trust its bookkeeping over such bytes, so tests make torn tails
with a real writer that dies after ``cut`` bytes of its write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import eventlog
from eventlog import EventLog


def die_mid_write(root: Path, append: Callable[[EventLog], object], cut: int) -> None:
    """In a forked process: ``append(store)`` and die (``os._exit``, no cleanup, as after
    SIGKILL) once ``cut`` bytes of its write have reached the file."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            real_write = os.write

            def write(fd: int, data: Any) -> int:
                # The log's write, not the session catalog's mark that comes before it.
                if cut < len(data) and ".catalog" not in os.readlink(f"/proc/self/fd/{fd}"):
                    real_write(fd, bytes(data)[:cut])
                    os._exit(0)
                return real_write(fd, data)

            os.write = write
            with eventlog.open(root) as log:
                append(log)
        finally:
            os._exit(3)  # the write was never cut: the caller asked for a cut past its end
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the dying writer: {status}"
