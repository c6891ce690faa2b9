"""What the framework adapters share.

A store opened from a path or URL is shared by every adapter in the process: frameworks
build a history object per request (LangChain's ``RunnableWithMessageHistory`` calls its
factory on every invocation), and an ``EventLog`` per object would hold descriptors open
until the process ends. Sessions are created on their first write, so a read of a session
nobody wrote to is simply empty. The read walks the log backward from its newest event,
folding the "cleared" and "retracted" markers, so its cost follows what it returns plus
the retracted items and markers it steps over, not the length of the whole history.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ..core._errors import (
    ConflictError,
    CorruptLogError,
    InvalidInputError,
    SessionExistsError,
    SessionNotFoundError,
)
from ..core._records import Event
from ..core._validate import check_session_id
from ..store._async import AsyncEventLog
from ..store._log import EventLog
from ..store._open import open as open_store
from ..store._tail import SessionTail

Store: TypeAlias = str | os.PathLike[str] | EventLog
"""Where an adapter keeps its session: a store path or URL, or an open ``EventLog``."""

T = TypeVar("T")

_shared: dict[str, EventLog] = {}
_shared_lock = threading.Lock()


# Session ids -----------------------------------------------------------------------------
#
# Frameworks name their sessions freely (``user:42``, ``thread/123``, ``alice@example.com``),
# and since issue 15 the store takes every such id as it is: a framework's id is the eventlog
# session id, unchanged. (Before, ids outside ``[A-Za-z0-9._-]`` were kept under a mapped one,
# ``_.`` and ``_xx`` per byte; sessions written that way keep those ids.)


def session_id_for(framework_id: object) -> str:
    """The eventlog session id a framework's session id is kept under: the same id, checked
    (``InvalidSessionIdError`` for a non-str, an empty id, more than 255 characters, a control
    character or a lone surrogate)."""
    return check_session_id(framework_id)


def framework_id_of(session_id: str) -> str:
    """The framework's id for an eventlog session id: the same id."""
    return session_id


def missing_framework(module: str, package: str, extra: str, exc: ModuleNotFoundError) -> ImportError:
    """The one-line error for an integration imported without its framework."""
    return ImportError(
        f"{module} needs {package}, which is not installed (no module named {exc.name!r}): "
        f"pip install 'eventlog[{extra}]'",
        name=exc.name,
    )


def resolve_store(store: Store) -> EventLog:
    """The ``EventLog`` for ``store``: the instance itself, or the process's shared one for a location."""
    if isinstance(store, EventLog):
        return store
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if not isinstance(store, str) or not store:
        raise InvalidInputError(f"store must be a path, a URL or an EventLog, not {store!r}")
    key = store if "://" in store else os.path.realpath(store)
    with _shared_lock:
        log = _shared.get(key)
        # A shared store someone closed (through ``adapter.log``) is reopened, not handed on dead.
        if log is None or log.closed:
            # Opened at the resolved path, so a later chdir() cannot move the store.
            log = open_store(key)
            _shared[key] = log
        return log


def append_events(log: EventLog, session_id: str, events: list[tuple[str, Any]], *,
                  metadata: dict[str, Any], expected_seq: int | None = None) -> list[Event]:
    """Append ``events`` as one atomic batch, creating the session on its first write.

    ``expected_seq=0``: only if the session does not exist yet (``ConflictError`` if it does)."""
    if expected_seq == 0:
        try:
            log.create_session(session_id, metadata=metadata)
        except SessionExistsError:
            raise ConflictError(session_id, 0, log.backend.last_seq(session_id)) from None
        return log.append_many(session_id, events, expected_seq=1)
    try:
        return log.append_many(session_id, events, expected_seq=expected_seq)
    except SessionNotFoundError:
        pass
    # exist_ok: another process may create it between our append and this call.
    log.create_session(session_id, metadata=metadata, exist_ok=True)
    return log.append_many(session_id, events, expected_seq=expected_seq)


