"""The store contract on the Redis Streams backend, against the server on 127.0.0.1:6379,
under a key prefix of this test run's own (deleted afterwards). Without a server it skips,
except under CI=true, where it fails."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from eventlog import EventLog
from eventlog.backends.redis._backend import RedisBackend

from .conformance import StoreContract


@pytest.fixture(scope="module")
def run_prefix() -> Iterator[str]:
    from . import _redis_support  # skips (fails under CI=true) without redis or a server
    yield from _redis_support.run_prefix()


@pytest.mark.redis
class TestRedisStore(StoreContract):
    shared_between_processes = True
    missing_store_detectable = False  # a store is a key prefix: opening one writes nothing
    storage_type = "redis"

    @pytest.fixture(autouse=True)
    def _prefix(self, run_prefix: str) -> None:
        self._run_prefix = run_prefix

    def fresh_url(self) -> str:
        return f"redis://127.0.0.1:6379/0?prefix={self._run_prefix}{uuid.uuid4().hex[:12]}:"

    def fresh_storage_path(self) -> str:
        return self.fresh_url()  # SessionPersistence(storage_type="redis") takes the URL

    def raw_contents(self, url: str, log: EventLog) -> bytes:
        """Every value under the store's prefix, archive chunks inflated."""
        backend = log.backend
        assert isinstance(backend, RedisBackend)
        client: Any = backend.client
        found: list[Any] = []
        for key in client.scan_iter(match=backend.prefix + "*"):
            kind = client.type(key)
            if kind == b"stream":
                for _id, fields in client.xrange(key):
                    found += list(fields.values())
                    if b"z" in fields:
                        found.append(zlib.decompress(fields[b"z"]))
            elif kind == b"hash":
                found += list(client.hgetall(key).values())
            elif kind == b"string":
                found.append(client.get(key))
            elif kind == b"set":
                found += list(client.smembers(key))
            elif kind == b"zset":
                found += list(client.zrange(key, 0, -1))
        return b"\n".join(found)
