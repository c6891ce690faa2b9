"""The session catalog: listing, filtering, counting and keyset paging of sessions.

A catalog entry is a session's summary (what ``ChatSession`` holds, plus its head digest)
as of one head. Entries are derived data, kept by the backend (``Backend.catalog_read`` /
``catalog_write``) and never trusted over the logs:

- An entry is used only while the backend says the session's head is still the one it
  was made for; otherwise the session is folded again (from its snapshots and views,
  as ``get_session`` does) and a new entry saved.
- The store writes entries behind its own appends: each append marks the session, and the
  marked sessions' folds (which the writer keeps anyway) are saved in one batch at
  ``close``, before this process reads the catalog, and every ``FLUSH_EVERY`` marks. A
  crash loses only marks: the entries they would have written are simply stale, and stale
  entries are refolded on read.
- A backend saves an entry only if the session's head is still the one given, so a slow
  writer never overwrites a newer entry with an older one.
- An entry says what the log held when it was made; damage done to the log later without
  moving its head (a byte flipped on disk) is what ``verify`` finds. Sessions ``verify``
  found damaged are listed from their logs in that process until a verify finds them sound.

Paging is keyset: the order is a total order on ``(key, session_id)``, and a cursor names
the last session returned. A session that exists and is not written to for the whole walk
appears exactly once; one appended to meanwhile may move in ``last_activity`` order (it is
shown where it stood when its page was read, so it can appear twice or be skipped).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..backends._base import CatalogUnusable, Refold
from ..core._codec import Head
from ..core._errors import (
    CorruptLogError,
    EventLogError,
    InvalidCursorError,
    InvalidInputError,
    SessionNotFoundError,
)
from ..core._records import ChatSession
from ..core._validate import check_json, check_timestamp, shown
from ._state import SessionState

if TYPE_CHECKING:
    from ._log import EventLog

ORDERS = ("session_id", "last_activity", "created_at")
MAX_PAGE = 10_000
FLUSH_EVERY = 4096
_CURSOR_VERSION = 1
_CURSOR_KEY = b"eventlog session catalog cursor v1"


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of sessions in the requested order; ``next_cursor`` (None on the last page)
    is an opaque string that continues the same listing."""

    sessions: list[ChatSession]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Query:
    """Checked filters and order of a listing."""

    participant: str | None = None
    metadata: tuple[tuple[str, bytes], ...] = ()
    prefix: str = ""
    active_after: float | None = None
    active_before: float | None = None
    order: str = "session_id"
    descending: bool = False

    def match(self, session: ChatSession) -> bool:
        if self.participant is not None and self.participant not in session.participants:
            return False
        if self.active_after is not None and not session.last_activity > self.active_after:
            return False
        if self.active_before is not None and not session.last_activity < self.active_before:
            return False
        for key, value in self.metadata:
            if key not in session.metadata or _canonical(session.metadata[key]) != value:
                return False
        return True

    def key(self) -> Callable[[ChatSession], tuple[Any, ...]]:
        if self.order == "session_id":
            return lambda s: (s.session_id,)
        if self.order == "last_activity":
            return lambda s: (s.last_activity, s.session_id)
        return lambda s: (s.created_at, s.session_id)

    def fingerprint(self) -> str:
        """Names the filters and order, so a cursor can't continue another listing."""
        text = orjson.dumps([self.participant, [[k, v.decode()] for k, v in self.metadata],
                             self.prefix, self.active_after, self.active_before, self.order,
                             self.descending])
        return hashlib.blake2b(text, digest_size=8).hexdigest()


