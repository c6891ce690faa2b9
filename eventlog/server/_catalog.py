"""Paging through every session with filters, for ``GET /api/sessions`` and the viewer's list.

The store's catalog (``EventLog.list_sessions`` with its filters, issue 15) gives the
sessions; this adds what only the server has: ``q`` (the viewer's quick filter), the total,
and the sessions that can't be read (a damaged log fails the catalog's listing, and the
list is where a person looks to find it: then every session is read one by one). One
keyset page is cut from the result: the cursor holds the sort key and the id of the last
session shown, so a session that exists and is untouched for the whole walk appears
exactly once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core._errors import CorruptLogError, InvalidInputError, SessionNotFoundError
from ..core._records import ChatSession
from ..store._log import EventLog

ORDERS = ("last_activity", "created_at", "session_id")


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """What ``page_sessions`` narrows by; ``q`` (a substring of the id or of a participant,
    any case) is the viewer's quick filter and not one of the catalog's."""

    participant: str | None = None
    metadata: dict[str, Any] | None = None
    prefix: str | None = None
    active_after: float | None = None
    active_before: float | None = None
    q: str | None = None

    def keeps(self, s: ChatSession) -> bool:
        if self.participant is not None and self.participant not in s.participants:
            return False
        if self.prefix is not None and not s.session_id.startswith(self.prefix):
            return False
        if self.active_after is not None and not s.last_activity > self.active_after:
            return False
        if self.active_before is not None and not s.last_activity < self.active_before:
            return False
        if self.metadata is not None and any(
                key not in s.metadata or s.metadata[key] != value for key, value in self.metadata.items()):
            return False
        if self.q:
            needle = self.q.casefold()
            return needle in s.session_id.casefold() or any(needle in p.casefold() for p in s.participants)
        return True


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of sessions and the cursor to the next (None on the last page)."""

    sessions: list[ChatSession]
    next_cursor: str | None
    total: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)


def read_all(log: EventLog, filters: SessionFilter = SessionFilter()) -> tuple[
        list[ChatSession], list[dict[str, str]]]:
    """The sessions the catalog's filters keep, by id, and the sessions that cannot be read
    (with why)."""
    try:
        return log.list_sessions(participant=filters.participant, metadata=filters.metadata,
                                 prefix=filters.prefix, active_after=filters.active_after,
                                 active_before=filters.active_before), []
    except CorruptLogError:
        pass  # one damaged log fails the whole listing: read them one by one, to name it
    sessions: list[ChatSession] = []
    unreadable: list[dict[str, str]] = []
    for sid in log.session_ids():
        try:
            sessions.append(log.get_session(sid))
        except SessionNotFoundError:
            continue  # deleted meanwhile
        except CorruptLogError as exc:
            unreadable.append({"session_id": sid, "error": str(exc)})
    return sessions, unreadable


def _key(order: str) -> Callable[[ChatSession], tuple[Any, str]]:
    if order == "session_id":
        return lambda s: ("", s.session_id)
    if order == "created_at":
        return lambda s: (s.created_at, s.session_id)
    return lambda s: (s.last_activity, s.session_id)


def encode_cursor(key: tuple[Any, str], order: str, descending: bool) -> str:
    raw = orjson.dumps([order, descending, key[0], key[1]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str, descending: bool) -> tuple[Any, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if (type(value) is not list or len(value) != 4 or type(value[3]) is not str
            or type(value[2]) not in (int, float, str)):
        raise InvalidInputError("cursor is not one this server returned")
    if value[0] != order or value[1] is not descending:
        raise InvalidInputError("this cursor belongs to a listing in another order")
    return value[2], value[3]


def page_sessions(log: EventLog, *, limit: int = 100, cursor: str | None = None,
                  filters: SessionFilter = SessionFilter(), order: str = "last_activity",
                  descending: bool = False) -> SessionPage:
    """The sessions after ``cursor`` in ``order`` (ties by id), at most ``limit`` of them."""
    if order not in ORDERS:
        raise InvalidInputError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    sessions, unreadable = read_all(log, filters)
    kept = [s for s in sessions if filters.keeps(s)]
    key = _key(order)
    kept.sort(key=key, reverse=descending)
    total = len(kept)
    if cursor is not None:
        after = decode_cursor(cursor, order, descending)
        kept = [s for s in kept if (key(s) < after if descending else key(s) > after)]
    page = kept[:limit]
    more = len(kept) > limit
    broken = [] if cursor is not None else [
        u for u in unreadable if not filters.q or filters.q.casefold() in u["session_id"].casefold()]
    return SessionPage(page, encode_cursor(key(page[-1]), order, descending) if more else None,
                       total, broken)


def offset_page(log: EventLog, *, limit: int, offset: int, filters: SessionFilter, order: str,
                descending: bool) -> SessionPage:
    """The older way to page (``offset=``), kept for clients that use it."""
    whole = page_sessions(log, limit=offset + limit, filters=filters, order=order, descending=descending)
    return SessionPage(whole.sessions[offset:], whole.next_cursor, whole.total, whole.unreadable)
