"""The store contract on the PostgreSQL backend, against the server on 127.0.0.1:5432,
each store in a schema of this test run's own (dropped afterwards). Without a server it
skips, except under CI=true, where it fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eventlog import EventLog

from .conformance import StoreContract


@pytest.fixture(scope="module")
def pg_schemas() -> Iterator[Any]:
    from . import _pg_support  # skips (fails under CI=true) without psycopg or a server
    yield from _pg_support.schemas()


class TestPostgresStore(StoreContract):
    shared_between_processes = True
    storage_type = "postgresql"

    @pytest.fixture(autouse=True)
    def _schemas(self, pg_schemas: Any) -> None:
        self._pg = pg_schemas

    def fresh_url(self) -> str:
        url: str = self._pg.url(flush=False)
        return url

    def raw_contents(self, url: str, log: EventLog) -> bytes:
        """Every value of every table in the store's schema, archive chunks inflated (what
        the server returns: see the README for the row versions VACUUM has yet to reclaim)."""
        import zlib

        from eventlog.backends.postgres._backend import PostgresBackend
        backend = log.backend
        assert isinstance(backend, PostgresBackend)
        s = backend.quoted_schema
        found: list[bytes] = []

        def dump(conn: Any) -> None:
            columns: dict[str, list[str]] = {}
            for table, column, kind in conn.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s", (backend.schema,)):
                columns.setdefault(table, []).append(
                    f'"{column}"' if kind == "bytea" else f'"{column}"::text')
            for table, names in columns.items():
                for row in conn.execute(f'SELECT {", ".join(names)} FROM {s}."{table}"'):
                    found.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
            for (blob,) in conn.execute(f"SELECT blob FROM {s}.archive"):
                found.append(zlib.decompress(blob))

        backend._conns.run("dumping the store", dump)
        return b"\n".join(found)
