"""``verify``'s check of the log's end against the head the backend recorded apart from it.

The chain alone can't tell a log cut at a record boundary from one that ended there: every
record left still follows the one before it. A backend that records its head elsewhere
too (``Backend.recorded_head``: the file store's lock page) lets ``verify`` report a log
that ends before that head, or holds another record at its seq. The head is read before
the log, so a writer appending meanwhile only moves the log's end past it; and a session
deleted and created again meanwhile (another life) is not compared at all.
"""

from __future__ import annotations

from ..backends._base import Backend
from ..core._codec import Head
from ..core._errors import CorruptLogError, SessionNotFoundError


def recorded_before(backend: Backend, sid: str) -> tuple[Head | None, object]:
    """The recorded head and the session's life, taken before the log is read."""
    try:
        return backend.recorded_head(sid), backend.incarnation(sid)
    except (SessionNotFoundError, CorruptLogError):  # gone, or nothing recorded to compare
        return None, None


def recorded_problems(backend: Backend, sid: str, recorded: tuple[Head | None, object],
                      head: Head) -> list[str]:
    """What is wrong with a log that ends at ``head``, given the head recorded before."""
    wanted, life = recorded
    if wanted is None:
        return []
    try:
        if backend.incarnation(sid) != life:
            return []  # another life of the id: its log is not the one the head was for
    except SessionNotFoundError:
        return []
    if wanted.seq > head.seq:
        return [f"session {sid!r}: the log ends at seq {head.seq}, before the head the store "
                f"recorded (seq {wanted.seq}): acknowledged records are missing"]
    if wanted.seq == head.seq and wanted.digest != head.digest:
        return [f"session {sid!r}: the log's last record (seq {head.seq}) is another than the "
                "one the store recorded there: its last records were replaced"]
    return []
