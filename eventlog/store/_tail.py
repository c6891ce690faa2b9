"""``SessionTail``: read a session's new events since the last read, cheaply, and notice
when the session was deleted (and maybe made again) in between.

The integrations keep a fold of each session they serve (a LangGraph thread's checkpoints,
an ADK session's state) and bring it up to date before every call; reading the whole log
each time would make every call cost the session's length. ``EventLog.events(after_seq=)``
is not enough for that: it starts reading at the head of the segment holding ``after_seq``
and does not say whether the log it reads is the one read before. So this small, named
internal API does what ``follow`` does between two waits: it reads on from the position
where the last read ended (re-checked against the record's digest by the backend), and
compares the session's life token (``Backend.incarnation``) after the read has begun.
"""

from __future__ import annotations

from typing import Any

from ..backends._base import Watch
from ..core._errors import SessionNotFoundError, StorageError
from ..core._records import Event
from ._log import EventLog

ATTEMPTS = 20
"""Reads started again because the session's life changed while reading, before giving up."""


class SessionTail:
    """Where one reader stands in one session: the seq it has read to, the session's life,
    and the backend's position after the last record read. Not thread-safe: one per reader
    (hold a lock around ``read`` to share one)."""

    __slots__ = ("life", "log", "position", "seq", "session_id", "watch")

    def __init__(self, log: EventLog, session_id: str) -> None:
        self.log = log
        self.session_id = session_id
        self.seq = 0
        self.life: object = None
        self.position: dict[str, Any] | None = None
        self.watch: Watch | None = None

    def read(self) -> tuple[bool, list[Event]]:
        """``(restarted, events)``: the events appended since the last read, in order.

        ``restarted`` is True when the session this tail had read is gone: deleted, or
        deleted and made again. ``events`` then starts at seq 1 of the new life, or is
        empty when there is none. A session that never existed reads as ``(False, [])``.
        """
        if self.watch is not None and not self.watch.changed():
            return False, []
        restarted = False
        for _ in range(ATTEMPTS):
            # The watch is made before the read, so whatever is appended after it was
            # made shows in it, even what this read already returns.
            watch = self.log.backend.watch(self.session_id) if self.watch is None else None
            try:
                life = self.log.backend.incarnation(self.session_id)
            except SessionNotFoundError:
                if watch is not None:
                    watch.close()
                gone = self.life is not None
                self._forget()
                return restarted or gone, []
            if life != self.life:
                restarted = restarted or self.life is not None
                self._forget()
                self.life = life
            try:
                events = self._read_on()
                # A life never comes back: if it is still ours now that the read has
                # begun, the read was of our log (the same reasoning as ``follow``).
                if self.log.backend.incarnation(self.session_id) == life:
                    if watch is not None and watch.life == life:
                        self.watch, watch = watch, None
                    return restarted, events
            except SessionNotFoundError:
                pass
            finally:
                if watch is not None:
                    watch.close()
            self._forget()
        raise StorageError(f"session {self.session_id!r} was deleted and made again {ATTEMPTS} times "
                           "while it was being read")

    def _read_on(self) -> list[Event]:
        # Internal: the reader ``follow`` uses, which resumes at a backend position.
        chain, events, where = self.log._scan_events(self.session_id, self.seq, self.position)
        seq = self.seq
        found = [event for event in events if event.seq > seq]
        if found:
            seq = found[-1].seq
        if chain.head.seq == seq and chain.torn_at is None:
            end = where()
            self.position = None if end is None else {**end, "seq": seq, "h": chain.head.digest}
        else:
            self.position = None
        self.seq = seq
        return found

    def close(self) -> None:
        """Let go of the watch (a file handle, for the file backend)."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def _forget(self) -> None:
        self.close()
        self.seq = 0
        self.life = None
        self.position = None
