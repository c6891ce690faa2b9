"""The store contract (tests/conformance.py) run unchanged against the memory, SQLite and
Redis backends. Each class only says how to make a new, empty store; the file backend's
is in test_file_store.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .conformance import StoreContract


class TestMemoryStore(StoreContract):
    shared_between_processes = False  # one process's memory
    storage_type = "memory"

    def fresh_url(self) -> str:
        return f"memory://contract-{uuid.uuid4().hex}"


class TestSQLiteStore(StoreContract):
    shared_between_processes = True
    storage_type = "sqlite"

    @pytest.fixture(autouse=True)
    def _temp(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def fresh_url(self) -> str:
        return f"sqlite:///{self._tmp.mktemp('sqlite')}/store.db"  # an absolute path: ////

    def fresh_storage_path(self) -> str:
        return str(self._tmp.mktemp("sqlite") / "sessions.db")


@pytest.fixture(scope="module")
def redis_run_prefix() -> Iterator[str]:
    from . import _redis_support  # skips (fails under CI=true) without redis or a server
    yield from _redis_support.run_prefix()


@pytest.mark.redis
class TestRedisStore(StoreContract):
    shared_between_processes = True
    storage_type = "redis"

    @pytest.fixture(autouse=True)
    def _run_prefix(self, redis_run_prefix: str) -> None:
        self._prefix = redis_run_prefix

    def fresh_url(self) -> str:
        return f"redis://127.0.0.1:6379/0?prefix={self._prefix}{uuid.uuid4().hex[:8]}:"

    def fresh_storage_path(self) -> str:
        return self.fresh_url()
