"""The narrow set of storage hooks a backend fills in.

The store above owns every rule (validation, the record format, the digest chain,
``expected_seq``, folding, snapshots policy, errors); a backend only keeps bytes.
Each record is handed over already encoded and chained, as a ``Record``; the
backend gives lines back in order and the store checks them. Anything two
backends would share belongs in the store, not here.

Opening: ``eventlog.open`` builds a backend by calling its constructor with the
location, the keyword ``create`` and the caller's backend options. ``create`` is the
one place a backend learns whether it may make its store:

- ``create=True`` (the default): make whatever the store needs if it is missing
  (directories, a database file, tables, a format marker).
- ``create=False`` (commands that only read, ``serve --read-only``, ``copy``'s source):
  create *nothing*, not a directory, file, table, key nor marker, and raise
  ``StoreNotFoundError`` naming the location if no store of this backend is there, or
  if what is there is not one. An existing store opens as usual (and can be written).

Either way, a location that holds something else (a non-empty directory, a database
with other tables) is refused rather than taken over, unless the backend offers an
``adopt=True`` option and the caller passed it. A backend whose stores can't be told
apart from nothing (Redis, where a store is a key prefix) creates nothing when opened
and says so in its docstring.
"""

from __future__ import annotations

import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..core._codec import FORMAT_VERSION, Head, Record, payload_chain, seal_one
from ..core._errors import (
    ConflictError,
    CorruptLogError,
    EventLogError,
    RedactionError,
    SessionNotFoundError,
)

Lines = Iterator[tuple[str, int, bytes]]
"""``(source, line number, line)`` in log order; source and number only serve error messages."""

Build = Callable[[Head], list[Record]]
"""Called by ``append`` with the session's current head, under the backend's lock (or
optimistically, for backends that retry); returns the records to write. It may raise,
and then nothing is written. An optimistic backend may call it more than once, with
different heads (see ``Backend.exclusive_build``); only the last call's records are written."""


Since = Callable[[Any], "tuple[list[bytes], dict[str, Any] | None] | None"]
"""Offered to an append's guard by a backend that can read cheaply under its lock: given a
position this backend returned earlier, the record lines after it up to the head, and the
position after them; None when it can't (the guard then reads with ``scan``)."""

Guard = Callable[[Head, "Since | None"], None]
"""Called with the head (and a ``Since`` or None) where ``build`` would be, under the lock;
it raises to refuse the append. See ``Backend.append_one``."""


class Unique(NamedTuple):
    """What a guarded ``append_one`` must not duplicate, for a backend that can look for it
    among its own records (PostgreSQL, in the statement that appends): the ``id`` of a
    ``message`` event's data (``field`` ``"id"``) or an event's idempotency key (``"key"``).
    Only visible events count (README, "Fork, rewind and retries"), so a rewind among the
    events looked through leaves the answer to the guard, as does anything else the
    backend can't read there."""

    field: str
    value: str


SNAPSHOTS_KEPT = 3
"""Every backend keeps a session's newest ``SNAPSHOTS_KEPT`` snapshots..."""

SNAPSHOT_SPACING = 10_000
"""... and the oldest of each span of ``SNAPSHOT_SPACING`` seqs (the snapshots whose
``seq // SNAPSHOT_SPACING`` is the same), so that the state at any seq (a rewind's
``to_seq``, a fork's ``at_seq``) is folded from a snapshot at most about that many events
before it: a million-event session keeps about a hundred. A rewind to the middle of one
folded half a million events when only the newest were kept."""


