"""Another life of a session id is not damage.

An operation that reads a session while another process deletes it and creates it again
(same id, a new log) can meet the new life half-way: a listing of the old directory
emptied under it, a segment the old life had and the new one hasn't, a sealed head the
new log doesn't reach. Each looks like damage, but the session it worked on is simply
gone. So wherever such an operation meets ``CorruptLogError``, it asks whether the id
still names the life it started with (``Backend.incarnation``, taken at the start); if
not, the truth is ``SessionNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from ..backends._base import Backend
from ..core._errors import CorruptLogError, SessionNotFoundError

_T = TypeVar("_T")


def life_of(backend: Backend, sid: str) -> object:
    """The session's life now (``SessionNotFoundError`` if it is gone)."""
    return backend.incarnation(sid)


def another_life(backend: Backend, sid: str, life: object) -> bool:
    """Whether the id no longer names the life ``life`` (deleted, maybe created again)."""
    try:
        return bool(backend.incarnation(sid) != life)
    except SessionNotFoundError:
        return True


def another_life_is_gone(backend: Backend, sid: str, life: object, items: Iterable[_T]) -> Iterator[_T]:
    """``items`` (a read of the session), with damage met while the id stopped naming
    ``life`` raised as ``SessionNotFoundError`` (``follow``: "no segment files", "segment
    vanished" were raised for a session deleted and created again under it)."""
    try:
        yield from items
    except CorruptLogError:
        if another_life(backend, sid, life):
            raise SessionNotFoundError(sid) from None
        raise
