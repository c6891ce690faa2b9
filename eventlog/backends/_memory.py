"""The in-memory backend: ``memory://`` (private) and ``memory://NAME`` (shared in the process).

Process-local by nature: other processes never see it, and a forked child gets a copy
that goes its own way from the fork on. Nothing survives the process; a named store
lives until the process ends (delete its sessions to free the memory), so closing and
opening ``memory://NAME`` again finds everything where it was.

Every operation holds one lock; ``wait`` sleeps on a condition that appends and
deletes notify, so followers wake at once instead of polling.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from ..core._codec import Head, Record
from ..core._errors import RedactionError, SessionExistsError, SessionNotFoundError, StoreNotFoundError
from ._base import Appended, Build, Replacement, snapshot_seqs_dropped
from ._rows import RowBackend, Rows


class _Session:
    """One life of a session id; the object itself is its generation."""

    __slots__ = ("catalog", "head", "lines", "snapshots")

    def __init__(self, record: Record) -> None:
        self.head = Head(record.seq, record.digest)
        self.lines: list[bytes] = [record.line]  # lines[i] holds seq i + 1
        self.snapshots: dict[int, bytes] = {}
        self.catalog: tuple[Head, bytes] | None = None  # the catalog entry, and its head


class _Data:
    """The sessions of one store and the condition guarding them."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.changed = threading.Condition(threading.RLock())
        _all_data.add(self)


_all_data: weakref.WeakSet[_Data] = weakref.WeakSet()
_named: dict[str, _Data] = {}
_named_lock = threading.Lock()


def _reset_locks_in_child() -> None:
    # A lock held by another thread at fork() would never be released in the child.
    global _named_lock
    _named_lock = threading.Lock()
    for data in list(_all_data):
        data.changed = threading.Condition(threading.RLock())


if hasattr(os, "register_at_fork"):  # absent where there is no fork() (Windows)
    os.register_at_fork(after_in_child=_reset_locks_in_child)


class MemoryBackend(RowBackend):
    """Sessions in this process's memory; ``name`` shares them with every open of that name."""

    source = "memory"
    inline_appends = True  # an append takes this process's lock for microseconds, never waits else

    def __init__(self, name: str | None = None, *, create: bool = True) -> None:
        self.name = name
        if name is None:
            if not create:
                raise StoreNotFoundError("memory://", "a private memory store is new at each "
                                         "open, so there is none to open without creating it")
            self._data = _Data()
        else:
            with _named_lock:
                data = _named.get(name)
                if data is None:
                    if not create:
                        raise StoreNotFoundError(f"memory://{name}", "no store of that name was "
                                                 "opened in this process")
                    data = _named[name] = _Data()
                self._data = data

    def _session(self, session_id: str) -> _Session:
        session = self._data.sessions.get(session_id)
        if session is None:
            raise SessionNotFoundError(session_id)
        return session

    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        data = self._data
        with data.changed:
            if session_id in data.sessions:
                raise SessionExistsError(session_id)
            data.sessions[session_id] = _Session(record)
            data.changed.notify_all()

    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        records = [record for batch in batches for record in batch]  # before the lock
        data = self._data
        with data.changed:
            if session_id in data.sessions:
                raise SessionExistsError(session_id)
            session = data.sessions[session_id] = _Session(records[0])
            session.lines.extend(r.line for r in records[1:])
            session.head = Head(records[-1].seq, records[-1].digest)
            data.changed.notify_all()
        return {}

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        data = self._data
        with data.changed:
            session = self._session(session_id)
            records = build(session.head)
            if not records:
                return Appended([])
            session.lines.extend(r.line for r in records)
            session.head = Head(records[-1].seq, records[-1].digest)
            data.changed.notify_all()
        return Appended(records)

    def exists(self, session_id: str) -> bool:
        return session_id in self._data.sessions

    def session_ids(self) -> list[str]:
        with self._data.changed:
            return sorted(self._data.sessions)

    def read_head(self, session_id: str) -> tuple[Any, Head]:
        with self._data.changed:
            session = self._session(session_id)
            return session, session.head

    def read_rows(self, session_id: str, generation: Any, first: int, last: int | None,
                  limit: int, *, newest_first: bool = False) -> Rows:
        session: _Session = generation
        with self._data.changed:
            if self._data.sessions.get(session_id) is not session:
                return []  # deleted (and maybe created again) since the scan began
            end = len(session.lines) if last is None else min(last, len(session.lines))
            if newest_first:
                low = max(first, end - limit + 1)
                return [(seq, session.lines[seq - 1]) for seq in range(end, low - 1, -1)]
            high = min(end, first + limit - 1)
            return [(seq, session.lines[seq - 1]) for seq in range(first, high + 1)]

    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        data = self._data
        with data.changed:
            session = self._session(session_id)
            if if_head is not None and session.head != if_head:
                return False
            del data.sessions[session_id]
            data.changed.notify_all()  # followers of it must learn it is gone
        return True

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        with self._data.changed:
            found = self._session(session_id).snapshots
            blobs = [found[seq] for seq in sorted(found, reverse=True)]
        return iter(blobs)

    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        with self._data.changed:
            found = self._session(session_id).snapshots
            found[seq] = blob
            for old in snapshot_seqs_dropped(found):
                del found[old]

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        # The entry lives on the session's life: a new life starts without one.
        with self._data.changed:
            found = [(sid, s.catalog[1] if s.catalog is not None and s.catalog[0] == s.head else None)
                     for sid, s in self._data.sessions.items() if sid.startswith(prefix)]
        found.sort(key=lambda item: item[0])
        return found

    def catalog_reset(self) -> None:
        with self._data.changed:
            for session in self._data.sessions.values():
                session.catalog = None

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        with self._data.changed:
            for sid, head, blob in entries:
                session = self._data.sessions.get(sid)
                if session is not None and session.head == head:
                    session.catalog = (head, blob)

    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        with self._data.changed:
            session = self._session(session_id)
            for seq, old, _new in replacements:
                if not 1 <= seq <= len(session.lines) or session.lines[seq - 1] != old:
                    raise RedactionError(f"session {session_id!r}, seq {seq}: changed meanwhile; "
                                         "nothing was redacted")
            for seq, _old, new in replacements:
                session.lines[seq - 1] = new  # the old bytes object goes with its last reference
            first = min(r.seq for r in replacements)
            for seq in [s for s in session.snapshots if s >= first]:
                del session.snapshots[seq]
            session.catalog = None  # it named the erased senders; the store saves a new one

    def size(self, session_id: str) -> int:
        with self._data.changed:
            session = self._session(session_id)
            return (sum(len(line) + 1 for line in session.lines)
                    + sum(len(blob) for blob in session.snapshots.values()))

    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        data = self._data
        with data.changed:
            session = self._session(session_id)
            if incarnation is not None and session is not incarnation:
                raise SessionNotFoundError(session_id)  # deleted and created again

            def moved() -> bool:
                return data.sessions.get(session_id) is not session or session.head.seq > after_seq

            if not data.changed.wait_for(moved, timeout):
                return False
            if data.sessions.get(session_id) is not session:
                raise SessionNotFoundError(session_id)  # deleted (and maybe created again)
            return True
