"""What only the SQLite backend has: WAL and its schema, the same record lines as the file
backend, the busy timeout as a ``LockTimeoutError``, write failures, and fork()."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import Event, EventLog


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "store.db"


@pytest.fixture
def log(db_path: Path) -> Iterator[EventLog]:
    with eventlog.open(f"sqlite:///{db_path}") as store:
        yield store


def backend(log: EventLog) -> Any:
    from eventlog.backends._sqlite import SQLiteBackend
    assert isinstance(log.backend, SQLiteBackend)
    return log.backend


def raw(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path, isolation_level=None)


def test_wal_schema_and_file_modes(log: EventLog, db_path: Path) -> None:
    log.create_session("s")
    db = raw(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"eventlog_meta", "sessions", "events", "snapshots"} <= tables
    assert dict(db.execute("SELECT key, value FROM eventlog_meta")) == {
        "format": "eventlog-sqlite", "version": "2"}
    db.close()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_rows_hold_the_file_backends_record_lines(log: EventLog, db_path: Path, tmp_path: Path) -> None:
    history = [Event(1, "session.created", 1.5, {"participants": ["a"], "metadata": {"k": 1}}),
               Event(2, "message", 2.5, {"id": "m1", "sender": "a", "recipient": "b", "content": "x"}),
               Event(3, "tool.result", 3.5, {"hits": [1, 2]})]
    log.import_events("same", history)
    with eventlog.open(tmp_path / "files") as files:
        files.import_events("same", history)
    [segment] = (tmp_path / "files" / "same").glob("seg-*.jsonl")
    file_lines = [line.rstrip(b" ") for line in segment.read_bytes().splitlines()
                  if line.startswith(b'{"seq":')]
    db = raw(db_path)
    rows = db.execute("SELECT e.seq, e.line, s.seq, s.h FROM events e JOIN sessions s "
                      "ON e.session = s.gen WHERE s.id = 'same' ORDER BY e.seq").fetchall()
    db.close()
    assert [r[1] for r in rows] == file_lines and [r[0] for r in rows] == [1, 2, 3]
    assert (rows[-1][2], rows[-1][3].encode()) == (3, file_lines[-1][-34:-2])  # the head row


def test_a_held_write_lock_is_a_lock_timeout_and_readers_go_on(db_path: Path) -> None:
    with eventlog.open(f"sqlite:///{db_path}", lock_timeout=0.2) as log:
        sid = log.create_session().session_id
        other = raw(db_path)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, holding on
        try:
            with pytest.raises(eventlog.LockTimeoutError) as info:
                log.append(sid, "x", 1)
            assert isinstance(info.value, TimeoutError)
            assert "locked" in str(info.value) and "0.2 s" in str(info.value)
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert log.get_session(sid).last_seq == 1  # WAL: reading never waits for the writer
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert log.append(sid, "x", 1).seq == 2


def test_a_full_database_is_a_storage_error_and_nothing_is_written(log: EventLog) -> None:
    sid = log.create_session().session_id
    log.append(sid, "x", "small")
    store = backend(log)
    with store._db("test") as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL at the next new page
    with pytest.raises(eventlog.StorageError) as info:
        log.append_many(sid, [("big", "y" * 100_000)] * 3)
    assert "full" in str(info.value)
    store.close_idle()  # drop the connection with the page limit
    assert [e.seq for e in log.events(sid)] == [1, 2] and log.verify(sid).ok
    assert log.append(sid, "x", "again").seq == 3


def test_durable_appends_commit_at_synchronous_full(log: EventLog) -> None:
    sid = log.create_session().session_id
    store = backend(log)

    def level() -> int:
        with store._db("test") as db:
            value: int = db.execute("PRAGMA synchronous").fetchone()[0]
            return value

    log.append(sid, "x", 1)
    assert level() == 1  # NORMAL
    log.append(sid, "x", 2, durability="fsync")
    assert level() == 2  # FULL
    log.append(sid, "x", 3)
    assert level() == 1


def test_damage_is_found(log: EventLog, db_path: Path) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(4)])
    db = raw(db_path)
    db.execute("UPDATE events SET line = replace(line, '\"data\":2', '\"data\":9') WHERE seq = 4")
    db.execute("UPDATE sessions SET seq = 9")
    db.close()
    report = log.verify(sid)
    assert not report.ok
    assert any("seq 4" in p for p in report.problems)
    assert any("stored head" in p for p in report.problems)
    with pytest.raises(eventlog.CorruptLogError):
        list(log.events(sid))


def test_other_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = raw(other)
    db.execute("CREATE TABLE mine (x)")
    db.close()
    with pytest.raises(eventlog.StorageError, match="not an eventlog store"):
        eventlog.open(f"sqlite:///{other}")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(eventlog.StorageError):
        eventlog.open(f"sqlite:///{junk}")


def test_forked_children_append_through_the_parents_store(log: EventLog) -> None:
    """Children use the EventLog object they inherited; each opens its own connections
    (the parent's idle ones were closed before the fork), across 4 processes at once."""
    sid = log.create_session().session_id
    log.append(sid, "parent", -1)
    children = []
    for w in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                for i in range(50):
                    log.append(sid, "child", {"w": w, "i": i})
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    for i in range(50):
        log.append(sid, "parent", i)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    events = list(log.events(sid))
    assert [e.seq for e in events] == list(range(1, 253))
    tags = {(e.data["w"], e.data["i"]) for e in events if e.type == "child"}
    assert len(tags) == 200
    assert log.verify(sid).ok


def test_threads_share_a_pool_of_connections(log: EventLog) -> None:
    sid = log.create_session().session_id
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(30):
                log.append(sid, "x", i)
                log.get_messages(sid, limit=5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.get_session(sid).last_seq == 181 and log.verify(sid).ok
    assert len(backend(log)._idle) <= 4


def _wal_bytes(db_path: Path) -> int:
    try:
        return os.path.getsize(f"{db_path}-wal")
    except FileNotFoundError:
        return 0


def test_a_long_reader_cannot_grow_the_wal_past_its_limit(db_path: Path) -> None:
    """Issue 13, item 12: while a reader kept a transaction open, every commit added its pages
    to the write-ahead log (20,000 messages: 239 MB), and the file never shrank afterwards.
    Past ``wal_max_bytes`` a writer checkpoints, waits for the reader up to lock_timeout, and
    refuses the write; once the reader is gone the log is truncated back."""
    limit = 1 << 20
    with eventlog.open(f"sqlite:///{db_path}", lock_timeout=0.2, wal_max_bytes=limit) as log:
        sid = log.create_session().session_id
        reader = raw(db_path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()
        acked = 0
        with pytest.raises(eventlog.LockTimeoutError, match="a reader has kept a transaction open"):
            for i in range(10_000):
                log.add_message(eventlog.ChatMessage(sender="a", content=f"m{i} " + "x" * 100,
                                                     session_id=sid))
                acked += 1
                assert _wal_bytes(db_path) < limit + (64 << 10)  # one commit's pages past it
        assert 20 < acked < 1000
        assert log.get_session(sid).message_count == acked  # the refused one is not there
        reader.execute("COMMIT")
        reader.close()
        log.add_message(eventlog.ChatMessage(sender="a", content="after", session_id=sid))
        assert _wal_bytes(db_path) < 64 << 10
        assert log.verify(sid).ok and log.get_session(sid).message_count == acked + 1


def test_the_wal_shrinks_once_a_long_reader_is_gone(db_path: Path) -> None:
    from eventlog.backends._sqlite import WAL_KEPT_BYTES

    with eventlog.open(f"sqlite:///{db_path}") as log:
        sid = log.create_session().session_id
        reader = raw(db_path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()
        log.append_many(sid, [("x", "y" * 1000)] * 200)
        while _wal_bytes(db_path) < 3 * WAL_KEPT_BYTES:
            log.append(sid, "x", "y" * 1000)
        reader.execute("COMMIT")
        reader.close()
        for _ in range(3):  # a checkpoint, then a commit that starts the log over
            log.append(sid, "x", 1)
        assert _wal_bytes(db_path) <= WAL_KEPT_BYTES
        assert log.verify(sid).ok