def append_event(log: EventLog, session_id: str, kind: str, data: Any, *,
                 metadata: dict[str, Any]) -> Event:
    """Append one event, creating the session on its first write."""
    try:
        return log.append(session_id, kind, data)
    except SessionNotFoundError:
        pass
    log.create_session(session_id, metadata=metadata, exist_ok=True)
    return log.append(session_id, kind, data)


@dataclass(frozen=True)
class LiveItems:
    """The items a read found (oldest first) and the session's newest seq when it read them.

    ``head_seq`` is 0 when the session does not exist.
    """

    items: list[Event]
    head_seq: int


def read_live(log: EventLog, session_id: str, *, item: str, cleared: str,
              retracted: str | None = None, limit: int | None = None) -> LiveItems:
    """The newest ``limit`` (None: all) events of type ``item`` that are still live.

    Walking backward, a ``cleared`` event hides everything before it, so the walk stops
    there; a ``retracted`` event (data ``{"seq": N}``) hides the item at seq N, which always
    comes earlier, so it is seen before the item it hides. A ``session.rewound`` event
    (``EventLog.rewind``, which the adapters write now; the two markers above are what
    earlier releases wrote) hides every event between its ``to_seq`` and itself, as the
    store's own reads do. Other event types are ignored.
    """
    walk = _LiveWalk(session_id, item, cleared, retracted, limit)
    try:
        for event in _visible_backward(log, session_id):
            if walk.step(event):
                break
    except SessionNotFoundError:
        return LiveItems([], 0)
    return walk.result()


async def read_live_data(log: EventLog, session_id: str, *, item: str, cleared: str,
                         retracted: str | None = None, limit: int | None = None) -> list[Any]:
    """The data of the events ``read_live`` finds, for a coroutine: the walk is read in
    batches (``AsyncEventLog.batches``), so a long one never holds the event loop (or, on a
    remote store, the GIL) for long.

    The list is made before the batches end: on a local store they keep the collector
    paused until then, and what is alive when it runs again (the data, not the events
    that carried it: they are dropped first) is what it promotes."""
    alog = async_of(log)
    if not alog.inline:
        # In one worker call, with the collector paused for it: in batches, what the walk
        # keeps would be alive at the loop's collections between them, and promoted.
        return await alog.run(_live_data, log, session_id, item, cleared, retracted, limit)
    walk = _LiveWalk(session_id, item, cleared, retracted, limit)
    try:
        async with aclosing(alog.batches(_visible_backward, log, session_id, keep=True)) as batches:
            async for batch in batches:
                if any(walk.step(event) for event in batch):
                    break
            found = walk.found
            data = [event.data for event in reversed(found)]
            found.clear()
            return data
    except SessionNotFoundError:
        return []


def _live_data(log: EventLog, session_id: str, item: str, cleared: str, retracted: str | None,
               limit: int | None) -> list[Any]:
    live = read_live(log, session_id, item=item, cleared=cleared, retracted=retracted, limit=limit)
    return [event.data for event in live.items]


