"""The store contract on the SQLite backend."""

from __future__ import annotations

import pytest

from .conformance import StoreContract


class TestSQLiteStore(StoreContract):
    shared_between_processes = True
    storage_type = "sqlite"

    @pytest.fixture(autouse=True)
    def _temp(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def fresh_url(self) -> str:
        return f"sqlite:///{self._tmp.mktemp('sqlite') / 'store.db'}"

    def fresh_storage_path(self) -> str:
        return str(self._tmp.mktemp("sqlite-dir"))  # SessionPersistence keeps sessions.db in it
