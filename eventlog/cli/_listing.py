"""What the listing commands share: a session and a message as JSON, and every session of a
store with its size, damaged ones named rather than hiding the rest."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..core._errors import CorruptLogError, SessionNotFoundError
from ..core._records import ChatMessage, ChatSession
from ..store._log import EventLog
from ._terminal import iso_time, safe


def session_json(s: ChatSession, size: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "session_id": s.session_id, "participants": s.participants,
        "message_count": s.message_count, "last_seq": s.last_seq,
        "created_at": iso_time(s.created_at), "last_activity": iso_time(s.last_activity),
        "metadata": s.metadata}
    if size is not None:
        found["size_bytes"] = size
    return found


def message_json(m: ChatMessage) -> dict[str, Any]:
    return {"seq": m.seq, "id": m.id, "timestamp": iso_time(m.timestamp), "sender": m.sender,
            "recipient": m.recipient, "content": m.content, "message_type": m.message_type,
            "metadata": m.metadata}


@dataclass
class Listing:
    """Every session with its size, and the ones that could not be read (id, why)."""

    sessions: list[tuple[ChatSession, int]]
    damaged: list[tuple[str, str]]

    def report_damage(self) -> int:
        """Name the damaged sessions in one line on stderr; the exit status to end with."""
        if not self.damaged:
            return 0
        names = ", ".join(safe(sid) for sid, _ in self.damaged)
        print(f"eventlog: {len(self.damaged)} session(s) could not be read ({names}); "
              "'eventlog verify' shows why", file=sys.stderr)
        return 1


def list_store(log: EventLog) -> Listing:
    """Like ``list_sessions``, but one damaged session does not hide the others, and one
    deleted meanwhile is left out."""
    listing = Listing([], [])
    for sid in log.session_ids():
        try:
            listing.sessions.append((log.get_session(sid), log.size(sid)))
        except SessionNotFoundError:
            continue
        except CorruptLogError as exc:
            listing.damaged.append((sid, str(exc)))
    return listing
