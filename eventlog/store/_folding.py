"""A session's state (``SessionState``) by folding its events: from the newest snapshot that
the log continues, or from the fold this process last reached; the two caches that spare
the reading (the writers' folds, advanced under the append lock, and the readers' views);
and the checkpoint snapshots written after appends.

``Folding`` is what the store's policies (compaction, retention) get of the store: the
backend and the fold of a session, nothing else.
"""

from __future__ import annotations

from typing import Any

from ..backends._base import Backend
from ..core._codec import ChainReader, Head, genesis
from ..core._errors import CorruptLogError, EventLogError, SessionNotFoundError
from ..core._records import Event
from ._reads import read
from ._state import (
    REDACTED,
    REWOUND,
    ErasureProof,
    SessionState,
    decode_snapshot,
    encode_snapshot,
)

FOLDS_KEPT = 1024


def remember(cache: dict[str, Any], sid: str, value: Any) -> None:
    """Keep ``value`` for ``sid``, forgetting the oldest entries past ``FOLDS_KEPT``."""
    cache.pop(sid, None)
    cache[sid] = value
    while len(cache) > FOLDS_KEPT:
        cache.pop(next(iter(cache)), None)


class Folding:
    """Folds of one store's sessions, and the caches that keep them."""

    __slots__ = ("backend", "folds", "views")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # The fold of sessions this process appends to, advanced under the append lock while
        # no other writer interleaves, so checkpoint snapshots need no re-reading.
        self.folds: dict[str, SessionState] = {}
        # The fold each reader call last reached, with the backend's position after it.
        self.views: dict[str, tuple[SessionState, dict[str, Any]]] = {}

    def forget(self, sid: str) -> None:
        self.folds.pop(sid, None)
        self.views.pop(sid, None)

    def remember_fold(self, sid: str, state: SessionState) -> None:
        if not state.unerased:  # it would write snapshots and catalog entries: see ErasureProof
            remember(self.folds, sid, state)

    def state(self, sid: str, upto: int | None = None) -> SessionState:
        """The session's state (as of seq ``upto``, or now): the newest valid snapshot plus
        the events after it."""
        # A fold that applies a redaction it can't prove erased (see ``ErasureProof``) is
        # folded again from before the first seq in doubt, where the erased events are read.
        below: int | None = None
        if upto is None:
            view = self.views.get(sid)
            if view is not None:
                # The fold this process last read, and where the log stood: read only what
                # came after it (checked to continue from it; if not, start over).
                try:
                    state = self._fold_from(sid, view[0].copy(), view[1], None)
                    if not state.unerased:
                        return state
                    below = state.unerased
                except CorruptLogError:
                    pass
                self.views.pop(sid, None)
        for blob in self.backend.snapshots(sid):
            try:
                state, position = decode_snapshot(sid, blob)
            except CorruptLogError:
                continue  # damaged: an older one, or a full replay, answers instead
            if (upto is not None and state.head.seq > upto) or (
                    below is not None and state.head.seq >= below):
                continue
            try:
                state = self._fold_from(sid, state, position, upto)
            except CorruptLogError:
                continue  # the log does not continue from this snapshot: don't trust it
            if not state.unerased:
                return state
            below = state.unerased
        return self._fold_from(sid, SessionState(sid, genesis(sid)), None, upto)

    def rewound(self, sid: str, state: SessionState, event: Event) -> SessionState:
        """The state after the rewind ``event``: the state at its ``to_seq``, but with the
        newest activity of all events, and still the fork it always was (see ``_history``)."""
        older = self.state(sid, upto=event.data["to_seq"])
        older.created_at = state.created_at
        older.forked_from = state.forked_from
        older.last_activity = max(state.last_activity, event.ts)
        older.rewinds.append((event.data["to_seq"], event.seq))
        return older

    def _fold_from(self, sid: str, state: SessionState, position: dict[str, Any] | None,
                   upto: int | None) -> SessionState:
        """Apply to ``state`` the events after it (up to ``upto``), checking that the log
        really continues from the state's head; raise ``CorruptLogError`` if not."""
        after = state.head
        scan = self.backend.scan(sid, after.seq, position)
        chain = ChainReader(sid, scan.start, self.backend.record_version)
        if scan.start.seq == after.seq and scan.start.digest != after.digest:
            raise chain.corrupt("snapshot does not match the log", "snapshot", 0, after.seq)
        head = after if scan.start.seq >= after.seq else None
        # The digest before ``head``: a kept position carries it, so whoever trusts the
        # position later can re-check the newest record itself, not just where it ends.
        before = position.get("prev") if position is not None else None
        proof = ErasureProof(after.seq)
        for event in read(chain, scan):
            if event.seq <= after.seq:
                if event.seq == after.seq:
                    if chain.digest != after.digest:
                        raise chain.corrupt("snapshot does not match the log", "snapshot", 0,
                                            after.seq)
                    head = after
                continue
            if upto is not None and event.seq > upto:
                break
            kind = event.type
            if kind == REWOUND:
                state = self.rewound(sid, state, event)
            elif kind == REDACTED or (type(event.data) is dict and len(event.data) == 1):
                proof.apply(state, event)  # a redaction, or maybe a tombstone
            else:
                state.apply(event)
            before = head.digest if head is not None else None
            head = Head(event.seq, chain.digest)
        else:
            if head is not None and upto is None and chain.torn_at is None:
                self._keep_view(sid, state, head, before, chain.seq, scan.position())
        if head is None:
            raise chain.corrupt("the log is shorter than a snapshot of it", "snapshot", 0,
                                after.seq)
        if head.seq == 0:
            raise self._empty(sid, chain)
        state.head = head
        return state

    def _empty(self, sid: str, chain: ChainReader) -> EventLogError:
        """What an empty read of a session's log means. Every life of a session holds its
        create event, so a read of one that is gone now, or holds events now, read a life
        that ended under it (a delete, maybe a create again, between the backend's steps):
        gone, not damaged. (Outside tester: Redis pages raised "the log holds no events" on
        a healthy store under churn.)"""
        try:
            gone = not self.backend.exists(sid) or self.backend.last_seq(sid) > 0
        except SessionNotFoundError:
            gone = True
        if gone:
            return SessionNotFoundError(sid)
        return chain.corrupt("the log holds no events", "log", 0, 0)

    def _keep_view(self, sid: str, state: SessionState, head: Head, before: str | None,
                   read_to: int, end: dict[str, Any] | None) -> None:
        """Keep the fold a whole read reached, and where the log stood, for the next read."""
        if head.seq and head.seq == read_to and end is not None and before is not None \
                and not state.unerased:
            state.head = head
            remember(self.views, sid, (state.copy(), {
                **end, "seq": head.seq, "h": head.digest, "prev": before}))

    def save_snapshot(self, sid: str, seq: int, state: SessionState | None,
                      position: dict[str, Any] | None) -> None:
        """Write a checkpoint snapshot at ``seq``, outside the append lock.

        ``state`` is the writer's own fold when it saw every event up to ``seq``; otherwise
        the fold is rebuilt from the newest snapshot (reading only immutable records) and
        kept, so the next checkpoints of a steady writer cost no reading at all.
        """
        try:
            if state is None or state.head.seq != seq or state.unerased:
                state = self.state(sid, upto=seq)
                if state.head.seq != seq or state.unerased:
                    return  # in doubt: it may still name what a redaction erased
                self.remember_fold(sid, state.copy())
            self.backend.save_snapshot(sid, seq, encode_snapshot(state, position), durable=False)
        except (EventLogError, OSError):
            # A snapshot is a cache of the fold; the append it follows already succeeded,
            # and readers fall back to older snapshots or a full replay.
            pass
