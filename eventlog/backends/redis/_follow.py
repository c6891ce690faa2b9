"""``follow`` on the Redis backend: waiting for a session's next entries."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from redis.typing import KeyT, StreamIdT

from ...core._errors import SessionNotFoundError

if TYPE_CHECKING:
    from ._backend import RedisBackend

_FOLLOW_BLOCK_MS = 1000  # a follower re-checks that its session is still the same life this often


def wait(backend: RedisBackend, session_id: str, after_seq: int, timeout: float | None,
         incarnation: object) -> bool:
    """``XREAD BLOCK`` from the last entry seen, in slices, each followed by a read of the
    session's generation token in the same round trip. A blocked XREAD does not notice
    a deleted key, and when the id is created again it wakes only once the new log
    passes ``after_seq``: the token, not the log, tells whether the life is ours."""
    head_key, log_key = backend.keys(session_id)[:2]
    what = f"following session {session_id!r}"
    deadline = None if timeout is None else time.monotonic() + timeout
    block: int | None = None  # the first look does not block, so a new life shows at once
    while True:
        streams: dict[KeyT, StreamIdT] = {log_key: f"0-{after_seq}"}
        # Not a transaction (XREAD would not block in one): the server reads the token
        # once the XREAD returns, and a life never comes back, so if the token is still
        # ours then, the entries were ours too.
        found, now = backend._run(what, partial(backend._pipeline, False, [
            ("xread", (streams, 1, block)), ("hget", (head_key, "g"))]))
        if incarnation is None:
            incarnation = now
        if now is None or now != incarnation:
            raise SessionNotFoundError(session_id)
        if found:
            return True
        block = _FOLLOW_BLOCK_MS
        if deadline is not None:
            block = min(block, int((deadline - time.monotonic()) * 1000))
            if block <= 0:
                return False
