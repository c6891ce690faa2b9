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

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from ..core._errors import CorruptLogError, InvalidInputError, SessionNotFoundError
from ..core._records import Event
from ..store._log import EventLog
from ..store._open import open as open_store

Store: TypeAlias = str | os.PathLike[str] | EventLog
"""Where an adapter keeps its session: a store path or URL, or an open ``EventLog``."""

T = TypeVar("T")

_shared: dict[str, EventLog] = {}
_shared_lock = threading.Lock()


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
    """Append ``events`` as one atomic batch, creating the session on its first write."""
    try:
        return log.append_many(session_id, events, expected_seq=expected_seq)
    except SessionNotFoundError:
        pass
    # exist_ok: another process may create it between our append and this call.
    log.create_session(session_id, metadata=metadata, exist_ok=True)
    return log.append_many(session_id, events, expected_seq=expected_seq)


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
    comes earlier, so it is seen before the item it hides. Other event types are ignored.
    """
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be None or at least 1, not {limit!r}")
    found: list[Event] = []
    hidden: set[int] = set()
    head = 0
    try:
        # The store's own verified backward reader (each event vouched for by the digest of
        # the one before it). It is private to the core, and this package is part of eventlog.
        for event in log.events_reversed(session_id):
            if head == 0:
                head = event.seq
            if event.type == item:
                if event.seq in hidden:
                    hidden.discard(event.seq)
                    continue
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
            elif event.type == cleared:
                break
            elif retracted is not None and event.type == retracted:
                hidden.add(_retracted_seq(session_id, event))
    except SessionNotFoundError:
        return LiveItems([], 0)
    found.reverse()
    return LiveItems(found, head)


def _retracted_seq(session_id: str, event: Event) -> int:
    data = event.data
    if type(data) is not dict or type(data.get("seq")) is not int:
        raise CorruptLogError(f"session {session_id!r}, seq {event.seq}: a {event.type!r} event "
                              f"must carry {{'seq': <int>}}, not {data!r}",
                              session_id=session_id, seq=event.seq)
    seq: int = data["seq"]
    return seq


async def write_in_thread(func: Callable[[], T]) -> T:
    """Run a blocking write in a worker thread and always wait for its outcome.

    A thread cannot be stopped, so if the awaiting task is cancelled the write still lands.
    Returning at once would let the caller move on (say, clear the session) and then have
    this write appear after it; so cancellation is held until the write has finished, and
    raised then.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func))
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            if cancelled is None:
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
        raise cancelled
    return task.result()
