"""PostgreSQL for the tests: the shared server on 127.0.0.1:5432 (database ``test``).

Every test run works in schemas of its own (``eventlog_test_<random>``), dropped when it
ends. Without a server (or psycopg) the PostgreSQL tests skip with one line saying why,
except under ``CI=true``, where that is a failure: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

try:
    import psycopg
except ImportError:  # pragma: no cover - the extra is not installed
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("psycopg is not installed (pip install '.[postgres]')", allow_module_level=True)

__all__ = ["HOST", "PORT", "SERVER", "Schemas", "drop_schema", "psycopg", "schemas", "server_url"]

HOST, PORT = "127.0.0.1", 5432
SERVER = f"postgresql://postgres@{HOST}:{PORT}/test"


def server_url(host: str = HOST, port: int = PORT) -> str:
    return f"postgresql://postgres@{host}:{port}/test"


def admin() -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the shared test server, or skip (fail under CI=true) if none answers."""
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        why = f"no PostgreSQL server answers at {SERVER} ({str(exc).strip()})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true, so the PostgreSQL tests must run")
        pytest.skip(why)


def drop_schema(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class Schemas:
    """Names of fresh schemas for one test run; all of them are dropped at its end."""

    def __init__(self) -> None:
        self.conn = admin()
        self.prefix = f"eventlog_test_{uuid.uuid4().hex[:8]}_"
        self.made: list[str] = []

    def fresh(self) -> str:
        name = f"{self.prefix}{len(self.made)}"
        self.made.append(name)
        return name

    def url(self, *, host: str = HOST, port: int = PORT, flush: bool = True) -> str:
        """A fresh store's URL. ``flush=False``: commits don't wait for the server's WAL
        flush (synchronous_commit=off), for tests of behaviour rather than of crashes: what
        every client sees is the same, and the shared machine's disk is spared."""
        extra = "" if flush else "&options=-c%20synchronous_commit%3Doff"
        return f"{server_url(host, port)}?schema={self.fresh()}{extra}"

    def drop(self) -> None:
        for name in self.made:
            drop_schema(self.conn, name)
        self.conn.close()


def schemas() -> Iterator[Schemas]:
    made = Schemas()
    try:
        yield made
    finally:
        made.drop()