def snapshot_seqs_dropped(seqs: Iterable[int]) -> list[int]:
    """Of the seqs a session holds snapshots at, those to remove: all but the newest
    ``SNAPSHOTS_KEPT`` and the oldest of each ``SNAPSHOT_SPACING``. The one statement of
    the rule; backends that prune in their server's language (SQL, Lua) follow it, and the
    conformance suite checks that every backend keeps the same."""
    newest_first = sorted(seqs, reverse=True)
    oldest_of_span = {seq // SNAPSHOT_SPACING: seq for seq in newest_first}  # the last wins
    kept = set(newest_first[:SNAPSHOTS_KEPT]) | set(oldest_of_span.values())
    return [seq for seq in newest_first if seq not in kept]


class Appended(NamedTuple):
    """What an append wrote, and where the log stands after it (a backend hint, may be None).

    A NamedTuple: every append builds one, and a dataclass costs several times as much."""

    records: list[Record]
    position: dict[str, Any] | None = None


Chunks = Iterator[tuple[str, int, list[bytes]]]
"""``(source, first line number, lines)``: the same lines in blocks, for backends that read in bulk."""


@dataclass(slots=True)
class Scan:
    """A forward read: ``start`` is the head just before the first line of ``lines``.

    A backend that reads in bulk also sets ``chunks`` (the same lines in blocks, which
    replays much faster); the store reads one or the other, never both."""

    start: Head
    lines: Lines
    position: Callable[[], dict[str, Any] | None] = field(default=lambda: None)
    chunks: Chunks | None = None


@dataclass(frozen=True, slots=True)
class Sealed:
    """A boundary ``seal`` made: everything up to ``head`` is immutable from now on.

    ``position`` is a ``scan`` hint for reading on from ``head`` (may be None)."""

    head: Head
    position: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Archived:
    """What ``archive`` did: segments compressed, and the bytes they took before and after."""

    segments: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


class Replacement(NamedTuple):
    """A record line ``redact`` replaces: at ``seq``, ``old`` becomes ``new`` (a tombstone's
    line, with the same seq and digest)."""

    seq: int
    old: bytes
    new: bytes


class Watch(Protocol):
    """A cheap look at whether one life of a session may have changed (see ``Backend.watch``)."""

    life: object
    """The life (``Backend.incarnation``) of the session this watch looks at."""

    def changed(self) -> bool:
        """True if the session may have changed since the watch was made or last said
        True (or is gone); False only if it surely has not."""

    def close(self) -> None: ...


class WouldBlock(Exception):
    """An append run ``nonblocking`` found its session's lock taken, before it wrote anything:
    run it again where it may wait (``AsyncEventLog`` hands it to a worker thread). Not an
    ``EventLogError``: it never leaves the store."""


_nonblocking = threading.local()


@contextmanager
def nonblocking() -> Iterator[None]:
    """Within the block, in this thread, the next session lock an append takes is tried
    once: if another thread or process holds it, ``WouldBlock``. Once, because the first
    lock an append takes comes before anything it writes, and any lock after it (a
    catalog's, a snapshot's) comes after a write, where giving up would lose track of it.
    For a backend whose ``inline_appends`` is True."""
    _nonblocking.on = True
    try:
        yield
    finally:
        _nonblocking.on = False


def take_nonblocking() -> bool:
    """True (once) if the caller is the first lock taken in a ``nonblocking`` block."""
    if getattr(_nonblocking, "on", False):
        _nonblocking.on = False
        return True
    return False


class Backend(ABC):
    """Storage hooks. Every method takes an already validated session id.

    Constructors take ``create: bool = True`` as a keyword (see the module docstring)."""

    poll_interval = 0.05
    """Longest sleep of the polling ``wait`` below; backends that can block override ``wait``."""

    record_version = FORMAT_VERSION
    """The record format of this store (see ``core._codec``): what the store seals records
    in and checks them by. A backend that finds a store written in an older version sets
    its instance's to that version and keeps writing it; new stores get ``FORMAT_VERSION``."""

    inline_appends = False
    """Whether a non-durable append may run on an event loop's thread: it never waits for
    anything but its session's lock (no server, no fsync, no retry sleeps), and within
    ``nonblocking`` it raises ``WouldBlock`` rather than wait for that lock."""

    exclusive_build = True
    """Whether ``append`` calls ``build`` exactly once per append, while no other writer of
    the session can (under a lock), so the store may advance per-session state inside it.
    Optimistic backends, which may call it again or concurrently, set this False."""

    @abstractmethod
    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        """Store a new session whose first record is ``record``, atomically.

        Raise ``SessionExistsError`` if the id exists (and change nothing)."""

    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        """Store a new session whose whole log is the records ``batches`` hand over (seq 1 on,
        sealed and chained: a fork's copy), in one bulk write where the backend can; return
        the position hint after the last record. Raise ``SessionExistsError`` if the id
        exists, and store nothing if it or ``batches`` raises.

        The backends here write it whole before anyone can see it. This default, for a
        backend that can't, creates the session and appends a batch at a time, each only
        at the head the one before left (someone else's append is a ``ConflictError``),
        and on failure removes what it wrote, unless someone wrote after it."""
        iterator = iter(batches)
        first = next(iterator)
        self.create(session_id, first[0], durable=durable)
        head = Head(1, first[0].digest)
        position = None
        try:
            for batch in itertools.chain([first[1:]], iterator):
                if not batch:
                    continue

                def build(found: Head, batch: list[Record] = batch, at: Head = head) -> list[Record]:
                    if found != at:
                        raise ConflictError(session_id, at.seq, found.seq)
                    return batch
                position = self.append(session_id, build, durable=durable, rebuild=False).position
                head = Head(batch[-1].seq, batch[-1].digest)
        except BaseException:
            try:
                self.delete(session_id, if_head=head)
            except EventLogError:
                pass  # the error that stopped the copy is the one to raise
            raise
        return position

    @abstractmethod
    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        """Append what ``build(head)`` returns, all or nothing, exclusively with other appends.

        A backend that locks calls ``build`` once, under its lock, and ignores ``rebuild``.
        An optimistic backend calls ``build`` with the head it read and writes only if the
        head is still that one. When the head moved meanwhile, it calls ``build`` again with
        the new head (a bounded number of times) if ``rebuild`` is True; if False, the
        caller pinned the head (``expected_seq``), so it raises ``ConflictError`` naming the
        head ``build`` accepted and the one it found, without a second attempt."""

    def append_one(  # noqa: PLR0913 - the append's parts, passed apart to spare a tuple per call
            self, session_id: str, payload: bytes, max_bytes: int, expected_seq: int | None,
            durable: bool, guard: Guard | None = None, checked: Head | None = None,
            unique: Unique | None = None) -> tuple[Head, Head, dict[str, Any] | None]:
        """Seal one encoded payload (see ``seal_one``) after the session's head and append it:
        the single-event append behind every ``add_message`` and ``append``.

        Returns the head after it (the record's seq and digest), the head it was sealed
        after (for an optimistic backend, the one it was finally written after) and the
        position hint. With ``expected_seq``, raises ``ConflictError`` unless the head is
        at that seq, and writes nothing. This default goes through ``append``; a backend
        may override it with a flatter path (the file backend does: each Python call costs
        about as much as a syscall there). The store advances its writer's fold by the
        returned pair of heads, after the call, so ``exclusive_build`` does not matter here.

        ``guard``, if given, is called with the head (and a ``Since``, or None) before
        anything else, where ``build`` would be (under the lock); it raises to refuse the
        append (the store's check for a message id or idempotency key already stored), and
        then nothing is written. ``checked``, if given, is a head at which the caller knows
        the guard passes: a backend may skip calling it when the head it builds on is that
        one (the store checks its window outside the lock, so a lone writer's appends never
        call it). ``unique``, if given, says what the guard looks for: a backend that can't
        run Python under its lock may look for it itself in the events after a head the
        guard passed at (``checked``, or one it checked with the guard), and append if
        none of them holds it (this default ignores it)."""
        after: list[Head] = []
        version = self.record_version
        # The data's hash (version 2) once, outside the lock, however often build runs.
        chain = None if version == 1 else payload_chain(payload)

        def build(head: Head) -> list[Record]:
            if guard is not None and head != checked:
                guard(head, None)
            if expected_seq is not None and head.seq != expected_seq:
                raise ConflictError(session_id, expected_seq, head.seq)
            record = seal_one(payload, head, max_bytes, version, chain)
            after[:] = [head]  # an optimistic backend may build again: the last call is written
            return [record]

        result = self.append(session_id, build, durable=durable, rebuild=expected_seq is None)
        record = result.records[0]
        return Head(record.seq, record.digest), after[0], result.position

    @abstractmethod
    def exists(self, session_id: str) -> bool: ...

    @abstractmethod
    def session_ids(self) -> list[str]:
        """Every session's id, sorted."""

    @abstractmethod
    def scan(self, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
        """Lines from seq ``after_seq + 1`` on (a backend may start earlier; the store skips).

        ``position`` is a hint this backend returned earlier for exactly ``after_seq``."""

    @abstractmethod
    def scan_back(self, session_id: str) -> Lines:
        """Lines from the newest to the oldest."""

    @abstractmethod
    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        """Remove a session whole; with ``if_head``, only if its head is still that
        (checked under the same exclusion as appends). Return whether it was removed."""

    def delete_deferred(self, session_id: str, *, if_head: Head) -> bool | None:
        """``delete(if_head=...)`` for a batch (retention), of a session the caller has not
        read: only if the backend checks, under the session's lock, that the log is sound
        and its head is exactly ``if_head`` (True: gone from the store; False: its head is
        another). None: the backend can't check that cheaply, nothing was done, and the
        caller reads the log itself. What a delete owes the catalog and the freeing of its
        space may wait for ``settle_deletes``, which the caller runs after the batch."""
        return None

    def settle_deletes(self) -> None:  # noqa: B027 - optional hook: most backends delete at once
        """Finish the ``delete_deferred`` calls made so far (see there)."""

    @abstractmethod
    def snapshots(self, session_id: str) -> Iterator[bytes]:
        """Stored snapshots, newest first."""

    @abstractmethod
    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        """Store a snapshot at ``seq`` atomically (a reader sees all of it or none)."""

    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        """End the session's active segment at its head, so that everything up to the
        head is immutable and later appends go to a new segment; return the head.

        Called by ``compact`` before it snapshots the head and ``archive``s. It runs
        under the same exclusion as appends. Backends without segments have nothing
        to seal: this default only reads the head under that exclusion (an append of
        nothing), which is a boundary too.
        """
        heads: list[Head] = []

        def build(head: Head) -> list[Record]:
            heads.append(head)
            return []

        appended = self.append(session_id, build, durable=durable)
        return Sealed(heads[-1], appended.position)

    def archive(self, session_id: str) -> Archived:
        """Compress the session's sealed segments into an archive form, in place.

        Must run beside appenders and readers of any process, keep every record
        readable by ``scan``/``scan_back`` throughout, never change a segment an
        appender may write, and leave a readable session if the process dies at any
        point. Backends that don't compress (or do it themselves) keep this default,
        which does nothing.
        """
        return Archived()

    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        """Replace record lines in place (see ``Replacement``), all or nothing, and erase
        the old bytes from everything the backend keeps of the session when it returns:
        live records, archives (compressed or cold), and snapshots at or after the first
        replaced seq (their folds saw the erased data); whatever the backend's storage
        keeps of freed space is overwritten where it can be (SQLite's secure delete and a
        truncating checkpoint of its log). Raise ``RedactionError``
        and change nothing if a line is not ``old`` (someone redacted it meanwhile).

        Every backend must implement it and pass tests/_contract_redaction.py; this
        default refuses."""
        raise RedactionError(f"the {type(self).__name__} backend can't redact")

    def check(self, session_id: str) -> list[str]:
        """Problems with the backend's own structure (beyond the chain the store checks)."""
        return []

    def recorded_head(self, session_id: str) -> Head | None:
        """The head the backend recorded apart from the log (the file store's lock page),
        read before ``verify`` reads the log: a log that ends before it, or holds another
        digest at its seq, lost acknowledged records. None where there is no such record
        (a database keeps its head in the same transaction as the rows)."""
        return None

    def size(self, session_id: str) -> int:
        """Bytes the session takes in storage, as near as the backend can tell."""
        return 0

    def last_seq(self, session_id: str) -> int:
        """The session's last seq, cheaply; raise ``SessionNotFoundError`` if it is gone."""
        for source, _lineno, line in self.scan_back(session_id):
            if line.startswith(b'{"seq":'):
                try:
                    return int(line[7:line.index(b",")])
                except ValueError:  # a damaged record: say so, rather than a raw ValueError
                    raise CorruptLogError(f"session {session_id!r}, {source}: the last record "
                                          "can't be read", session_id=session_id,
                                          where=source) from None
        return 0

    @abstractmethod
    def incarnation(self, session_id: str) -> object:
        """A token naming this life of the session; raise ``SessionNotFoundError`` if it is gone.

        Tokens of one life compare equal, and a life deleted and created again under the
        same id gets a token unequal to every earlier one. ``follow`` takes the token when
        it starts and hands it to ``wait``: without it, a follower of a session deleted and
        created again waited on forever (the new log ends below its position) or read the
        new log on from the old position, as if it were the same one."""

    def watch(self, session_id: str) -> Watch | None:
        """A ``Watch`` on the session's life as it is now, for readers that keep what they
        read and want to skip a read when nothing changed; None if the session does not
        exist or the backend has no cheaper test than reading."""
        return None

    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        """Block until the session's last seq passes ``after_seq`` (True) or ``timeout`` (False).

        Raise ``SessionNotFoundError`` once the session is gone or is no longer the life
        ``incarnation`` names (None: the life found when the wait starts), within about
        ``poll_interval`` (a second, for backends that block on the server) of that.
        Polls with a backoff from 1 ms; backends that can be woken override this."""
        life = self.incarnation(session_id) if incarnation is None else incarnation

        def passed(_delay: float) -> bool:
            last = self.last_seq(session_id)
            # Read after the seq: a life never comes back, so if it is still ours now, the
            # seq read before was ours too.
            if self.incarnation(session_id) != life:
                raise SessionNotFoundError(session_id)
            return last > after_seq

        return poll_until(passed, timeout, first=0.001, most=self.poll_interval)

    # The session catalog (store/_catalog.py): derived summaries, checked against heads ------

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        """Every session whose id starts with ``prefix``, by id, with the catalog entry last
        saved for it (``catalog_write``) if that entry is still for the session's current
        head, else None (the store then folds the session and saves a new one).

        Entries are derived data: a backend may lose them at will, never hand back one
        for an older head. This default keeps them in this process only, checked by the
        session's life and last seq; backends override it with something shared and cheaper."""
        return catalog_read_generic(self, prefix)

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        """Save each ``(id, head, entry)`` whose session's head is still ``head``; skip the
        rest. ``keys``: each entry's ``(created_at, last_activity)``, for a backend that
        orders them itself (``catalog_walk``)."""
        catalog_write_generic(self, entries)

    def catalog_reset(self) -> None:
        """Forget every catalog entry (``reindex`` builds them again)."""
        _catalog_cache(self).clear()

    def catalog_walk(self, order: str, descending: bool, start: float | None,
                     refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        """The sessions in ``(order, id)`` order (``order`` is ``last_activity`` or
        ``created_at``), from the key ``start`` on (inclusive; None: from the first), each
        with its current entry (a session the backend can't vouch for is passed to
        ``refold``, the store's fold of it, and shown with what that returns; left out if
        None). Lazy: a page reads what it shows. None when the backend keeps no order (the
        store sorts ``catalog_read``'s answer) or must be rebuilt first
        (``catalog_rebuild``, when ``catalog_wants_rebuild``)."""
        return None

    def catalog_wants_rebuild(self, *, listed: int | None = None) -> bool:
        """Whether ``catalog_walk`` needs ``catalog_rebuild`` first; ``listed``: asked after
        a listing of every session (that many), whether the catalog would have one built
        from that listing now."""
        return False

    def catalog_rebuild(  # noqa: B027 - optional hook: only a backend with an ordered catalog builds one
            self, entries: list[tuple[str, Head, bytes, tuple[float, float]]]) -> None:
        """Build the ordered catalog from exactly these entries: every session of the store,
        each just checked against its head (``(id, head, entry, (created_at, last_activity))``)."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release handles. The store calls it once."""


Refold = Callable[[str], "tuple[Head, bytes, float, float] | None"]
"""The store's fold of one session for a catalog: its head, entry and ``(created_at,
last_activity)``, or None (gone, or damaged and so left out)."""


class CatalogUnusable(EventLogError):
    """A backend's ordered catalog turned out damaged half-way through a walk; the store
    lists from ``catalog_read`` instead (and the catalog is rebuilt). Never reaches users."""


def _catalog_cache(backend: Backend) -> dict[str, tuple[object, bytes]]:
    cache: dict[str, tuple[object, bytes]] | None = backend.__dict__.get("_catalog_entries")
    if cache is None:
        cache = backend.__dict__.setdefault("_catalog_entries", {})
    return cache


def _version(backend: Backend, session_id: str) -> object:
    """What names a session's head in this process: its life and last seq."""
    return (backend.incarnation(session_id), backend.last_seq(session_id))


def catalog_read_generic(backend: Backend, prefix: str) -> list[tuple[str, bytes | None]]:
    cache = _catalog_cache(backend)
    found: list[tuple[str, bytes | None]] = []
    for sid in backend.session_ids():
        if not sid.startswith(prefix):
            continue
        kept = cache.get(sid)
        if kept is None:
            found.append((sid, None))
            continue
        try:
            current = _version(backend, sid)
        except SessionNotFoundError:
            cache.pop(sid, None)
            continue
        except CorruptLogError:
            current = None  # the store's fold reports it
        found.append((sid, kept[1] if kept[0] == current else None))
    listed = {sid for sid, _ in found}
    for sid in [sid for sid in cache if sid.startswith(prefix) and sid not in listed]:
        cache.pop(sid, None)  # deleted: forget it
    return found


def catalog_write_generic(backend: Backend, entries: list[tuple[str, Head, bytes]]) -> None:
    cache = _catalog_cache(backend)
    for sid, head, blob in entries:
        try:
            version = _version(backend, sid)
        except (SessionNotFoundError, CorruptLogError):
            continue
        if version[1] == head.seq:  # type: ignore[index]
            cache[sid] = (version, blob)


def poll_until(check: Callable[[float], bool], timeout: float | None, *, first: float, most: float,
               sleep: Callable[[float], object] = time.sleep) -> bool:
    """Call ``check(delay)`` until it returns True (then True) or ``timeout`` seconds pass
    (then False; None: never), sleeping between calls from ``first`` seconds, doubling up to
    ``most``. ``check`` stops the wait with an error by raising; it gets the coming delay,
    so it can do its dearer checks only once the wait has slowed down. The one backoff loop
    of every backend's ``wait``: each passes its own check, and ``sleep`` if it can be woken."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = first
    while True:
        if check(delay):
            return True
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        sleep(delay)
        delay = min(delay * 2, most)