def _canonical(value: Any) -> bytes:
    # 1 == 1.0 == True in Python; JSON tells them apart, and so do the filters.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def make_query(participant: object = None, metadata: object = None, prefix: object = None,  # noqa: PLR0913
               active_after: object = None, active_before: object = None,
               order: object = "session_id", descending: object = False) -> Query:
    """Check a listing's filters and order; raise ``InvalidInputError`` naming a bad one."""
    if participant is not None and (type(participant) is not str or not participant):
        raise InvalidInputError(f"participant must be a non-empty str, not {shown(participant)}")
    pairs: list[tuple[str, bytes]] = []
    if metadata is not None:
        if type(metadata) is not dict:
            raise InvalidInputError(f"metadata must be a dict, not {type(metadata).__name__}")
        for key, value in metadata.items():
            if type(key) is not str:
                raise InvalidInputError(f"metadata keys must be str, not {shown(key)}")
            # Checked as stored metadata is (no NaN, no infinity, no other types): orjson
            # writes NaN as null, so such a filter matched nothing, or a null, silently.
            try:
                check_json(value, f"metadata[{key!r}]")
            except InvalidInputError as exc:
                raise InvalidInputError(str(exc)) from None
            pairs.append((key, _canonical(value)))
        pairs.sort()
    if prefix is not None and type(prefix) is not str:
        raise InvalidInputError(f"prefix must be a str, not {shown(prefix)}")
    bounds = []
    for name, bound in (("active_after", active_after), ("active_before", active_before)):
        try:
            bounds.append(None if bound is None else check_timestamp(name, bound))
        except EventLogError as exc:
            raise InvalidInputError(str(exc)) from None
    if order not in ORDERS:
        raise InvalidInputError(f"order must be one of {', '.join(ORDERS)}, not {shown(order)}")
    if type(descending) is not bool:
        raise InvalidInputError(f"descending must be a bool, not {shown(descending)}")
    return Query(participant, tuple(pairs), prefix or "", bounds[0], bounds[1], str(order),
                 descending)


def check_limit(limit: object, *, optional: bool) -> int | None:
    if limit is None and optional:
        return None
    if type(limit) is not int or not 1 <= limit <= (2**63 if optional else MAX_PAGE):
        most = "" if optional else f" to {MAX_PAGE}"
        raise InvalidInputError(f"limit must be an int from 1{most}, not {shown(limit)}")
    return limit


# Entries --------------------------------------------------------------------------------

def encode_entry(state: SessionState) -> bytes:
    forked = None if state.forked_from is None else list(state.forked_from)
    return orjson.dumps([state.head.seq, state.head.digest, state.created_at,
                         state.last_activity, state.message_count, state.participants,
                         state.metadata, forked, [list(r) for r in state.rewinds]])


def decode_entry(sid: str, blob: bytes) -> tuple[ChatSession, Head]:
    row = orjson.loads(blob)
    if not _valid(row):
        raise ValueError("not a catalog entry")
    return _session((sid, row)), Head(row[0], row[1])


Row = tuple[str, list[Any]]
"""A session's id and its entry as decoded: [seq, h, created_at, last_activity,
message_count, participants, metadata, forked_from (null or [parent, seq]), rewinds
([[to_seq, seq], ...])]. Listings sort
and filter these, and build a ``ChatSession`` only for what they return."""


def _session(row: Row) -> ChatSession:
    sid, (seq, _digest, created, last, count, people, meta, forked, rewinds) = row
    return ChatSession(session_id=sid, participants=people, created_at=float(created),
                       last_activity=float(last), message_count=count, last_seq=seq,
                       metadata=meta, forked_from=None if forked is None else tuple(forked),
                       rewinds=tuple((r[0], r[1]) for r in rewinds))


def entries(log: EventLog, prefix: str, *,
            skip_damaged: bool = False) -> list[tuple[ChatSession, Head]]:
    """Every session whose id starts with ``prefix``, by id, with its head: from the
    backend's catalog where an entry is current, folded (and saved) where not. Sessions
    deleted meanwhile are left out; a damaged one raises, as ``get_session`` does (or is
    left out too, with ``skip_damaged``)."""
    return [(_session(row), Head(row[1][0], row[1][1])) for row in rows(log, prefix, skip_damaged)]


def _valid(row: list[Any]) -> bool:
    return (type(row) is list and len(row) == 9 and type(row[0]) is int and type(row[1]) is str
            and type(row[2]) in (int, float) and type(row[3]) in (int, float)
            and type(row[4]) is int and type(row[5]) is list and type(row[6]) is dict
            and (row[7] is None or (type(row[7]) is list and len(row[7]) == 2
                                    and type(row[7][0]) is str and type(row[7][1]) is int))
            and type(row[8]) is list and all(type(r) is list and len(r) == 2 and type(r[0]) is int
                                             and type(r[1]) is int for r in row[8]))


