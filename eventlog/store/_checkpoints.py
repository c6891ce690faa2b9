"""Taking checkpoints, and checking a store against one (``EventLog.checkpoint`` and
``verify(checkpoint=...)``).

A log extends a checkpoint's head when its record at the head's seq has the head's
digest: then every record up to it is the one that was there (the chain), and only
appends (and redactions, which keep digests) happened since. Otherwise it was cut short
(it ends before that seq), or rewritten or created anew (another digest there).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..core._checkpoint import Checkpoint, merkle_root
from ..core._codec import Head, Unparseable, genesis, link, looks_like_record, parse
from ..core._errors import CorruptLogError, InvalidInputError, SessionNotFoundError

if TYPE_CHECKING:
    from ._log import EventLog


def take(log: EventLog, sid: str | None) -> Checkpoint:
    """A session's checkpoint (its head, read through the chain check), or the store's."""
    now = time.time()
    if sid is not None:
        seq, digest = _head(log, sid)
        return Checkpoint(sid, seq, digest, now)
    heads = []
    for each in log.backend.session_ids():
        try:
            heads.append((each, *_head(log, each)))
        except SessionNotFoundError:
            continue  # deleted meanwhile
    return Checkpoint(None, len(heads), merkle_root(heads), now, tuple(heads))


def _head(log: EventLog, sid: str) -> tuple[int, str]:
    """The session's head: its newest record, checked against the one before it (or the
    genesis), read from the end of the log. A checkpoint states what the store holds; a
    verify against it later checks the whole chain up to there."""
    newest: tuple[dict[str, Any], bytes, str] | None = None
    torn = True
    for source, _lineno, line in log.backend.scan_back(sid):
        try:
            obj, body, digest = parse(line)
        except Unparseable:
            if torn and not looks_like_record(line):
                continue  # a torn tail: not part of the log
            raise CorruptLogError(f"session {sid!r}, {source}: the newest record can't be read",
                                  session_id=sid, where=source) from None
        torn = False
        if newest is not None:
            return _checked(sid, newest, Head(obj["seq"], digest), log.version)
        newest = (obj, body, digest)
    if newest is None:
        raise CorruptLogError(f"session {sid!r}: the log holds no events", session_id=sid)
    return _checked(sid, newest, genesis(sid), log.version)


def _checked(sid: str, newest: tuple[dict[str, Any], bytes, str], before: Head,
             version: int) -> tuple[int, str]:
    obj, body, digest = newest
    if obj["seq"] != before.seq + 1 or link(before.digest, body, version) != digest:
        raise CorruptLogError(f"session {sid!r}: the newest record (seq {obj['seq']}) does not "
                              "follow the one before it", session_id=sid, seq=obj["seq"])
    return obj["seq"], digest


def wanted(checkpoint: object, ids: list[str] | None) -> dict[str, tuple[int, str]]:
    """The heads a checkpoint commits to, of the sessions ``ids`` (None: all of them)."""
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidInputError(f"checkpoint must be a Checkpoint, not {type(checkpoint).__name__}")
    if checkpoint.session_id is None and merkle_root(checkpoint.heads) != checkpoint.digest:
        raise InvalidInputError("the checkpoint's heads do not hash to its digest: it was altered")
    heads = {sid: (seq, digest) for sid, seq, digest in checkpoint.heads}
    if checkpoint.session_id is not None:
        heads = {checkpoint.session_id: (checkpoint.seq, checkpoint.digest)}
    return heads if ids is None else {sid: heads[sid] for sid in ids if sid in heads}


def deleted(heads: dict[str, tuple[int, str]], present: list[str]) -> list[str]:
    """Problems for the checkpointed sessions the store no longer has."""
    here = set(present)
    return [f"session {sid!r}: deleted since the checkpoint (which holds it at seq {seq})"
            for sid, (seq, _digest) in sorted(heads.items()) if sid not in here]


class HeadProbe:
    """Watches a session's events go by in ``verify`` and says, at the end, whether its log
    extends the checkpoint's ``head`` (None: no checkpoint, nothing to say)."""

    __slots__ = ("head", "reached", "sid")

    def __init__(self, sid: str, head: tuple[int, str] | None) -> None:
        self.sid = sid
        self.head = head
        self.reached: str | None = None  # the chain's digest at the head's seq

    def see(self, seq: int, digest: str) -> None:
        if self.head is not None and seq == self.head[0]:
            self.reached = digest

    def problems(self, last: int, broken: bool) -> list[str]:
        """``last``: the seq the log ends at; ``broken``: the chain broke there (verify
        reports that already, unless it broke past the head)."""
        if self.head is None:
            return []
        seq, digest = self.head
        if self.reached is None:
            if last < seq and not broken:
                return [f"session {self.sid!r}: truncated: the log ends at seq {last}, before "
                        f"the checkpoint's head at seq {seq}"]
            return []
        if self.reached != digest:
            return [f"session {self.sid!r}: rewritten or created anew since the checkpoint: seq "
                    f"{seq} is not the record the checkpoint committed to"]
        return []
