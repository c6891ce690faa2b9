"""The Redis backend's queue of contending appenders: one baton per session.

Appends are optimistic (see ``_backend``): a writer builds on the head it knows and the
script writes only if that is still the head. Alone, that costs nothing; but when several
writers append to one session, all but one of each round find the head moved, and each
built and sent for nothing, again and again, while the machine's CPUs were needed by the
one that got in (and under load one of them could lose every round until ``lock_timeout``).

So a writer that finds the head moved by another writer queues for the session's baton (a
one-element Redis list, ``<prefix>{<id>}:baton``) with ``BLPOP``, which Redis hands to its
waiters in the order they came, and sleeps meanwhile. The holder builds on the head the
baton carries and appends; the append script hands the baton on (with the new head) in the
same step, so queueing costs one round trip, and the next writer in line wakes at once.

The baton is advice, never a lock the data relies on: every append still goes through the
same head check, so two batons (a reply lost in a retry) or none (its holder died) cost
time, never correctness. A baton that does not come back while the head stands still for a
whole wait (``_WAIT_S``) is made again.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import redis

from ...core._codec import Head
from ...core._errors import LockTimeoutError, SessionNotFoundError

if TYPE_CHECKING:
    from ._backend import RedisBackend

_WAIT_S = 0.1  # one BLPOP's longest wait: a baton lost with its holder is made again after it


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _head(value: Any) -> Head:
    seq, _, digest = _text(value).partition(" ")
    return Head(int(seq), digest)


class Baton:
    """Whether this append holds its session's baton."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False


def take(backend: RedisBackend, session_id: str, deadline: float, attempts: int) -> Head:
    """Wait for the session's baton; the head it carries (where the holder builds)."""
    keys = backend.keys(session_id)
    head_key, baton = keys[0], keys[6]
    what = f"appending to session {session_id!r}"
    seen = ""
    while True:
        reply = backend._run(what, partial(backend._take, keys=[head_key, baton], args=[seen]))
        status = int(reply[0])
        if status == 2:
            raise SessionNotFoundError(session_id)
        if status == 1:
            return Head(int(reply[1]), _text(reply[2]))
        seen = _text(reply[1])
        wait = min(_WAIT_S, deadline - time.monotonic())
        if wait <= 0:
            raise LockTimeoutError(
                f"session {session_id!r}: could not append within {backend.lock_timeout:g} s: "
                f"other writers moved the head first {attempts} times, then it queued")
        got = backend._run(what, partial(backend.client.blpop, [baton], timeout=wait))
        if got:
            return _head(got[1])


def release(backend: RedisBackend, session_id: str) -> None:
    """Hand the baton on when its holder stops without appending (best effort: a baton
    lost here is made again after a wait)."""
    keys = backend.keys(session_id)
    try:
        backend._release(keys=[keys[0], keys[6]])
    except redis.RedisError:
        pass