def rows(log: EventLog, prefix: str, skip_damaged: bool = False) -> list[Row]:
    """``entries``, as rows."""
    flush(log)
    found: list[Row] = []
    fresh: list[Fresh] = []
    suspects = log._suspects
    for sid, blob in log.backend.catalog_read(prefix):
        if blob is not None and sid not in suspects:
            try:
                row = orjson.loads(blob)
            except orjson.JSONDecodeError:
                row = None
            if _valid(row):
                found.append((sid, row))
                continue
            # else a damaged entry: fold the session instead
        try:
            state = log._state(sid)
        except SessionNotFoundError:
            continue
        except CorruptLogError:
            if skip_damaged:
                continue
            raise
        s = state.to_session()
        found.append((sid, [s.last_seq, state.head.digest, s.created_at, s.last_activity,
                            s.message_count, s.participants, s.metadata,
                            None if s.forked_from is None else list(s.forked_from),
                            [list(r) for r in s.rewinds]]))
        if not state.unerased:  # see _state.ErasureProof
            fresh.append(fresh_entry(sid, state))
    if fresh:
        save(log, fresh)
    if not prefix and log.backend.catalog_wants_rebuild(listed=len(found)):
        _rebuild_from(log, found)
    return found


def _rebuild_from(log: EventLog, found: list[Row]) -> None:
    """Every session, each just checked against its head: what an ordered catalog is built
    from (a file store's base; see ``Backend.catalog_walk``)."""
    try:
        log.backend.catalog_rebuild([(sid, Head(row[0], row[1]), orjson.dumps(row),
                                      (float(row[2]), float(row[3]))) for sid, row in found])
    except (EventLogError, OSError):
        pass  # derived data: the next listing tries again


Fresh = tuple[str, Head, bytes, tuple[float, float]]


def fresh_entry(sid: str, state: SessionState) -> Fresh:
    """A session's entry to save, with its keys."""
    return sid, state.head, encode_entry(state), (state.created_at, state.last_activity)


def compare(log: EventLog, folded: dict[str, SessionState], *, whole: bool) -> list[str]:
    """``verify``'s check of the catalog: every entry the backend would use now must say what
    the full fold of the session's log says. A wrong entry is a problem (the catalog is not
    trusted over the logs), and is replaced by the fold at once."""
    if not folded:
        return []
    flush(log)
    problems = []
    fresh = []
    rows = log.backend.catalog_read("") if whole or len(folded) > 1 else [
        row for row in log.backend.catalog_read(next(iter(folded))) if row[0] in folded]
    for sid, blob in rows:
        state = folded.get(sid)
        if state is None or blob is None or state.unerased:
            continue
        try:
            entry, head = decode_entry(sid, blob)
            same = entry == state.to_session() and head == state.head
        except (ValueError, TypeError):
            same = False
        if not same:
            problems.append(f"session {sid!r}: the catalog's entry does not match the log "
                            "(replaced by the log's fold)")
            fresh.append(fresh_entry(sid, state))
    if fresh:
        save(log, fresh)
    return problems


def rebuild(log: EventLog) -> int:
    """Fold every session and save its entry (``reindex``); return how many."""
    found = rows(log, "", skip_damaged=True)
    if log.backend.catalog_wants_rebuild():
        _rebuild_from(log, found)  # the index too, now rather than on the first ordered read
    return len(found)


def suspect(log: EventLog, sid: str, damaged: bool) -> None:
    """What ``verify`` found: a damaged session is listed from its log (where the damage
    shows) rather than from its entry, in this process, until a verify finds it sound."""
    if damaged:
        log._suspects.add(sid)
    else:
        log._suspects.discard(sid)


def save(log: EventLog, fresh: list[Fresh]) -> None:
    try:
        log.backend.catalog_write([(sid, head, blob) for sid, head, blob, _ in fresh],
                                  [keys for _, _, _, keys in fresh])
    except (EventLogError, OSError):
        pass  # derived data: the next read folds these sessions again


def flush(log: EventLog) -> None:
    """Save the entries of the sessions this process appended to since the last flush."""
    marked = log._marked
    if not marked:
        return
    sids = list(marked)
    marked.clear()
    fresh = []
    for sid in sids:
        fold = log._folds.get(sid)
        if fold is None or fold.unerased:
            continue
        head = fold.head  # read before the copy: a newer fold is refused by the backend
        state = fold.copy()
        state.head = head
        try:
            fresh.append(fresh_entry(sid, state))
        except TypeError:
            continue
    if fresh:
        save(log, fresh)


