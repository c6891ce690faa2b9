"""``EventLog.follow``: events as any process appends them, in order, each once, for one
life of a session (the backend's ``wait`` blocks between reads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..backends._base import Backend
from ..core._errors import InvalidEventError, SessionNotFoundError
from ..core._records import Event
from ..core._validate import shown
from ._lives import another_life_is_gone
from ._reads import scan_events

FOREVER = 2**31
"""Seconds (68 years): a ``follow`` timeout this long or longer waits forever, as None does.
Longer ones overflowed the backends' waits (a lock's timeout, a Redis BLOCK in ms)."""


def follow_timeout(timeout: object) -> float | None:
    """A ``follow`` timeout checked: None for waiting forever."""
    if timeout is None:
        return None
    # ``not timeout >= 0`` refuses NaN too: it compares false with everything, so a NaN
    # deadline was never reached and the follower waited forever.
    if type(timeout) not in (int, float) or not timeout >= 0:  # type: ignore[operator]
        raise InvalidEventError(f"timeout must be a non-negative number or None, not "
                                f"{shown(timeout)}")
    if timeout >= FOREVER:  # type: ignore[operator]
        return None  # inf, 10**400: past what the backends' waits can count
    return timeout  # type: ignore[return-value]


def follow_start(backend: Backend, sid: str, after_seq: int | None) -> tuple[int, object]:
    """The seq to follow from and the session's life, taken together at the call: a
    follower follows one life of the id."""
    life = backend.incarnation(sid)
    return (backend.last_seq(sid) if after_seq is None else after_seq), life


def follow(backend: Backend, sid: str, seq: int, timeout: float | None, life: object) -> Iterator[Event]:
    # Damage met while the id stopped naming ``life`` is that life's end (see _lives).
    return another_life_is_gone(backend, sid, life, _follow_life(backend, sid, seq, timeout, life))


def _follow_life(backend: Backend, sid: str, seq: int, timeout: float | None,
                 life: object) -> Iterator[Event]:
    position: dict[str, Any] | None = None
    while True:
        chain, events, where = scan_events(backend, sid, seq, position)
        checked = False
        for event in events:
            if event.seq > seq:
                if not checked:
                    # The session may have been deleted and created again since the
                    # wait, and this read found the new log (its digests can match ours:
                    # import_events makes exact copies). A life never comes back, so if
                    # the session is still ours now that the read has begun, so was the read.
                    if backend.incarnation(sid) != life:
                        raise SessionNotFoundError(sid)
                    checked = True
                yield event
                seq = event.seq
        if chain.head.seq == seq and chain.torn_at is None:
            found = where()
            if found is not None:
                position = {**found, "seq": seq, "h": chain.head.digest}
        if not backend.wait(sid, seq, timeout, incarnation=life):
            return
