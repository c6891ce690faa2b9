"""eventlog as the benchmark sees it: its public API only, on any URL ``eventlog.open`` accepts."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from _bench_data import Msg
from _bench_store import PARTICIPANTS, Spec, Store, Unsupported

import eventlog


class EventlogStore(Store):
    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        if spec.location.startswith("memory:"):
            self.shared = False
            self.no_durable = "a process-local memory store has nothing to fsync"
        self.log = eventlog.open(spec.location, durability="fsync" if spec.durable else "os")

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [eventlog.ChatMessage(id=m.id, sender=m.sender, recipient=m.recipient, content=m.content,
                                     timestamp=m.ts, session_id=sid) for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        self.log.create_session(sid, PARTICIPANTS, created_at=created_at)

    def append(self, sid: str, item: Any) -> None:
        self.log.add_message(item)

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        self.log.add_messages(self.prepare(sid, msgs))

    def replay(self, sid: str) -> int:
        events = list(self.log.events(sid))
        return len(events) - 1

    def stream(self, sid: str) -> int:
        count = -1
        for _ in self.log.events(sid):
            count += 1
        return count

    def tail(self, sid: str, limit: int) -> int:
        return len(self.log.get_messages(sid, limit=limit))

    def session_info(self, sid: str) -> object:
        return self.log.get_session(sid)

    def list_sessions(self) -> int:
        return len(self.log.list_sessions())

    def first_page(self) -> int:
        """Issue 15: the first page of 100 sessions by last activity, newest first."""
        page = getattr(self.log, "page_sessions", None)
        if page is None:
            raise Unsupported("EventLog.page_sessions does not exist yet")
        return len(page(100, order="last_activity", descending=True).sessions)

    def second_page_by_created(self) -> int:
        """Issue 15: the second page of 100 by creation, oldest first (a cursor's walk)."""
        first = self.log.page_sessions(100, order="created_at")
        return len(self.log.page_sessions(100, first.next_cursor, order="created_at").sessions)

    def cleanup(self, days: float) -> int:
        cleanup = getattr(self.log, "cleanup_old_sessions", None)
        if cleanup is None:
            raise Unsupported("EventLog.cleanup_old_sessions does not exist yet")
        return len(cleanup(days=days))

    def can_compact(self) -> bool:
        return hasattr(self.log, "compact")

    def compact(self, sid: str) -> object:
        return self.log.compact(sid)

    def size(self, sid: str) -> int:
        return self.log.size(sid)

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        return [(m.id, m.content) for m in self.log.get_messages(sid)]

    def problems(self, sid: str) -> list[str]:
        return list(self.log.verify(sid).problems)

    def discard(self) -> None:
        # Only a server's data outlives the run's directory; remove exactly what this run made.
        if self.spec.location.startswith("postgresql://"):
            from _bench_postgres import drop
            drop(self.spec.location)  # the store's own schema
            return
        if self.spec.location.startswith(("redis://", "rediss://")) and self.spec.prefix:
            for session in self.log.list_sessions():
                if session.session_id.startswith(self.spec.prefix):
                    with contextlib.suppress(eventlog.SessionNotFoundError):
                        self.log.delete_session(session.session_id)

    def close(self) -> None:
        self.log.close()


def check_url(url: str) -> str:
    """Why ``eventlog.open`` can't open ``url`` here, or "" when it can."""
    try:
        log = eventlog.open(url)
    except eventlog.InvalidInputError:
        return f"eventlog.open does not accept {url.partition('://')[0]}:// URLs yet"
    except (eventlog.EventLogError, OSError, ImportError) as exc:
        return f"eventlog.open failed: {exc}"
    log.close()
    return ""