# Listing and paging ---------------------------------------------------------------------

def _row_key(query: Query) -> Callable[[Row], tuple[Any, ...]]:
    if query.order == "session_id":
        return lambda r: (r[0],)
    index = 3 if query.order == "last_activity" else 2
    return lambda r: (float(r[1][index]), r[0])


def _row_match(query: Query) -> Callable[[Row], bool]:
    if query == Query(prefix=query.prefix, order=query.order, descending=query.descending):
        return lambda r: True  # no filter but the prefix (which the backend applied)

    def match(row: Row) -> bool:
        _sid, (_seq, _h, _created, last, _count, people, meta, _forked, _rewinds) = row
        if query.participant is not None and query.participant not in people:
            return False
        if query.active_after is not None and not last > query.active_after:
            return False
        if query.active_before is not None and not last < query.active_before:
            return False
        return all(key in meta and _canonical(meta[key]) == value for key, value in query.metadata)

    return match


def select(log: EventLog, query: Query, after: tuple[Any, ...] | None = None,
           limit: int | None = None, *, skip_damaged: bool = False) -> list[Row]:
    """The rows of the sessions ``query`` lets through, in its order, past the key ``after``;
    with ``limit``, at least the first ``limit + 1`` of them (so a page knows if more follow)."""
    if query.order != "session_id" and (limit is not None or query.active_before is not None
                                         or query.active_after is not None):
        walked = _walked(log, query, after, limit, skip_damaged)
        if walked is not None:
            return walked
    key = _row_key(query)
    match = _row_match(query)
    chosen = [r for r in rows(log, query.prefix, skip_damaged) if match(r)]
    if after is not None:
        if query.descending:
            chosen = [r for r in chosen if key(r) < after]
        else:
            chosen = [r for r in chosen if key(r) > after]
    if query.order != "session_id" or query.descending:  # the backend lists them by id
        chosen.sort(key=key, reverse=query.descending)
    return chosen


def _start(query: Query, after: tuple[Any, ...] | None) -> float | None:
    """The key an ordered walk starts from (inclusive): the cursor's, or a bound's on
    ``last_activity``, whichever is further along."""
    starts = [] if after is None else [float(after[0])]
    if query.order == "last_activity":
        bound = query.active_before if query.descending else query.active_after
        if bound is not None:
            starts.append(bound)
    if not starts:
        return None
    return min(starts) if query.descending else max(starts)


def _walked(log: EventLog, query: Query, after: tuple[Any, ...] | None, limit: int | None,
            skip_damaged: bool) -> list[Row] | None:
    """``select`` through the backend's ordered catalog, reading only as far as the page
    (or the ``last_activity`` bound) goes; None if the backend keeps no order."""
    flush(log)
    backend = log.backend
    fresh: list[Fresh] = []

    def refold(sid: str) -> tuple[Head, bytes, float, float] | None:
        try:
            state = log._state(sid)
        except SessionNotFoundError:
            return None
        except CorruptLogError:
            if skip_damaged:
                return None
            raise
        entry = fresh_entry(sid, state)
        fresh.append(entry)
        return entry[1], entry[2], entry[3][0], entry[3][1]

    start = _start(query, after)
    walk = backend.catalog_walk(query.order, query.descending, start, refold)
    if walk is None and backend.catalog_wants_rebuild():
        _rebuild_from(log, rows(log, "", skip_damaged=True))
        walk = backend.catalog_walk(query.order, query.descending, start, refold)
    if walk is None:
        return None
    try:
        return _pulled(walk, query, after, limit, refold, log._suspects)
    except CatalogUnusable:
        return None
    finally:
        getattr(walk, "close", lambda: None)()
        if fresh:
            save(log, fresh)


