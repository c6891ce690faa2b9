"""``EventLog.search``: full-text search through events, in one session or across all, paged.

The one place the scanning lives: the CLI's ``eventlog search``, the server's ``/api/search``
and the viewer's filtered transcript all call it. A query is matched case-insensitively
(``str.casefold``) as one substring against a message's content, sender, recipient and
message type, and against any other event's type and its data written as JSON. Filters
(sender, recipient, type, a seq range) narrow what is matched. Paging is keyset: the cursor
names where the scan stopped, so a page costs what it reads, and a scan budget
(``scan_limit``) bounds one call even when few events match.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..backends._base import Backend
from ..core._errors import InvalidInputError, SessionNotFoundError
from ..core._records import Event
from ..core._validate import check_session_id
from ._state import MESSAGE


class Searched(Protocol):
    """What a search reads of the store (``EventLog`` is one): its public reads and the
    backend's last seq. A protocol, so this module needs nothing above it."""

    @property
    def backend(self) -> Backend: ...

    def session_exists(self, session_id: str) -> bool: ...

    def session_ids(self) -> list[str]: ...

    def events(self, session_id: str, after_seq: int = 0) -> Iterator[Event]: ...

    def events_reversed(self, session_id: str) -> Iterator[Event]: ...


MAX_QUERY = 1000
MAX_LIMIT = 10_000
MESSAGE_FIELDS = ("content", "sender", "recipient", "message_type")
EVENT_FIELDS = ("type", "data")


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching event of session ``session_id``; ``fields`` names where the query was
    found (``content``, ``sender``, ``recipient``, ``message_type``; ``type``, ``data`` for
    other events), empty when the search had no query (filters only)."""

    session_id: str
    event: Event
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of hits in scan order; ``next_cursor`` (None when the scan is done) resumes it.

    ``events_scanned`` counts the events this call examined. A page may hold fewer than
    ``limit`` hits, even none, and still have a cursor: the scan budget ran out first."""

    hits: tuple[SearchHit, ...]
    next_cursor: str | None
    events_scanned: int


@dataclass(frozen=True, slots=True)
class _Query:
    needle: str
    sender: str | None
    recipient: str | None
    to_everyone: bool
    types: frozenset[str] | None

    @property
    def filters_only_range(self) -> bool:
        return (not self.needle and self.sender is None and self.recipient is None
                and not self.to_everyone and self.types is None)

    def match(self, event: Event) -> tuple[str, ...] | None:
        """The fields the needle was found in (``()`` without a needle), or None: no match."""
        if self.types is not None and event.type not in self.types:
            return None
        is_message = event.type == MESSAGE and type(event.data) is dict
        data: Any = event.data
        if self.sender is not None or self.recipient is not None or self.to_everyone:
            if not is_message:
                return None
            if self.sender is not None and data.get("sender") != self.sender:
                return None
            recipient = data.get("recipient")
            if self.to_everyone and recipient is not None:
                return None
            if self.recipient is not None and recipient != self.recipient:
                return None
        if not self.needle:
            return ()
        if is_message:
            found = tuple(name for name in MESSAGE_FIELDS
                          if type(data.get(name)) is str and self.needle in data[name].casefold())
        else:
            text = orjson.dumps(data).decode() if data is not None else ""
            found = tuple(name for name, value in (("type", event.type), ("data", text))
                          if self.needle in value.casefold())
        return found or None


def encode_cursor(session_id: str, seq: int, descending: bool) -> str:
    raw = orjson.dumps([session_id, seq, descending])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[str, int, bool]:
    """``(session id, last seq scanned, descending)``; InvalidInputError for anything else."""
    if type(cursor) is not str or len(cursor) > 2048:
        raise InvalidInputError("cursor must be a string a previous search returned")
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"cursor {cursor[:40]!r} is not one a search returned") from None
    if (type(value) is not list or len(value) != 3 or type(value[0]) is not str
            or type(value[1]) is not int or value[1] < 0 or type(value[2]) is not bool):
        raise InvalidInputError(f"cursor {cursor[:40]!r} is not one a search returned")
    return check_session_id(value[0]), value[1], value[2]


def _check_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if type(value) is not str or not value:
        raise InvalidInputError(f"{name} must be a non-empty str or None, not {value!r}")
    return value


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < low or (high is not None and value > high):
        top = "" if high is None else f" to {high}"
        raise InvalidInputError(f"{name} must be an int from {low}{top}, not {value!r}")
    return value


