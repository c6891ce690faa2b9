"""The PostgreSQL floor, and where the PostgreSQL columns keep their data.

``postgres-insert``: raw psycopg, one ``INSERT`` of one row per event, each in its own
transaction (autocommit), prepared on the server, into a table keyed like eventlog's
(session, seq); replay is one ``SELECT`` of the session's rows in order, ``orjson.loads``
per row. No seq check, no chain: what PostgreSQL itself costs, as sqlite-wal is SQLite's.

Each store of either column lives in a schema of its own (named after its directory),
dropped when the benchmark releases it; the server is ``EVENTLOG_BENCH_POSTGRES`` or the
test server (postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import orjson
from _bench_data import Msg
from _bench_peers import as_dict
from _bench_store import Spec, Store

DEFAULT_POSTGRES_URL = os.environ.get("EVENTLOG_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def schema_for(directory: str) -> str:
    return "bench_" + hashlib.sha256(directory.encode()).hexdigest()[:16]


def postgres_location(directory: str) -> str:
    return f"{DEFAULT_POSTGRES_URL}?schema={schema_for(directory)}"


def split(location: str) -> tuple[str, str]:
    server, _, query = location.partition("?schema=")
    return server, query


def drop(location: str) -> None:
    import psycopg
    server, schema = split(location)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class PostgresInsertStore(Store):
    no_durable = "durability is the PostgreSQL server's (synchronous_commit): every commit is flushed"

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        import psycopg
        server, self.schema = split(spec.location)
        self.conn: Any = psycopg.connect(server, autocommit=True)
        s = f'"{self.schema}"'
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.rows (session text NOT NULL, seq bigint "
                              "GENERATED ALWAYS AS IDENTITY, line bytea NOT NULL, "
                              "PRIMARY KEY (session, seq))")
        self._insert = f"INSERT INTO {s}.rows (session, line) VALUES (%s, %s)"
        self._all = f"SELECT line FROM {s}.rows WHERE session = %s ORDER BY seq"
        self._tail = f"SELECT line FROM {s}.rows WHERE session = %s ORDER BY seq DESC LIMIT %s"
        self._last = f"SELECT seq, line FROM {s}.rows WHERE session = %s ORDER BY seq DESC LIMIT 1"

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [orjson.dumps(as_dict(m)) for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        self.conn.execute(self._insert, (sid, orjson.dumps({"session": sid, "ts": created_at})), prepare=True)

    def append(self, sid: str, item: Any) -> None:
        self.conn.execute(self._insert, (sid, item), prepare=True)

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        with self.conn.cursor() as cur, self.conn.transaction():
            cur.executemany(self._insert, [(sid, line) for line in self.prepare(sid, msgs)])

    def replay(self, sid: str) -> int:
        rows = self.conn.execute(self._all, (sid,), prepare=True, binary=True).fetchall()
        return len([orjson.loads(r[0]) for r in rows]) - 1

    def stream(self, sid: str) -> int:
        count = -1
        with self.conn.cursor(binary=True) as cur:
            for row in cur.stream(self._all, (sid,)):
                orjson.loads(row[0])
                count += 1
        return count

    def tail(self, sid: str, limit: int) -> int:
        rows = self.conn.execute(self._tail, (sid, limit), prepare=True, binary=True).fetchall()
        return sum(1 for r in reversed(rows) if "session" not in orjson.loads(r[0]))

    def session_info(self, sid: str) -> object:
        return self.conn.execute(self._last, (sid,), prepare=True).fetchone()

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        records = [orjson.loads(r[0]) for r in self.conn.execute(self._all, (sid,), binary=True)]
        return [(r["id"], r["content"]) for r in records[1:]]

    def discard(self) -> None:
        self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        self.conn.close()


def check_postgres() -> str:
    """Why a PostgreSQL column can't run here, or "" when the server answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'eventlog[postgres]')"
    try:
        psycopg.connect(DEFAULT_POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {DEFAULT_POSTGRES_URL}: {str(exc).strip()}"
    return ""