def _pulled(walk: Iterator[tuple[str, bytes | None]], query: Query,
            after: tuple[Any, ...] | None, limit: int | None, refold: Refold,
            suspects: set[str]) -> list[Row]:
    """The rows a walk yields that ``query`` lets through past ``after``, up to ``limit + 1``
    or the ``last_activity`` bound."""
    key, match = _row_key(query), _row_match(query)
    index = 3 if query.order == "last_activity" else 2
    low = query.active_after if query.order == "last_activity" else None
    high = query.active_before if query.order == "last_activity" else None
    chosen: list[Row] = []
    for sid, blob in walk:
        if not sid.startswith(query.prefix):
            continue
        row = _decoded(sid, blob) if sid not in suspects else None
        if row is None:  # a damaged entry, or a session verify found damaged: its fold
            again = refold(sid)
            if again is None:
                continue
            row = (sid, orjson.loads(again[1]))
        if after is not None and not (key(row) < after if query.descending else key(row) > after):
            continue
        at = float(row[1][index])
        if (query.descending and low is not None and at <= low) or (
                not query.descending and high is not None and at >= high):
            break  # past the bound: nothing further along can match
        if match(row):
            chosen.append(row)
            if limit is not None and len(chosen) > limit:
                break
    return chosen


def _decoded(sid: str, blob: bytes | None) -> Row | None:
    if blob is None:
        return None
    try:
        row = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    return (sid, row) if _valid(row) else None


def list_sessions(log: EventLog, query: Query, limit: int | None) -> list[ChatSession]:
    chosen = select(log, query, None, limit)
    return [_session(r) for r in (chosen if limit is None else chosen[:limit])]


def page_sessions(log: EventLog, query: Query, limit: int, cursor: object) -> SessionPage:
    after = None if cursor is None else decode_cursor(cursor, query)
    chosen = select(log, query, after, limit)
    page = chosen[:limit]
    more = len(chosen) > limit
    next_cursor = encode_cursor(query, _row_key(query)(page[-1])) if more else None
    return SessionPage([_session(r) for r in page], next_cursor)


def count_sessions(log: EventLog, query: Query) -> int:
    match = _row_match(query)
    return sum(1 for r in rows(log, query.prefix) if match(r))


def oldest(log: EventLog, cutoff: float) -> list[tuple[str, Head, float]]:
    """The sessions last active before ``cutoff``, oldest first, each with the head its
    ``last_activity`` was read at (cleanup's candidates): through an ordered catalog, a
    walk that stops at the first younger one. Each head is one the backend vouched for
    when it was read (the entry's), or the session was folded from its log just now."""
    query = Query(active_before=cutoff, order="last_activity")
    return [(sid, Head(row[0], row[1]), float(row[3]))
            for sid, row in select(log, query, None, None, skip_damaged=True)]


# Cursors --------------------------------------------------------------------------------

def _seal(body: bytes) -> str:
    tag = hashlib.blake2b(body, key=_CURSOR_KEY, digest_size=8).digest()
    # The "c" first: base64url may begin with "-", and a command line would take such a
    # cursor for an option ("eventlog sessions --cursor -x..." was a usage error).
    return "c" + base64.urlsafe_b64encode(tag + body).decode().rstrip("=")


def encode_cursor(query: Query, key: tuple[Any, ...]) -> str:
    return _seal(orjson.dumps([_CURSOR_VERSION, query.fingerprint(), list(key)]))


def decode_cursor(cursor: object, query: Query) -> tuple[Any, ...]:
    """The key a cursor continues after; ``InvalidCursorError`` for anything this listing
    did not hand out (damaged, made up, or another listing's)."""
    if type(cursor) is not str or not 0 < len(cursor) <= 4096:
        raise InvalidCursorError("cursor must be a string a previous page_sessions returned")
    if not cursor.startswith("c"):
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned")
    body64 = cursor[1:]
    try:
        raw = base64.urlsafe_b64decode(body64 + "=" * (-len(body64) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned") from None
    tag, body = raw[:8], raw[8:]
    if len(tag) != 8 or hashlib.blake2b(body, key=_CURSOR_KEY, digest_size=8).digest() != tag:
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned")
    try:
        version, fingerprint, key = orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned") from None
    if version != _CURSOR_VERSION:
        raise InvalidCursorError("this cursor comes from another version of eventlog")
    if fingerprint != query.fingerprint():
        raise InvalidCursorError("this cursor belongs to a listing with other filters or order")
    if query.order == "session_id":
        if not (type(key) is list and len(key) == 1 and type(key[0]) is str):
            raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned")
    elif not (type(key) is list and len(key) == 2 and type(key[0]) in (int, float)
              and type(key[1]) is str):
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not one page_sessions returned")
    return (key[0],) if query.order == "session_id" else (float(key[0]), key[1])