def build_query(query: object, sender: object, recipient: object, to_everyone: object,
                types: object) -> _Query:
    if type(query) is not str or len(query) > MAX_QUERY:
        raise InvalidInputError(f"query must be a str of at most {MAX_QUERY} characters")
    if type(to_everyone) is not bool:
        raise InvalidInputError(f"to_everyone must be True or False, not {to_everyone!r}")
    if to_everyone and recipient is not None:
        raise InvalidInputError("give recipient or to_everyone, not both")
    kinds = None
    if types is not None:
        if isinstance(types, str) or not isinstance(types, (list, tuple, set, frozenset)):
            raise InvalidInputError("types must be a list of event types")
        kinds = frozenset(types)
        if not all(type(k) is str and k for k in kinds):
            raise InvalidInputError("types must be non-empty strings")
    return _Query(query.casefold(), _check_text("sender", sender), _check_text("recipient", recipient),
                  to_everyone, kinds)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a search looks: the sessions, the seq range (exclusive), the order, the budget."""

    session_id: str | None
    after_seq: int
    before_seq: int | None
    descending: bool
    limit: int
    scan_limit: int | None


def search(log: Searched, query: _Query, scope: Scope, cursor: str | None) -> SearchPage:
    sessions = _sessions(log, scope)
    start: tuple[str, int] | None = None
    if cursor is not None:
        sid, seq, descending = decode_cursor(cursor)
        if descending != scope.descending or (scope.session_id is not None and sid != scope.session_id):
            raise InvalidInputError("this cursor belongs to a search in another order or session")
        start = (sid, seq)
        sessions = [s for s in sessions if (s < sid if scope.descending else s > sid) or s == sid]
    hits: list[SearchHit] = []
    scanned = 0
    for sid in sessions:
        bound = start[1] if start is not None and start[0] == sid else None
        try:
            events = _scan(log, sid, scope, bound, query.filters_only_range)
            for event in events:
                if scope.scan_limit is not None and scanned >= scope.scan_limit:
                    return SearchPage(tuple(hits), encode_cursor(sid, _before(event, scope),
                                                                 scope.descending), scanned)
                scanned += 1
                fields = query.match(event)
                if fields is None:
                    continue
                hits.append(SearchHit(sid, event, fields))
                if len(hits) == scope.limit:
                    more = sid != sessions[-1] or _more(events, event, scope,
                                                        query.filters_only_range)
                    cursor_out = encode_cursor(sid, event.seq, scope.descending) if more else None
                    return SearchPage(tuple(hits), cursor_out, scanned)
        except SessionNotFoundError:
            if scope.session_id is not None:
                raise
            continue  # deleted while the search went through the store
    return SearchPage(tuple(hits), None, scanned)


def _more(events: Iterator[Event], last: Event, scope: Scope, contiguous: bool) -> bool:
    """Whether the session holds more to scan after ``last``. Every seq from 1 to the head
    exists, so a contiguous backward scan knows without reading its next window."""
    if contiguous and scope.descending:
        return last.seq - 1 > scope.after_seq
    return next(events, None) is not None


def _before(event: Event, scope: Scope) -> int:
    """The cursor seq that resumes a scan *at* ``event`` (it was not examined)."""
    return event.seq + 1 if scope.descending else event.seq - 1


def _sessions(log: Searched, scope: Scope) -> list[str]:
    if scope.session_id is not None:
        if not log.session_exists(scope.session_id):
            raise SessionNotFoundError(scope.session_id)
        return [scope.session_id]
    ids = log.session_ids()
    return ids[::-1] if scope.descending else ids


def _scan(log: Searched, sid: str, scope: Scope, bound: int | None, contiguous: bool) -> Iterator[Event]:
    """The session's events inside the scope (and past the cursor's ``bound``), in scan order."""
    low = scope.after_seq
    high = scope.before_seq
    if scope.descending:
        if bound is not None:
            high = bound if high is None else min(high, bound)
        return _backward(log, sid, low, high, scope.limit if contiguous else None)
    if bound is not None:
        low = max(low, bound)
    return _forward(log, sid, low, high)


def _forward(log: Searched, sid: str, low: int, high: int | None) -> Iterator[Event]:
    for event in log.events(sid, after_seq=low):
        if high is not None and event.seq >= high:
            return
        yield event


def _backward(log: Searched, sid: str, low: int, high: int | None, window: int | None) -> Iterator[Event]:
    """Events with ``low < seq < high``, newest first.

    With no filter, a page is one contiguous window of seqs, and reading it forward from
    its start costs what lies before it in its segment, where reading back from the end
    costs everything after it: the cheaper of the two is taken."""
    last = log.backend.last_seq(sid)
    top = last if high is None else min(high - 1, last)
    if window is not None and top - low > window and top - window <= last - top:
        start = max(low, top - window)
        found = list(_forward(log, sid, start, top + 1))
        yield from reversed(found)
        if start > low:
            yield from _backward(log, sid, low, start + 1, window)
        return
    for event in log.events_reversed(sid):
        if event.seq > top:
            continue
        if event.seq <= low:
            return
        yield event


def make_scope(session_id: object, after_seq: object, before_seq: object, descending: object,
               limit: object, scan_limit: object) -> Scope:
    """Check a search's scope arguments (``EventLog.search`` names them)."""
    sid = None if session_id is None else check_session_id(session_id)
    if sid is None and (after_seq is not None or before_seq is not None):
        raise InvalidInputError("after_seq and before_seq need a session_id")
    if type(descending) is not bool:
        raise InvalidInputError(f"descending must be True or False, not {descending!r}")
    return Scope(sid, _check_int("after_seq", after_seq, 0) or 0, _check_int("before_seq", before_seq, 0),
                 descending, _check_int("limit", limit, 1, MAX_LIMIT) or 1,
                 _check_int("scan_limit", scan_limit, 1))


Matcher = Callable[[Event], "tuple[str, ...] | None"]


def matcher(query: str = "", *, sender: str | None = None, recipient: str | None = None,
            to_everyone: bool = False, types: Sequence[str] | None = None) -> Matcher:
    """The predicate a search applies to each event, for callers that filter events they
    already hold (the server's live stream filter uses the same rule)."""
    return build_query(query, sender, recipient, to_everyone, types).match
