"""The SQLite backend: one database file holding every session.

Tables::

    eventlog_meta(key, value)            format marker
    sessions(gen, id, seq, h,            one row per session: its head; ``gen`` names this
             sealed, archived)           life of the id (AUTOINCREMENT: never reused); the
                                         last seq compaction sealed, and the last archived
    events(session, seq, line)           the same record lines as the file backend,
                                         keyed by (sessions.gen, seq)
    archive(session, first, last, blob)  compacted records: chunks of those lines, compressed
    snapshots(session, seq, blob)
    catalog(gen, seq, entry)             the session catalog's entry of a session, valid
                                         while its head is at ``seq`` (derived data:
                                         added to stores made before it, on open)

The journal is WAL, so readers never block the writer nor each other. An append is one
``BEGIN IMMEDIATE`` transaction that reads the head from ``sessions``, inserts the rows
and moves the head: SQLite's write lock is the session lock, and the head and the rows
can never disagree. ``synchronous=NORMAL`` (a commit survives a process crash; the WAL is
fsynced at checkpoints) unless the append is durable, then ``FULL`` (fsynced at commit).

Connections are pooled per process. SQLite must not carry a connection across fork():
closing one in the child could checkpoint and delete a WAL the parent still uses, so
idle connections are closed in the parent *before* a fork, and the child abandons
(never closes) any it inherited and opens its own.

Over 500 lines (issue 14): the one class that answers every hook of the ``Backend`` contract
for SQLite, each a statement or two with its error handling; what SQLite shares with the
other row stores already lives in ``_rows`` and ``_chunks``.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core._codec import FORMAT_VERSION, FORMAT_VERSIONS, Head, Record
from ..core._errors import (
    CorruptLogError,
    InvalidInputError,
    LockTimeoutError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
    StoreNotFoundError,
)
from ..core._validate import check_mode, check_seconds, shown
from ._base import (
    SNAPSHOT_SPACING,
    SNAPSHOTS_KEPT,
    Appended,
    Archived,
    Build,
    Refold,
    Replacement,
    Sealed,
    poll_until,
)
from ._chunks import pack, rows_in
from ._rows import RowBackend, Rows
from ._sqlite_redaction import redact_rows

FORMAT = "eventlog-sqlite"
VERSION = str(FORMAT_VERSION)
"""The version new stores get; one in ``FORMAT_VERSIONS`` is read and written as it is."""
_IDLE_KEPT = 4
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_MAX_SEQ = (1 << 63) - 1
_ARCHIVE_BATCH = 4096  # records archived per write transaction, so appenders wait little
WAL_KEPT_BYTES = 4 << 20
"""What a checkpoint that resets the write-ahead log truncates it back to (journal_size_limit):
without it, SQLite never shrinks the file, and one long reader left it at 239 MB for good."""
DEFAULT_WAL_MAX_BYTES = 64 << 20

_MAGIC = b"SQLite format 3\0"  # the first 16 bytes of every SQLite database file
_TABLES = frozenset(("eventlog_meta", "sessions", "events", "archive", "snapshots", "catalog"))
_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventlog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    gen INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    h TEXT NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    line BLOB NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive (
    session INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (session, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalog (gen INTEGER PRIMARY KEY, seq INTEGER NOT NULL, entry BLOB NOT NULL);
"""
_CATALOG = _SCHEMA.strip().rsplit(";", 2)[-2]
# The catalog's keys, for its ordered walks (catalog_walk); added on open to stores made
# before them (derived data: rows without keys are refolded as they are walked past).
_CATALOG_KEYS = ["ALTER TABLE catalog ADD COLUMN created_at REAL",
                 "ALTER TABLE catalog ADD COLUMN last_activity REAL",
                 "CREATE INDEX IF NOT EXISTS catalog_by_created ON catalog (created_at)",
                 "CREATE INDEX IF NOT EXISTS catalog_by_activity ON catalog (last_activity)"]
_WALK_CHUNK = 256