class _LiveWalk:
    """``read_live``'s walk, an event at a time (newest first)."""

    def __init__(self, session_id: str, item: str, cleared: str, retracted: str | None,
                 limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise InvalidInputError(f"limit must be None or at least 1, not {limit!r}")
        self.session_id = session_id
        self.item = item
        self.cleared = cleared
        self.retracted = retracted
        self.limit = limit
        self.found: list[Event] = []
        self.hidden: set[int] = set()
        self.head = 0

    def step(self, event: Event) -> bool:
        """Take the next older event; True once the walk is done."""
        if self.head == 0:
            self.head = event.seq
        kind = event.type
        if kind == self.item:
            if event.seq in self.hidden:
                self.hidden.discard(event.seq)
                return False
            self.found.append(event)
            return self.limit is not None and len(self.found) >= self.limit
        if kind == self.cleared:
            return True
        if self.retracted is not None and kind == self.retracted:
            self.hidden.add(_retracted_seq(self.session_id, event))
        return False

    def result(self) -> LiveItems:
        return LiveItems(self.found[::-1], self.head)


REWOUND = "session.rewound"


def _visible_backward(log: EventLog, session_id: str) -> Iterator[Event]:
    """The session's events from the newest back, less those a rewind hides (the events
    between its ``to_seq`` and itself); the first one yielded is always the newest."""
    skip_above: int | None = None
    for event in log.events_reversed(session_id):
        if skip_above is not None:
            if event.seq > skip_above:
                continue
            skip_above = None
        if event.type == REWOUND:
            skip_above = _rewound_to(session_id, event)
        yield event


def _rewound_to(session_id: str, event: Event) -> int:
    data = event.data
    if type(data) is not dict or type(data.get("to_seq")) is not int:
        raise CorruptLogError(f"session {session_id!r}, seq {event.seq}: a rewind must carry "
                              f"{{'to_seq': <int>}}, not {data!r}", session_id=session_id,
                              seq=event.seq)
    to_seq: int = data["to_seq"]
    return to_seq


def _retracted_seq(session_id: str, event: Event) -> int:
    data = event.data
    if type(data) is not dict or type(data.get("seq")) is not int:
        raise CorruptLogError(f"session {session_id!r}, seq {event.seq}: a {event.type!r} event "
                              f"must carry {{'seq': <int>}}, not {data!r}",
                              session_id=session_id, seq=event.seq)
    seq: int = data["seq"]
    return seq


_async_logs: weakref.WeakKeyDictionary[EventLog, AsyncEventLog] = weakref.WeakKeyDictionary()


def async_of(log: EventLog) -> AsyncEventLog:
    """The ``AsyncEventLog`` the adapters run ``log``'s calls on (one per store: its worker
    threads, and the collector pause that keeps the loop's pauses short)."""
    with _shared_lock:
        found = _async_logs.get(log)
        if found is None:
            found = _async_logs[log] = AsyncEventLog(log)
        return found


# Folds kept up to date ----------------------------------------------------------------------

class Fold:
    """What an adapter keeps of one session, built by applying its events in order."""

    def apply(self, event: Event) -> None:
        raise NotImplementedError


F = TypeVar("F", bound=Fold)


class FoldCache(Generic[F]):
    """The folds of the sessions an adapter serves, each brought up to date before use.

    Every ``use(session_id)`` reads only the events appended since the fold's last use (by
    any process; see ``SessionTail``) and starts the fold afresh when the session was
    deleted or made again meanwhile, so a fold is never stale and never costs a replay of
    the whole log twice. Writers only append: their own events reach the fold the same way.
    The ``keep`` most recently used folds stay in memory.
    """

    def __init__(self, log: EventLog, make: Callable[[], F], *, keep: int = 256) -> None:
        self.log = log
        self.make = make
        self.keep = keep
        self._entries: OrderedDict[str, _Entry[F]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def use(self, session_id: str) -> Iterator[tuple[F, int]]:
        """The session's fold and the seq it is folded to (0: no such session), held
        locked for the ``with`` block."""
        entry = self._entry(session_id)
        with entry.lock:
            restarted, events = entry.tail.read()
            if restarted:
                entry.fold = self.make()
            for event in events:
                entry.fold.apply(event)
            yield entry.fold, entry.tail.seq

    def forget(self, session_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(session_id, None)
        if entry is not None:
            entry.close()

    def _entry(self, session_id: str) -> _Entry[F]:
        evicted = []
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                entry = _Entry(SessionTail(self.log, session_id), self.make())
                self._entries[session_id] = entry
                while len(self._entries) > self.keep:
                    evicted.append(self._entries.popitem(last=False)[1])
            else:
                self._entries.move_to_end(session_id)
        for old in evicted:
            old.close()
        return entry


class _Entry(Generic[F]):
    __slots__ = ("fold", "lock", "tail")

    def __init__(self, tail: SessionTail, fold: F) -> None:
        self.tail = tail
        self.fold = fold
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:  # not while another thread reads through it
            self.tail.close()
