"""The table's columns: which stores exist here, and how to open each one for a workload."""

from __future__ import annotations

import os
from dataclasses import dataclass

from _bench_store import Spec, Store

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    template: str
    """The store's location: ``{dir}`` is a fresh directory per workload, ``{redis}`` the server URL,
    ``{postgres}`` the PostgreSQL server's URL with a schema named after that directory."""
    about: str
    capped: bool = False
    """Its long session stops at ``Sizes.capped_long``, and workload 7 makes ``Sizes.capped_sessions``
    sessions: the other eventlog backends and the Redis floor, which the targets don't measure,
    at sizes that keep the default run within its five minutes (a million events in SQLite and
    ten thousand sessions in Redis take minutes each)."""


COLUMNS = (
    Column("eventlog-file", "eventlog", "{dir}", "eventlog.open(path): the JSONL file backend"),
    Column("floor", "floor", "{dir}", "os.write of an orjson line under flock (+ os.fsync when durable)"),
    Column("sqlite-wal", "sqlite-wal", "{dir}/events.db",
           "sqlite3, WAL, a row per event, a transaction per append (synchronous NORMAL; FULL durable)"),
    Column("json-rewrite", "json-rewrite", "{dir}", "the original design: a JSON file per session, "
           "loaded and rewritten on every message"),
    Column("langchain-file", "langchain-file", "{dir}", "langchain-community FileChatMessageHistory"),
    Column("eventlog-sqlite", "eventlog", "sqlite:///{dir}/eventlog.db", "eventlog.open('sqlite:///...')",
           capped=True),
    Column("eventlog-redis", "eventlog", "{redis}", "eventlog.open('redis://...'): Redis Streams",
           capped=True),
    Column("redis-xadd", "redis-xadd", "{redis}", "one plain XADD per append: the Redis floor", capped=True),
    Column("eventlog-postgres", "eventlog", "{postgres}", "eventlog.open('postgresql://...'): "
           "PostgreSQL, a schema per store", capped=True),
    Column("postgres-insert", "postgres-insert", "{postgres}", "psycopg, one INSERT of one row per "
           "append in its own transaction: the PostgreSQL floor", capped=True),
    Column("eventlog-memory", "eventlog", "memory://", "eventlog.open('memory://'): process-local",
           capped=True),
)
BY_NAME = {c.name: c for c in COLUMNS}
FLOORS = {"eventlog-sqlite": "sqlite-wal", "eventlog-redis": "redis-xadd",
          "eventlog-postgres": "postgres-insert"}
"""The raw store each other eventlog backend is compared with (issue 6)."""


def location(column: Column, directory: str, redis_url: str) -> str:
    if column.template == "{postgres}":
        from _bench_postgres import postgres_location
        return postgres_location(os.path.abspath(directory))
    return column.template.format(dir=os.path.abspath(directory), redis=redis_url)


def spec(column: Column, directory: str, redis_url: str, *, durable: bool = False, prefix: str = "") -> Spec:
    return Spec(column.name, column.kind, location(column, directory, redis_url), durable, prefix)


def unavailable(column: Column, probe_dir: str, redis_url: str) -> str:
    """Why this column can't run on this machine now, or "" when it can."""
    from _bench_eventlog import check_url
    from _bench_redis import check_redis
    from _bench_rewrite import check_langchain
    if column.template == "{redis}":
        reason = check_redis(redis_url)
        if reason:
            return reason
    if column.template == "{postgres}":
        from _bench_postgres import check_postgres
        reason = check_postgres()
        if reason:
            return reason
    if column.kind == "langchain-file":
        return check_langchain()
    if column.kind == "eventlog" and column.name != "eventlog-file":
        url = location(column, os.path.join(probe_dir, column.name), redis_url)
        reason = check_url(url)
        if column.template == "{postgres}" and not reason:
            from _bench_postgres import drop
            drop(url)
        return reason
    return ""


def make_store(spec: Spec) -> Store:
    """Open ``spec``'s store in this process."""
    if spec.kind == "eventlog":
        from _bench_eventlog import EventlogStore
        return EventlogStore(spec)
    from _bench_peers import FloorStore, SqliteWalStore
    from _bench_postgres import PostgresInsertStore
    from _bench_redis import RedisXaddStore
    from _bench_rewrite import JsonRewriteStore, LangchainFileStore
    kinds: dict[str, type[Store]] = {"floor": FloorStore, "sqlite-wal": SqliteWalStore,
                                     "json-rewrite": JsonRewriteStore, "langchain-file": LangchainFileStore,
                                     "redis-xadd": RedisXaddStore, "postgres-insert": PostgresInsertStore}
    return kinds[spec.kind](spec)