def _add_catalog_keys(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(catalog)")}
    for statement in _CATALOG_KEYS:
        if "ADD COLUMN" not in statement or statement.split()[-2] not in columns:
            db.execute(statement)


class _Connection(sqlite3.Connection):
    full_sync = False  # whether this connection is at synchronous=FULL right now


_backends: weakref.WeakSet[SQLiteBackend] = weakref.WeakSet()


def _close_idle_before_fork() -> None:
    for backend in list(_backends):
        backend.close_idle()


if hasattr(os, "register_at_fork"):  # absent where there is no fork() (Windows)
    os.register_at_fork(before=_close_idle_before_fork)


def _past(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000  # no id holds a surrogate
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc)


class SQLiteBackend(RowBackend):
    """Sessions in one SQLite database file. Safe across threads, processes and ``fork()``."""

    # Over 300 lines (issue 14): one short method per ``Backend``/``RowBackend`` hook, each a
    # statement or two of SQL, around the one connection-and-transaction helper (``_db``,
    # ``_write``) they share; what row backends have in common is already in ``_rows`` and
    # ``_chunks``. Split it by hook kind if it grows past the module's 500 lines.

    source = "sqlite"
    poll_interval = 0.02

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o600,
                 lock_timeout: float = 10.0, create: bool = True, adopt: bool = False,
                 wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES) -> None:
        self.path = Path(path)
        self.mode = check_mode(mode)
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        if type(wal_max_bytes) is not int or not 64 << 10 <= wal_max_bytes <= 1 << 62:
            raise InvalidInputError(f"wal_max_bytes must be an int of at least 65536, not "
                                    f"{shown(wal_max_bytes)}")
        self.wal_max_bytes = wal_max_bytes
        self._wal = f"{self.path}-wal"
        self._pid = os.getpid()
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        # Wakes this process's followers at once; other processes' appends are polled.
        self._changed = threading.Condition(threading.Lock())
        self._closed = False
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Created here so it gets our mode; SQLite gives its -wal and -shm files the same.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, mode))
            elif not self.path.is_file():
                # sqlite3.connect would create the file: look before it can.
                raise StoreNotFoundError(str(self.path), "no such file")
            else:
                with open(self.path, "rb") as file:
                    if file.read(len(_MAGIC)) != _MAGIC:
                        raise StoreNotFoundError(str(self.path), "not an SQLite database")
        except OSError as exc:
            if isinstance(exc, StoreNotFoundError):
                raise
            raise StorageError(f"can't open SQLite store at {self.path}: {exc}") from exc
        self._init_schema(create, adopt)
        self._identity = self._file_identity()
        _backends.add(self)

    # Connections ----------------------------------------------------------------------

    def _connect(self) -> _Connection:
        db = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                             check_same_thread=False, factory=_Connection)
        assert isinstance(db, _Connection)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
        return db

    @contextlib.contextmanager
    def _db(self, what: str) -> Iterator[_Connection]:
        """A pooled connection, with SQLite's errors translated once, here."""
        if os.getpid() != self._pid:
            # Abandon, don't close, what the parent's threads held: see the module notes.
            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
            self._changed = threading.Condition(threading.Lock())
        db = None
        try:
            with self._lock:
                if self._idle:
                    db = self._idle.pop()
            if db is None:
                db = self._connect()
            yield db
        except sqlite3.Error as exc:
            if db is not None and db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise LockTimeoutError(
                    f"SQLite store {self.path}: {what}: the database stayed locked by another "
                    f"writer for {self.lock_timeout:g} s") from exc
            raise StorageError(f"SQLite store {self.path}: {what}: {exc}") from exc
        except BaseException:
            if db is not None and db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        finally:
            if db is not None:
                with self._lock:
                    keep = not self._closed and len(self._idle) < _IDLE_KEPT and not db.in_transaction
                    if keep:
                        self._idle.append(db)
                if not keep:
                    db.close()

    @contextlib.contextmanager
    def _write(self, what: str, durable: bool) -> Iterator[_Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed if the block returns."""
        with self._db(what) as db:
            if db.full_sync != durable:
                db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                db.full_sync = durable
            self._bound_wal(db, what)
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
            self._check_file(what)

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def _check_file(self, what: str) -> None:
        """After a commit, before it is acknowledged: the database file must still be the
        one this store opened. Unlinked (``rm``) or replaced under an open store, SQLite's
        connections go on writing into the old file, which nobody can read any more: a
        write committed there is refused, never acknowledged. (Checked after the commit:
        an unlink after the check is a removal after the acknowledgement.)"""
        if self._file_identity() != self._identity:
            raise StorageError(f"SQLite store {self.path}: {what}: the database file was removed "
                               "or replaced under this store, so the write went into a file no "
                               "longer in the store and is not acknowledged; reopen the store")

    def _bound_wal(self, db: _Connection, what: str) -> None:
        """Keep the write-ahead log under ``wal_max_bytes``, or write nothing.

        A checkpoint can copy the log into the database only up to the oldest open read
        transaction's snapshot, so while one reader keeps a transaction open, every commit
        adds its pages to the log (20,000 messages took it to 239 MB). Past the limit, a
        writer first checkpoints and truncates the log, waiting for such readers up to
        ``lock_timeout`` (SQLite's busy handler), and refuses the write if one is still
        there: a typed error, rather than a disk filled for every other user of it."""
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return  # no log yet; or the stat failed, and the write will tell
        if size <= self.wal_max_bytes:
            return
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise LockTimeoutError(
                f"SQLite store {self.path}: {what}: refused: the write-ahead log is "
                f"{size >> 20} MiB, over wal_max_bytes ({self.wal_max_bytes >> 20} MiB), because "
                f"a reader has kept a transaction open for over {self.lock_timeout:g} s; "
                "nothing was written")

    def _init_schema(self, create: bool, adopt: bool) -> None:
        with self._db("opening") as db:
            if not create:
                # Look before any write (WAL mode, tables): a database that is not a store
                # must be left exactly as it was.
                found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                   "name='eventlog_meta'").fetchone()
                if found is None:
                    raise StoreNotFoundError(str(self.path), "an SQLite database without eventlog's "
                                             "tables, so not an eventlog store")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "eventlog_meta" not in tables:
                if not create:
                    raise StoreNotFoundError(str(self.path), "its eventlog tables were removed")
                if tables - {"sqlite_sequence"} and not adopt:
                    raise StorageError(f"{self.path} is an SQLite database, but not an eventlog "
                                       "store; open it with adopt=True to add eventlog's tables")
                taken = sorted(tables & _TABLES)
                if taken:
                    raise StorageError(f"{self.path}: can't add eventlog's tables, the database "
                                       f"already has tables named {', '.join(taken)}")
                # Not executescript: it would commit first, outside our transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany("INSERT INTO eventlog_meta VALUES (?, ?)",
                               [("format", FORMAT), ("version", VERSION)])
            meta = dict(db.execute("SELECT key, value FROM eventlog_meta").fetchall())
            # A store made before the catalog gets its table: derived data, so it may.
            db.execute(_CATALOG)
            _add_catalog_keys(db)
            db.execute("COMMIT")
        if meta.get("format") != FORMAT:
            raise StorageError(f"{self.path} is not an eventlog SQLite store")
        version = meta.get("version")
        if version not in [str(v) for v in FORMAT_VERSIONS]:
            raise StorageError(f"{self.path}: store format version {version} is not supported "
                               f"(this eventlog reads {', '.join(map(str, FORMAT_VERSIONS))})")
        self.record_version = int(version)

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    def close(self) -> None:
        self._closed = True
        self.close_idle()

    # Writing ---------------------------------------------------------------------------

    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        with self._write(f"creating session {session_id!r}", durable) as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                raise SessionExistsError(session_id)
            gen = db.execute("INSERT INTO sessions (id, seq, h) VALUES (?, ?, ?)",
                             (session_id, record.seq, record.digest)).lastrowid
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (gen, record.seq, record.line))

    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        # Read whole before the transaction: the source's reads then never hold the lock
        # every writer of the database waits for.
        records = [record for batch in batches for record in batch]
        last = records[-1]
        with self._write(f"creating session {session_id!r}", durable) as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                raise SessionExistsError(session_id)
            gen = db.execute("INSERT INTO sessions (id, seq, h) VALUES (?, ?, ?)",
                             (session_id, last.seq, last.digest)).lastrowid
            db.executemany("INSERT INTO events VALUES (?, ?, ?)",
                           [(gen, r.seq, r.line) for r in records])
        self._notify()
        return {}

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        with self._write(f"appending to session {session_id!r}", durable) as db:
            gen, head = self._head(db, session_id)
            records = build(head)
            if records:
                db.executemany("INSERT INTO events VALUES (?, ?, ?)",
                               [(gen, r.seq, r.line) for r in records])
                db.execute("UPDATE sessions SET seq = ?, h = ? WHERE gen = ?",
                           (records[-1].seq, records[-1].digest, gen))
        if records:
            self._notify()
        return Appended(records)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        life: list[object] = [incarnation]

        def passed(_delay: float) -> bool:
            gen, head = self.read_head(session_id)
            if life[0] is None:
                life[0] = gen
            elif gen != life[0]:  # deleted and created again: gens are never reused
                raise SessionNotFoundError(session_id)
            return head.seq > after_seq

        def sleep(delay: float) -> None:
            with self._changed:  # an append or delete by this process wakes it at once
                self._changed.wait(delay)

        return poll_until(passed, timeout, first=0.001, most=self.poll_interval, sleep=sleep)

    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        with self._write(f"deleting session {session_id!r}", False) as db:
            gen, head = self._head(db, session_id)
            if if_head is not None and head != if_head:
                return False
            for table, column in (("events", "session"), ("archive", "session"),
                                  ("snapshots", "session"), ("catalog", "gen"), ("sessions", "gen")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (gen,))
        self._notify()  # followers of it must learn it is gone
        return True

    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        """Rows and archive chunks rewritten in one transaction with ``secure_delete`` on (the
        freed bytes are overwritten with zeros), then a truncating checkpoint, so the old
        page images leave the write-ahead log too."""
        what = f"redacting in session {session_id!r}"
        with self._db(what) as db:
            db.execute("PRAGMA secure_delete=ON")
            try:
                db.execute("BEGIN IMMEDIATE")
                redact_rows(db, session_id, replacements)
                db.execute("COMMIT")
            finally:
                db.execute("PRAGMA secure_delete=OFF")
        self._truncate_wal(what)

    def _truncate_wal(self, what: str) -> None:
        """Checkpoint the whole log into the database and truncate it to nothing, waiting
        for readers up to ``lock_timeout``; ``LockTimeoutError`` if one stays."""
        deadline = time.monotonic() + self.lock_timeout
        with self._db(what) as db:
            while True:
                busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                if time.monotonic() > deadline:
                    raise LockTimeoutError(f"SQLite store {self.path}: {what}: redacted, but a "
                                           "reader kept the write-ahead log from being truncated "
                                           "(the old bytes may stay in it until the next checkpoint)")
                time.sleep(0.05)

    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        with self._write(f"saving a snapshot of {session_id!r}", durable) as db:
            gen, _head = self._head(db, session_id)
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (gen, seq, blob))
            # _base.snapshot_seqs_dropped's rule: the newest, and the oldest of each span.
            db.execute("DELETE FROM snapshots WHERE session = ? AND seq NOT IN (SELECT seq FROM "
                       "snapshots WHERE session = ? ORDER BY seq DESC LIMIT ?) AND seq NOT IN "
                       "(SELECT min(seq) FROM snapshots WHERE session = ? GROUP BY seq / ?)",
                       (gen, gen, SNAPSHOTS_KEPT, gen, SNAPSHOT_SPACING))

    # The session catalog -------------------------------------------------------------

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        # One indexed walk of ``sessions`` (ids sort as SQLite's BINARY collation does,
        # by code point), joined with the entries made for each session's current seq.
        where, bounds = "s.id >= ?", [prefix]
        end = _past(prefix)
        if end is not None:
            where, bounds = "s.id >= ? AND s.id < ?", [prefix, end]
        with self._db("reading the session catalog") as db:
            rows = db.execute("SELECT s.id, c.entry FROM sessions s LEFT JOIN catalog c "
                              f"ON c.gen = s.gen AND c.seq = s.seq WHERE {where} ORDER BY s.id",
                              bounds).fetchall()
        return [row for row in rows if row[0].startswith(prefix)]

    def catalog_reset(self) -> None:
        with self._write("dropping the session catalog", False) as db:
            db.execute("DELETE FROM catalog")

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        with self._write("saving session catalog entries", False) as db:
            db.executemany("INSERT OR REPLACE INTO catalog SELECT gen, seq, ?, ?, ? FROM sessions "
                           "WHERE id = ? AND seq = ? AND h = ?",
                           [(blob, None if keys is None else keys[i][0],
                             None if keys is None else keys[i][1], sid, head.seq, head.digest)
                            for i, (sid, head, blob) in enumerate(entries)])

    def catalog_walk(self, order: str, descending: bool, start: float | None,
                     refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        # The sessions whose entry is missing, stale or has no keys, placed by their folds
        # (one scan of ``sessions`` in SQLite); the rest walked in pages along the order's
        # index (EXPLAIN QUERY PLAN: SEARCH c USING INDEX catalog_by_activity).
        if order not in ("last_activity", "created_at"):  # a column name, in the SQL below
            return None
        with self._db("reading the session catalog") as db:
            unsure = [row[0] for row in db.execute(
                "SELECT s.id FROM sessions s LEFT JOIN catalog c ON c.gen = s.gen AND c.seq = s.seq "
                f"WHERE c.gen IS NULL OR c.{order} IS NULL")]
        placed = []
        for sid in unsure:
            fold = refold(sid)
            if fold is not None:
                key = fold[2] if order == "created_at" else fold[3]
                if start is None or (key <= start if descending else key >= start):
                    placed.append((key, sid, fold[1]))
        placed.sort(reverse=descending)
        skip = set(unsure)
        walked = (row for row in self._walk_pages(order, descending, start) if row[1] not in skip)
        return self._walk_checked(heapq.merge(walked, placed, key=lambda r: (r[0], r[1]),
                                              reverse=descending), refold)

    def _walk_pages(self, order: str, descending: bool,
                    start: float | None) -> Iterator[tuple[float, str, bytes | None]]:
        direction, cmp = ("DESC", "<") if descending else ("ASC", ">")
        after: tuple[float, str] | None = None
        while True:
            bounds: list[float | str]
            if after is None:
                where, bounds = ("" if start is None else f"WHERE c.{order} {cmp}= ?",
                                 [] if start is None else [start])
            else:
                where, bounds = f"WHERE (c.{order}, s.id) {cmp} (?, ?)", [after[0], after[1]]
            with self._db("reading the session catalog") as db:
                rows = db.execute(
                    f"SELECT c.{order}, s.id, CASE WHEN c.seq = s.seq THEN c.entry END "
                    f"FROM catalog c JOIN sessions s ON s.gen = c.gen {where} "
                    f"ORDER BY c.{order} {direction}, s.id {direction} LIMIT {_WALK_CHUNK}",
                    bounds).fetchall()
            for key, sid, entry in rows:
                if key is not None:
                    yield key, sid, entry
            if len(rows) < _WALK_CHUNK:
                return
            after = (rows[-1][0], rows[-1][1])

    @staticmethod
    def _walk_checked(rows: Iterator[tuple[float, str, bytes | None]],
                      refold: Refold) -> Iterator[tuple[str, bytes | None]]:
        for _key, sid, entry in rows:
            if entry is not None:
                yield sid, entry
                continue
            fold = refold(sid)  # appended to since: shown where it stood (see the README)
            if fold is not None:
                yield sid, fold[1]

    # Reading ---------------------------------------------------------------------------

    @staticmethod
    def _head(db: sqlite3.Connection, session_id: str) -> tuple[int, Head]:
        row = db.execute("SELECT gen, seq, h FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFoundError(session_id)
        return row[0], Head(row[1], row[2])

    def read_head(self, session_id: str) -> tuple[Any, Head]:
        with self._db(f"reading session {session_id!r}") as db:
            return self._head(db, session_id)

    def read_rows(self, session_id: str, generation: Any, first: int, last: int | None,
                  limit: int, *, newest_first: bool = False) -> Rows:
        high = _MAX_SEQ if last is None else last
        with self._db(f"reading session {session_id!r}") as db:
            # One read transaction: archive() moves rows from events to chunks meanwhile.
            db.execute("BEGIN")
            found = db.execute("SELECT archived FROM sessions WHERE gen = ?", (generation,)).fetchone()
            if found is None:
                db.execute("COMMIT")
                return []  # deleted since the scan began
            archived: int = found[0]
            rows: Rows = []
            if newest_first:
                rows = self._live_rows(db, generation, max(first, archived + 1), high, limit, "DESC")
            if len(rows) < limit and first <= archived:
                chunks = db.execute(
                    "SELECT first, last, blob FROM archive WHERE session = ? AND last >= ? AND "
                    f"first <= ? ORDER BY first {'DESC' if newest_first else 'ASC'}",
                    (generation, first, min(high, archived)))
                rows += rows_in(session_id, chunks, first, high, limit - len(rows),
                                newest_first=newest_first)
            if not newest_first and len(rows) < limit:
                rows += self._live_rows(db, generation, max(first, archived + 1), high,
                                        limit - len(rows), "ASC")
            db.execute("COMMIT")
        return rows

    @staticmethod
    def _live_rows(db: sqlite3.Connection, generation: int, first: int, last: int, limit: int,
                   order: str) -> Rows:
        if first > last:
            return []
        return db.execute(f"SELECT seq, line FROM events WHERE session = ? AND seq BETWEEN ? AND ? "
                          f"ORDER BY seq {order} LIMIT ?", (generation, first, last, limit)).fetchall()

    def exists(self, session_id: str) -> bool:
        with self._db(f"reading session {session_id!r}") as db:
            return db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def session_ids(self) -> list[str]:
        with self._db("listing sessions") as db:
            return [row[0] for row in db.execute("SELECT id FROM sessions ORDER BY id")]

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        with self._db(f"reading snapshots of {session_id!r}") as db:
            gen, _head = self._head(db, session_id)
            blobs = [row[0] for row in db.execute(
                "SELECT blob FROM snapshots WHERE session = ? ORDER BY seq DESC", (gen,))]
        return iter(blobs)

    def size(self, session_id: str) -> int:
        with self._db(f"sizing session {session_id!r}") as db:
            gen, _head = self._head(db, session_id)
            total: int = db.execute(
                "SELECT (SELECT COALESCE(SUM(LENGTH(line) + 1), 0) FROM events WHERE session = ?)"
                " + (SELECT COALESCE(SUM(LENGTH(blob)), 0) FROM archive WHERE session = ?)"
                " + (SELECT COALESCE(SUM(LENGTH(blob)), 0) FROM snapshots WHERE session = ?)",
                (gen, gen, gen)).fetchone()[0]
        return total

    # Compaction ------------------------------------------------------------------------

    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        """Mark everything up to the head as sealed: ``archive`` moves up to there."""
        with self._write(f"sealing session {session_id!r}", durable) as db:
            gen, head = self._head(db, session_id)
            db.execute("UPDATE sessions SET sealed = ? WHERE gen = ?", (head.seq, gen))
        return Sealed(head)

    def archive(self, session_id: str) -> Archived:
        """Move sealed rows into compressed chunks of the archive table.

        Rows are read and compressed outside the write lock (sealed rows never change),
        then swapped in by a short transaction that checks nobody archived them first."""
        chunks = before = after = 0
        what = f"archiving session {session_id!r}"
        while True:
            with self._db(what) as db:
                found = db.execute("SELECT gen, sealed, archived FROM sessions WHERE id = ?",
                                   (session_id,)).fetchone()
                if found is None:
                    raise SessionNotFoundError(session_id)
                gen, sealed, archived = found
                if archived >= sealed:
                    return Archived(chunks, before, after)
                rows = self._live_rows(db, gen, archived + 1, sealed, _ARCHIVE_BATCH, "ASC")
            if not rows or rows[0][0] != archived + 1:
                raise CorruptLogError(f"session {session_id!r}: sealed records after seq "
                                      f"{archived} are missing", session_id=session_id,
                                      seq=archived + 1, where="sqlite")
            packed = pack(rows)
            with self._write(what, False) as db:
                now = db.execute("SELECT archived FROM sessions WHERE gen = ?", (gen,)).fetchone()
                if now is None or now[0] != archived:
                    continue  # deleted, or another compactor got here first: look again
                db.executemany("INSERT INTO archive VALUES (?, ?, ?, ?)",
                               [(gen, low, high, blob) for low, high, blob in packed])
                db.execute("DELETE FROM events WHERE session = ? AND seq BETWEEN ? AND ?",
                           (gen, archived + 1, rows[-1][0]))
                db.execute("UPDATE sessions SET archived = ? WHERE gen = ?", (rows[-1][0], gen))
            chunks += len(packed)
            before += sum(len(line) + 1 for _seq, line in rows)
            after += sum(len(blob) for _low, _high, blob in packed)

