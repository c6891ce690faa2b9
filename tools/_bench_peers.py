"""The local peers eventlog is measured against: the floor, and sqlite3 done right.

(The rewrite-per-message peers are in ``_bench_rewrite``, Redis in ``_bench_redis``.)

- ``floor``: the least Python can do for the job: one ``os.write`` of an orjson line under
  ``fcntl.flock`` on an already open descriptor (``os.fsync`` too when durable); replay is
  reading the file and ``orjson.loads`` per line. No seq, no checks: the physical limit.
- ``sqlite-wal``: ``sqlite3`` in WAL mode, one row per event keyed by (session, seq), one
  ``BEGIN IMMEDIATE`` transaction per append; ``synchronous=NORMAL``, ``FULL`` when durable.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from _bench_data import DAY, Msg
from _bench_store import PARTICIPANTS, Spec, Store


def as_dict(m: Msg) -> dict[str, Any]:
    return {"id": m.id, "sender": m.sender, "recipient": m.recipient, "content": m.content, "ts": m.ts}


def last_lines(fd: int, count: int) -> list[bytes]:
    """The last ``count`` complete lines of a file, read backwards in blocks."""
    pos = os.fstat(fd).st_size
    buf = b""
    while pos > 0 and buf.count(b"\n") <= count:
        step = min(65536, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    lines = buf.rstrip(b"\n").split(b"\n")
    return lines[-count:] if pos > 0 or len(lines) > count else lines


class FloorStore(Store):
    """One file per session, ``<sid>.jsonl``: a header line, then one line per message."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self.root = Path(spec.location)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}

    def _path(self, sid: str) -> Path:
        return self.root / f"{sid}.jsonl"

    def _fd(self, sid: str) -> int:
        fd = self._fds.get(sid)
        if fd is None:
            fd = self._fds[sid] = os.open(self._path(sid), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        return fd

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [as_dict(m) for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        header = {"session": sid, "participants": PARTICIPANTS, "ts": created_at}
        os.write(self._fd(sid), orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))

    def append(self, sid: str, item: Any) -> None:
        fd = self._fds[sid] if sid in self._fds else self._fd(sid)
        line = orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, line)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if self.spec.durable:
            os.fsync(fd)

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        os.write(self._fd(sid), b"".join(orjson.dumps(as_dict(m), option=orjson.OPT_APPEND_NEWLINE)
                                         for m in msgs))

    def replay(self, sid: str) -> int:
        with open(self._path(sid), "rb") as f:
            records = [orjson.loads(line) for line in f.read().splitlines()]
        return len(records) - 1

    def stream(self, sid: str) -> int:
        count = -1
        with open(self._path(sid), "rb") as f:
            for line in f:
                orjson.loads(line)
                count += 1
        return count

    def tail(self, sid: str, limit: int) -> int:
        fd = os.open(self._path(sid), os.O_RDONLY)
        try:
            found = [orjson.loads(line) for line in last_lines(fd, limit)]
        finally:
            os.close(fd)
        return sum(1 for r in found if "session" not in r)

    def _ends(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        fd = os.open(path, os.O_RDONLY)
        try:
            first = orjson.loads(os.pread(fd, 4096, 0).split(b"\n", 1)[0])
            last = orjson.loads(last_lines(fd, 1)[0])
        finally:
            os.close(fd)
        return first, last

    def session_info(self, sid: str) -> object:
        # The floor keeps no state: created_at from the first line, last activity from the last.
        return self._ends(self._path(sid))

    def list_sessions(self) -> int:
        return sum(1 for p in self.root.iterdir() if p.suffix == ".jsonl" and self._ends(p))

    def cleanup(self, days: float) -> int:
        cutoff = time.time() - days * DAY
        removed = 0
        for path in list(self.root.iterdir()):
            if path.suffix == ".jsonl" and self._ends(path)[1]["ts"] < cutoff:
                fd = self._fds.pop(path.stem, None)
                if fd is not None:
                    os.close(fd)
                path.unlink()
                removed += 1
        return removed

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        found: list[tuple[str, str] | None] = []
        with open(self._path(sid), "rb") as f:
            for line in f.read().splitlines()[1:]:
                try:
                    record = orjson.loads(line)
                    found.append((record["id"], record["content"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    found.append(None)
        return found

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


_SCHEMA = """CREATE TABLE IF NOT EXISTS events (
    session TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (session, seq)) WITHOUT ROWID"""
_APPEND = ("INSERT INTO events (session, seq, type, ts, data) "
           "SELECT ?, coalesce(max(seq), 0) + 1, 'message', ?, ? FROM events WHERE session = ?")


class SqliteWalStore(Store):
    """``sqlite3`` done right for a log: WAL, one row per event, one short transaction per append."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        path = Path(spec.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if spec.durable else 'NORMAL'}")
        self.db.execute(_SCHEMA)

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [as_dict(m) for m in msgs]

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(sql, rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def create(self, sid: str, created_at: float) -> None:
        data = orjson.dumps({"participants": PARTICIPANTS})
        self._write("INSERT INTO events VALUES (?, 1, 'session.created', ?, ?)", [(sid, created_at, data)])

    def append(self, sid: str, item: Any) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_APPEND, (sid, item["ts"], orjson.dumps(item), sid))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        (last,) = self.db.execute("SELECT coalesce(max(seq), 0) FROM events WHERE session = ?",
                                  (sid,)).fetchone()
        rows = [(sid, last + 1 + i, m.ts, orjson.dumps(as_dict(m))) for i, m in enumerate(msgs)]
        self._write("INSERT INTO events VALUES (?, ?, 'message', ?, ?)", rows)

    def replay(self, sid: str) -> int:
        rows = self.db.execute("SELECT data FROM events WHERE session = ? ORDER BY seq", (sid,))
        return len([orjson.loads(data) for (data,) in rows]) - 1

    def stream(self, sid: str) -> int:
        count = -1
        for (data,) in self.db.execute("SELECT data FROM events WHERE session = ? ORDER BY seq", (sid,)):
            orjson.loads(data)
            count += 1
        return count

    def tail(self, sid: str, limit: int) -> int:
        rows = self.db.execute("SELECT data FROM events WHERE session = ? AND type = 'message' "
                               "ORDER BY seq DESC LIMIT ?", (sid, limit)).fetchall()
        return len([orjson.loads(data) for (data,) in reversed(rows)])

    def session_info(self, sid: str) -> object:
        db = self.db
        first = db.execute("SELECT ts, data FROM events WHERE session = ? AND seq = 1", (sid,)).fetchone()
        last = db.execute("SELECT seq, ts FROM events WHERE session = ? ORDER BY seq DESC LIMIT 1",
                          (sid,)).fetchone()
        return first, last

    def list_sessions(self) -> int:
        return len(self.db.execute("SELECT session, count(*), min(ts), max(ts) FROM events "
                                   "GROUP BY session").fetchall())

    def cleanup(self, days: float) -> int:
        cutoff = time.time() - days * DAY
        self.db.execute("BEGIN IMMEDIATE")
        try:
            old = self.db.execute("SELECT session FROM events GROUP BY session HAVING max(ts) < ?",
                                  (cutoff,)).fetchall()
            self.db.executemany("DELETE FROM events WHERE session = ?", old)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(old)

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        found: list[tuple[str, str] | None] = []
        for (data,) in self.db.execute("SELECT data FROM events WHERE session = ? AND type = 'message' "
                                       "ORDER BY seq", (sid,)):
            record = orjson.loads(data)
            found.append((record["id"], record["content"]))
        return found

    def problems(self, sid: str) -> list[str]:
        count, last = self.db.execute("SELECT count(*), max(seq) FROM events WHERE session = ?",
                                      (sid,)).fetchone()
        return [] if count == last else [f"{count} rows but last seq {last}"]

    def close(self) -> None:
        self.db.close()
