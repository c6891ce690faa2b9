"""The PostgreSQL backend (``pip install 'eventlog[postgres]'``): every session in a few
tables of one schema (see ``_schema``), on psycopg 3 and its pool.

An append is one statement, one round trip (``_statements.APPEND_ONE``): the server moves
the session's head (which locks its row), numbers and chains the record with its own
``sha256()`` (the bytes and digests are those of every other backend) and inserts it, so
concurrent writers of a session, on any machine, queue on that row instead of retrying. A batch
(``append_many``, ``add_messages``) locks the row, builds on the head it read, writes.

Exactly once across a lost connection: every write carries a token (the last record of an
append keeps it, and compaction keeps those of the records it moves for a while), and a
write whose reply was lost is not sent again before its server process is gone (see
``_pool``); the retry then finds its own token, or writes. A write whose fate can't be
learnt within ``retry_for`` raises ``StorageError`` saying so.

Durability is the server's: an acknowledged append is committed, and survives a crash of
the server as its ``synchronous_commit`` and ``fsync`` settings say (``on``, the default:
it does). ``durability="fsync"`` asks nothing more of it.

Just over 500 lines (issue 14): the one class that answers every hook of the ``Backend``
contract for PostgreSQL; the statements are in ``_statements``, the tables in ``_schema``,
connections and retries in ``_pool``, LISTEN in ``_listen``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import Int8

from ...core._codec import Head, Record, payload_chain, too_large
from ...core._errors import (
    ConflictError,
    CorruptLogError,
    InvalidInputError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
)
from ...core._validate import check_seconds
from .._base import (
    SNAPSHOT_SPACING,
    SNAPSHOTS_KEPT,
    Appended,
    Archived,
    Build,
    Guard,
    Refold,
    Replacement,
    Sealed,
    Unique,
)
from .._chunks import pack, rows_in
from .._rows import RowBackend, Rows
from . import _catalog
from . import _statements as sql
from ._listen import Listener
from ._pool import Conn, Connections
from ._redaction import redact_rows
from ._schema import DEFAULT_SCHEMA, check_schema_name, prepare, quoted

_MAX_SEQ = (1 << 63) - 1
_ARCHIVE_BATCH = 4096  # records archived per transaction, so appenders wait little
_CHUNKS_PER_READ = 8
_TOKENS_KEPT_MS = 10 * 60_000
"""How long compaction keeps the tokens of records it moved: far past any retry, with room
for clocks that disagree (a token starts with its writer's clock, in ms)."""
_GUARD_SPAN = 256
"""Events after a guarded append's checked head that its statement reads through, under
the session's lock, for the id or key it must not duplicate; past that, the store's check
runs again (outside the lock) on the head the statement found."""
_LEASE = 60.0  # seconds a follower's lease lasts; renewed when half is left
_FOLLOW_SLICE = 1.0  # a follower checks that its session is still the same life this often


def _token() -> int:
    """A write's token: its writer's clock in ms, then 20 random bits (so they sort by time)."""
    return (int(time.time() * 1000) << 20) | random.getrandbits(20)


def chain_payload(payload: bytes) -> bytes:
    """What the version 2 chain hashes of a payload in place of the payload itself: its data
    replaced by the data's digest (``core._codec.payload_chain``; the seq in front does not
    change it), so the one-statement append chains it in SQL as version 1 chains the
    payload."""
    return b"{" + payload_chain(payload)


def _head_of(row: tuple[Any, ...] | None, session_id: str) -> tuple[int, Head]:
    if row is None:
        raise SessionNotFoundError(session_id)
    return row[0], Head(row[1], row[2])


class PostgresBackend(RowBackend):
    """Sessions in PostgreSQL; safe across threads, processes, machines and ``fork()``.

    ``url`` is a libpq URL (``postgresql://user:password@host:port/dbname?sslmode=...``);
    ``schema`` keeps stores apart (made on first use unless ``create=False``; a schema that
    holds other tables is refused unless ``adopt=True``). ``pool_size`` connections at most
    per process; ``lock_timeout`` bounds a write's wait for its session's row; reads and
    writes are tried again on a broken connection for up to ``retry_for`` seconds."""

    source = "postgres"
    page_size = 2000

    def __init__(  # noqa: PLR0913 - keyword-only options, each named as eventlog.open takes it
            self, url: str = "postgresql://127.0.0.1:5432/postgres", *,
            schema: str = DEFAULT_SCHEMA, create: bool = True, adopt: bool = False,
            lock_timeout: float = 10.0, retry_for: float = 5.0, pool_size: int = 4) -> None:
        self.schema = check_schema_name(schema)
        if type(pool_size) is not int or not 1 <= pool_size <= 1000:
            raise InvalidInputError(f"pool_size must be an int from 1 to 1000, not {pool_size!r}")
        parts = urlsplit(url)
        try:
            port = parts.port or 5432
            conninfo_to_dict(url)  # libpq's own check of the URL and its options
        except (ValueError, psycopg.ProgrammingError) as exc:
            raise InvalidInputError(f"bad PostgreSQL URL: {str(exc).strip()}") from None
        self.where = (f"PostgreSQL at {parts.hostname or 'localhost'}:{port}{parts.path or '/'}, "
                      f"schema {schema}")
        self._conns = Connections(url, self.where, size=pool_size,
                                  retry_for=check_seconds("retry_for", retry_for),
                                  lock_timeout=check_seconds("lock_timeout", lock_timeout))
        s = self.quoted_schema = quoted(self.schema)
        self._sql = {name: sql.bind(text, s) for name, text in vars(sql).items()
                     if name.isupper() and isinstance(text, str)}
        self._listener = Listener(self._conns, self.schema)
        self._channel = self._listener.channel
        self._leases: dict[int, float] = {}  # gen -> when our lease on it ends (monotonic)
        self._leases_refused = False
        # The head after this process's last guarded append, per session (``_append_guarded``).
        self._written: dict[str, Head] = {}
        try:
            with self._conns.opening() as conn:
                self.record_version = prepare(conn, self.schema, self.where, create=create,
                                              adopt=adopt)
        except BaseException as exc:
            self._conns.abandon()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"{self.where}: opening: {str(exc).strip()}") from exc
            raise

    def _run(self, what: str, statement: str, params: Any = None, *, binary: bool = False
             ) -> list[tuple[Any, ...]]:
        text = self._sql[statement]
        return self._conns.run(what, lambda conn: conn.execute(
            text, params, prepare=True, binary=binary).fetchall())

    def _x(self, conn: Conn, statement: str, params: Any = None) -> psycopg.Cursor[tuple[Any, ...]]:
        return conn.execute(self._sql[statement], params, prepare=True)

    # Writing --------------------------------------------------------------------------------

    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        params = {"id": session_id, "q": Int8(record.seq), "h": record.digest, "l": record.line,
                  "t": Int8(_token())}

        def attempt(again: bool) -> Any:
            def step(conn: Conn) -> None:
                if self._x(conn, "CREATE", params).fetchone() is not None:
                    return
                found = self._x(conn, "CREATOR", (session_id,)).fetchone() if again else None
                if found is None or found[0] != params["t"]:
                    raise SessionExistsError(session_id)
            return step

        self._conns.write(f"creating session {session_id!r}", attempt(False), attempt(True),
                          unknown="the session may or may not have been created")

    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        """One transaction: the session's row and first record (``CREATE``), the rest by one
        binary ``COPY``, and the head; read whole first, so a retry
        after a lost connection can send it again (the token tells a create of ours)."""
        records = [record for batch in batches for record in batch]
        first, last = records[0], records[-1]
        params = {"id": session_id, "q": Int8(1), "h": first.digest, "l": first.line,
                  "t": Int8(_token())}

        def attempt(again: bool) -> Any:
            def step(conn: Conn) -> None:
                with conn.transaction():
                    row = self._x(conn, "CREATE", params).fetchone()
                    if row is None:
                        found = self._x(conn, "CREATOR", (session_id,)).fetchone() if again else None
                        if found is None or found[0] != params["t"]:
                            raise SessionExistsError(session_id)
                        return  # the lost attempt committed
                    gen = row[0]
                    with conn.cursor() as cursor, cursor.copy(self._sql["COPY_ROWS"]) as copy:
                        copy.set_types(["int8", "int8", "bytea"])
                        for record in records[1:]:
                            copy.write_row((gen, record.seq, record.line))
                    self._x(conn, "MOVE_HEAD", {
                        "g": Int8(gen), "last": Int8(last.seq), "h": last.digest,
                        "b": Int8(sum(len(r.line) + 1 for r in records[1:]))})
            return step

        self._conns.write(f"creating session {session_id!r}", attempt(False), attempt(True),
                          unknown="the session may or may not have been created")
        return {}

    def append_one(  # noqa: PLR0913 - Backend.append_one's parameters
            self, session_id: str, payload: bytes, max_bytes: int, expected_seq: int | None,
            durable: bool, guard: Guard | None = None, checked: Head | None = None,
            unique: Unique | None = None) -> tuple[Head, Head, dict[str, Any] | None]:
        params = self._append_params(session_id, payload, max_bytes, expected_seq)
        if guard is not None:
            return self._append_guarded(session_id, params, guard, checked, unique)

        def first(conn: Conn) -> tuple[Any, ...] | None:
            return self._x(conn, "APPEND_ONE", params).fetchone()

        def again(conn: Conn) -> tuple[Any, ...] | None:
            with conn.transaction():
                found = self._x(conn, "LOCK_HEAD", (session_id,)).fetchone()
                if found is None:
                    return None
                mine = self._x(conn, "FIND_TOKEN", {"g": found[0], "t": params["t"]}).fetchone()
                if mine is not None:  # the lost attempt committed: report it, write nothing
                    return (mine[0] - 1, "", mine[0], mine[1], 0)
                return self._x(conn, "APPEND_ONE", params).fetchone()

        what = f"appending to session {session_id!r}"
        while True:
            row = self._conns.write(what, first, again, unknown=_UNKNOWN_APPEND)
            if row is not None:
                # The head before is a hint for the store's fold; after a retry it is "".
                return Head(row[2], row[3]), Head(row[0], row[1]), None
            # Nothing written: say why, from the head as it is now.
            head = self.read_head(session_id)[1]
            if expected_seq is not None and head.seq != expected_seq:
                raise ConflictError(session_id, expected_seq, head.seq)
            size = len(payload) + len(str(head.seq + 1)) + 46
            if size >= max_bytes:
                raise too_large(size + 1, max_bytes)
            # The head moved between the two looks (the size depends on the seq): again.

    def _append_params(self, session_id: str, payload: bytes, max_bytes: int,
                       expected_seq: int | None) -> dict[str, Any]:
        return {"id": session_id, "p": payload,
                "cp": payload if self.record_version == 1 else chain_payload(payload),
                "t": Int8(_token()), "x": None if expected_seq is None else Int8(expected_seq),
                "m": Int8(max_bytes), "c": self._channel}

    def _append_guarded(self, session_id: str, params: dict[str, Any], guard: Guard,
                        checked: Head | None, unique: Unique | None,
                        ) -> tuple[Head, Head, dict[str, Any] | None]:
        """``append_one`` with the store's check for a message id or key already stored.

        The check is Python and may read the log (another connection), so it can't run
        while this call holds a pooled connection under the row's lock (threads holding
        every connection would wait for a fifth). It runs first, on a head (``_checked``),
        and the server then appends in one call of its function ``append_guarded``, one
        round trip: the row locked, the
        events after that head looked through for ``unique`` (``GUARDED_APPEND``), the
        record written, committed. A head that moved is no reason to give up, so a guarded
        writer keeps its turn in the row's queue beside plain ones (a conditional append
        lost to them every time: issue pgguard). Only if those events hold the id or key,
        a rewind, or more than ``_GUARD_SPAN`` events, does the check run again, on the
        head the server found, and the step again from there."""
        head = self._checked(session_id, guard, checked)
        params["f"], params["v"] = (None, None) if unique is None else unique
        params["n"] = Int8(_GUARD_SPAN)

        def first(conn: Conn) -> tuple[Any, ...] | None:
            # One call, its own transaction: the function locks the row, then appends in a
            # statement whose snapshot sees the events of the writer it queued behind.
            return self._x(conn, "CALL_GUARDED", params).fetchone()

        def again(conn: Conn) -> tuple[Any, ...] | None:
            with conn.transaction():
                found = self._x(conn, "LOCK_HEAD", (session_id,)).fetchone()
                if found is None:
                    return None
                mine = self._x(conn, "FIND_TOKEN", {"g": found[0], "t": params["t"]}).fetchone()
                if mine is not None:  # the lost attempt committed: report it, write nothing
                    return (mine[0] - 1, "", mine[0], mine[1], 0, True)
                return self._x(conn, "GUARDED_APPEND", params).fetchone()

        what = f"appending to session {session_id!r}"
        while True:
            params["bq"], params["bh"] = Int8(head.seq), head.digest
            row = self._conns.write(what, first, again, unknown=_UNKNOWN_APPEND)
            if row is None:
                raise SessionNotFoundError(session_id)
            found = Head(row[0], row[1])
            if row[2] is not None:
                done = Head(row[2], row[3])
                if len(self._written) >= 1024:
                    self._written.clear()
                self._written[session_id] = done
                # The head before is a hint for the store's fold; after a retry it is "".
                return done, found, None
            if params["x"] is not None and found.seq != params["x"]:
                raise ConflictError(session_id, int(params["x"]), found.seq)
            if row[5]:  # the events were clear: the line was too long at that seq
                size = len(params["p"]) + len(str(found.seq + 1)) + 46
                raise too_large(size + 1, int(params["m"]))
            guard(found, None)  # raises if the id or key is stored (the events held it)
            head = found

    def _checked(self, session_id: str, guard: Guard, checked: Head | None) -> Head:
        """A head the store's check passes at: ``checked`` (the store's own), or the head
        after this process's last guarded append if newer, or the head as it is now."""
        written = self._written.get(session_id)
        if checked is not None and (written is None or written.seq - checked.seq <= _GUARD_SPAN // 4):
            return checked
        if written is not None:
            try:
                guard(written, None)
                return written
            except Exception:
                # The remembered head may be stale (a rewind by another process changes
                # what the check finds): only a refusal on the head as it is now counts.
                pass
        head = self.read_head(session_id)[1]
        guard(head, None)
        return head

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        token = Int8(_token())
        built: list[list[Record]] = []

        def attempt(again: bool) -> Any:
            def step(conn: Conn) -> list[Record]:
                with conn.transaction():
                    gen, seq, digest, watched = _locked(self._x(conn, "LOCK_HEAD", (session_id,))
                                                        .fetchone(), session_id)
                    if again and built and self._x(conn, "FIND_TOKEN", {"g": gen, "t": token}).fetchone():
                        return built[-1]  # the lost attempt committed
                    records = build(Head(seq, digest))
                    built.append(records)
                    if records:
                        last = records[-1]
                        self._x(conn, "INSERT_ROWS", {
                            "g": Int8(gen), "last": Int8(last.seq), "t": token,
                            "q": [r.seq for r in records], "l": [r.line for r in records]})
                        self._x(conn, "MOVE_HEAD", {"g": Int8(gen), "last": Int8(last.seq), "h": last.digest,
                                                    "b": Int8(sum(len(r.line) + 1 for r in records))})
                        if watched:
                            self._x(conn, "NOTIFY", (self._channel, f"{gen} {last.seq}"))
                    return records
            return step

        records = self._conns.write(f"appending to session {session_id!r}", attempt(False),
                                    attempt(True), unknown=_UNKNOWN_APPEND)
        return Appended(records)

    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        self._written.pop(session_id, None)
        params = {"id": session_id, "c": self._channel,
                  "q": None if if_head is None else Int8(if_head.seq),
                  "h": None if if_head is None else if_head.digest}

        def attempt(again: bool) -> Any:
            def step(conn: Conn) -> bool:
                row = self._x(conn, "DELETE", params).fetchone()
                assert row is not None
                if not row[0]:
                    if again:  # the lost attempt may have deleted it
                        return True
                    raise SessionNotFoundError(session_id)
                return bool(row[1])
            return step

        deleted: bool = self._conns.write(f"deleting session {session_id!r}", attempt(False),
                                          attempt(True), unknown="the session may or may not have "
                                          "been deleted")
        return deleted

    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        saved = self._run(f"saving a snapshot of {session_id!r}", "SAVE_SNAPSHOT",
                          {"id": session_id, "q": Int8(seq), "b": blob, "k": Int8(SNAPSHOTS_KEPT),
                           "sp": Int8(SNAPSHOT_SPACING)})
        if not saved:
            raise SessionNotFoundError(session_id)

    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        redact_rows(self, session_id, replacements)

    # Reading --------------------------------------------------------------------------------

    # The session catalog (store/_catalog.py): tables beside the sessions (see ``_catalog``).

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        rows = self._run("reading the session catalog", "CATALOG_READ", (prefix,))
        return [(row[0], None if row[1] is None else bytes(row[1])) for row in rows]

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        _catalog.write(self, entries, keys)

    def catalog_reset(self) -> None:
        _catalog.reset(self)

    def catalog_walk(self, order: str, descending: bool, start: float | None,
                     refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        return _catalog.walk(self, order, descending, start, refold)

    def statement(self, name: str) -> str:
        """A statement of ``_statements`` bound to this store's schema."""
        return self._sql[name]

    @property
    def connections(self) -> Connections:
        return self._conns

    def read_head(self, session_id: str) -> tuple[Any, Head]:
        rows = self._run(f"reading session {session_id!r}", "HEAD", (session_id,))
        return _head_of(rows[0] if rows else None, session_id)

    def read_rows(self, session_id: str, generation: Any, first: int, last: int | None,
                  limit: int, *, newest_first: bool = False) -> Rows:
        high = _MAX_SEQ if last is None else last
        if first > high or limit <= 0:
            return []
        what = f"reading session {session_id!r}"
        found = self._run(what, "LIVE_ROWS_BACK" if newest_first else "LIVE_ROWS",
                          {"g": Int8(generation), "f": Int8(first), "l": Int8(high), "n": Int8(limit)},
                          binary=True)
        if not found:
            return []  # deleted since the scan began
        archived: int = found[0][0]
        live: Rows = [(seq, line) for _archived, seq, line in found if seq is not None]
        if first > archived:
            return live
        # Archived chunks only grow (until the session is deleted), so those up to the mark
        # read with the live rows are all there, whenever they are read.
        upper = min(high, archived)
        if newest_first:
            return live + self._archived(what, session_id, generation, (first, upper),
                                         limit - len(live), newest_first=True)
        rows = self._archived(what, session_id, generation, (first, upper), limit, newest_first=False)
        return rows + live[:limit - len(rows)]

    def _archived(self, what: str, session_id: str, generation: int, span: tuple[int, int],
                  limit: int, *, newest_first: bool) -> Rows:
        """Up to ``limit`` archived rows with seqs in ``span`` (first, last), a few chunks per
        round trip."""
        first, last = span
        rows: Rows = []
        statement = self._sql["CHUNKS_BACK" if newest_first else "CHUNKS"] + f" LIMIT {_CHUNKS_PER_READ}"
        while len(rows) < limit and first <= last:
            params = {"g": Int8(generation), "f": Int8(first), "l": Int8(last)}
            chunks = self._conns.run(what, lambda conn, p=params: conn.execute(  # type: ignore[misc]
                statement, p, prepare=True, binary=True).fetchall())
            rows += rows_in(session_id, chunks, first, last, limit - len(rows), newest_first=newest_first)
            if len(chunks) < _CHUNKS_PER_READ:
                break
            if newest_first:
                last = chunks[-1][0] - 1
            else:
                first = chunks[-1][1] + 1
        return rows

    def exists(self, session_id: str) -> bool:
        return bool(self._run(f"reading session {session_id!r}", "EXISTS", (session_id,)))

    def session_ids(self) -> list[str]:
        return [row[0] for row in self._run("listing sessions", "IDS")]

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        rows = self._run(f"reading snapshots of {session_id!r}", "SNAPSHOTS", (session_id,), binary=True)
        if not rows:
            raise SessionNotFoundError(session_id)
        return iter([row[0] for row in rows if row[0] is not None])

    def size(self, session_id: str) -> int:
        rows = self._run(f"sizing session {session_id!r}", "SIZE", (session_id,))
        if not rows:
            raise SessionNotFoundError(session_id)
        return int(rows[0][0])

    # Following ------------------------------------------------------------------------------

    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        what = f"following session {session_id!r}"
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._listener.start(self._conns.retry_for)
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {what}: {exc}") from exc
        followed: int | None = None
        try:
            while True:
                mark = None if followed is None else self._listener.mark(followed)
                gen, head = self.read_head(session_id)
                if incarnation is None:
                    incarnation = gen
                if gen != incarnation:
                    raise SessionNotFoundError(session_id)
                if followed is None:
                    followed = gen
                    self._listener.follow(gen)
                    continue  # read again, now that a notification would be seen
                if head.seq > after_seq or self._lease(what, gen) > after_seq:
                    return True
                left = _FOLLOW_SLICE if deadline is None else min(_FOLLOW_SLICE, deadline - time.monotonic())
                if left <= 0:
                    return False
                if self._leases_refused:  # a reader that may not write: poll
                    left = min(left, 0.05)
                assert mark is not None
                self._listener.wait(gen, mark, left)
        finally:
            if followed is not None:
                self._listener.unfollow(followed)

    def _lease(self, what: str, gen: int) -> int:
        """Hold the lease that makes appends to ``gen`` notify; the head's seq if renewed
        now (appends before it did not notify), else -1."""
        now = time.monotonic()
        if self._leases_refused or self._leases.get(gen, 0.0) - now > _LEASE / 2:
            return -1
        try:
            rows = self._conns.run(what, lambda conn: self._x(conn, "WATCH", {
                "g": Int8(gen), "d": _LEASE}).fetchall())
        except StorageError as exc:
            if isinstance(exc.__cause__, (psycopg.errors.InsufficientPrivilege,
                                          psycopg.errors.ReadOnlySqlTransaction)):
                self._leases_refused = True
                return -1
            raise
        if not rows:
            return -1  # gone: the next look at the head says so
        if len(self._leases) > 10_000:
            self._leases.clear()
        self._leases[gen] = now + _LEASE
        return int(rows[0][0])

    # Compaction -----------------------------------------------------------------------------

    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        """Mark everything up to the head as sealed: ``archive`` moves up to there."""
        rows = self._run(f"sealing session {session_id!r}", "SEAL", (session_id,))
        if not rows:
            raise SessionNotFoundError(session_id)
        return Sealed(Head(rows[0][0], rows[0][1]))

    def archive(self, session_id: str) -> Archived:
        """Move sealed rows into compressed chunks of the archive table, a batch per
        transaction; the tokens of recent ones go to ``tokens`` (see the module notes)."""
        chunks = before = after = 0
        what = f"archiving session {session_id!r}"
        while True:
            marks = self._run(what, "MARKS", (session_id,))
            if not marks:
                raise SessionNotFoundError(session_id)
            gen, sealed, archived = marks[0]
            if archived >= sealed:
                return Archived(chunks, before, after)
            found = self._run(what, "ARCHIVED_ROWS", (Int8(gen), Int8(archived + 1),
                                                     Int8(min(sealed, archived + _ARCHIVE_BATCH))),
                              binary=True)
            rows: Rows = [(seq, line) for seq, line, _tok in found]
            if not rows or rows[0][0] != archived + 1 or rows[-1][0] - rows[0][0] != len(rows) - 1:
                raise CorruptLogError(f"session {session_id!r}: sealed records after seq "
                                      f"{archived} are missing", session_id=session_id,
                                      seq=archived + 1, where="postgres")
            packed = pack(rows)
            cutoff = (int(time.time() * 1000) - _TOKENS_KEPT_MS) << 20
            kept = [(tok, seq, line[-34:-2].decode()) for seq, line, tok in found
                    if tok is not None and tok >= cutoff]
            batch = _Batch(gen, archived, rows[-1][0], packed, kept, cutoff)
            if self._conns.run(what, lambda conn, b=batch: self._move(conn, b)):  # type: ignore[misc]
                chunks += len(packed)
                before += sum(len(line) + 1 for _seq, line in rows)
                after += sum(len(blob) for _low, _high, blob in packed)

    def _move(self, conn: Conn, batch: _Batch) -> bool:
        gen, archived, upto, packed, kept, cutoff = batch
        with conn.transaction():
            now = self._x(conn, "ARCHIVE_MARK", (Int8(gen),)).fetchone()
            if now is None or now[0] != archived:
                return False  # deleted, or another compactor got here first: look again
            self._x(conn, "ARCHIVE_CHUNKS", {"g": Int8(gen), "f": [c[0] for c in packed],
                                             "l": [c[1] for c in packed], "b": [c[2] for c in packed]})
            if kept:
                self._x(conn, "KEEP_TOKENS", {"g": Int8(gen), "t": [k[0] for k in kept],
                                              "q": [k[1] for k in kept], "h": [k[2] for k in kept]})
            self._x(conn, "DROP_TOKENS", (Int8(gen), Int8(cutoff)))
            self._x(conn, "ARCHIVE_MOVE", {"g": Int8(gen), "f": Int8(archived + 1), "l": Int8(upto)})
        return True

    def close(self) -> None:
        self._listener.close()
        self._conns.close()


_UNKNOWN_APPEND = ("the append may or may not have been stored: read the session's newest events "
                   "to learn which (to retry it at most once, append with expected_seq)")


class _Batch(NamedTuple):
    """One transaction of ``archive``: rows after ``archived`` up to ``upto``, packed."""

    gen: int
    archived: int
    upto: int
    packed: list[tuple[int, int, bytes]]
    kept: list[tuple[int, int, str]]  # (token, seq, h) of records whose tokens are kept
    cutoff: int  # tokens below this are dropped


def _locked(row: tuple[Any, ...] | None, session_id: str) -> tuple[int, int, str, bool]:
    if row is None:
        raise SessionNotFoundError(session_id)
    return row[0], row[1], row[2], bool(row[3])
