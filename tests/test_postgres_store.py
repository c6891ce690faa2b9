"""The store contract on the PostgreSQL backend, against the server on 127.0.0.1:5432,
each store in a schema of this test run's own (dropped afterwards). Without a server it
skips, except under CI=true, where it fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
