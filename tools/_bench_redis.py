"""The Redis floor: one plain ``XADD`` per append, no pipeline, one stream per session."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from _bench_data import Msg
from _bench_peers import as_dict
from _bench_store import Spec, Store


class RedisXaddStore(Store):
    """One stream per session, one ``XADD`` round trip per append."""

    no_durable = "durability is the Redis server's appendfsync setting"

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        import redis
        self.redis: Any = redis.Redis.from_url(spec.location)

    @staticmethod
    def _key(sid: str) -> str:
        return f"bench-xadd:{{{sid}}}"

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [as_dict(m) for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        self.redis.xadd(self._key(sid), {"d": orjson.dumps({"session": sid, "ts": created_at})})

    def append(self, sid: str, item: Any) -> None:
        self.redis.xadd(self._key(sid), {"d": orjson.dumps(item)})

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        key = self._key(sid)
        for m in msgs:
            pipe.xadd(key, {"d": orjson.dumps(as_dict(m))})
        pipe.execute()

    def _pages(self, sid: str) -> Iterator[list[Any]]:
        key, start = self._key(sid), "-"
        while True:
            page = self.redis.xrange(key, start, "+", count=10_000)
            if not page:
                return
            yield page
            start = b"(" + page[-1][0]

    def replay(self, sid: str) -> int:
        records = [orjson.loads(fields[b"d"]) for page in self._pages(sid) for _, fields in page]
        return len(records) - 1

    def stream(self, sid: str) -> int:
        count = -1
        for page in self._pages(sid):
            for _, fields in page:
                orjson.loads(fields[b"d"])
                count += 1
        return count

    def tail(self, sid: str, limit: int) -> int:
        page = self.redis.xrevrange(self._key(sid), "+", "-", count=limit)
        return sum(1 for _, f in reversed(page) if "session" not in orjson.loads(f[b"d"]))

    def session_info(self, sid: str) -> object:
        key = self._key(sid)
        return self.redis.xlen(key), self.redis.xrevrange(key, "+", "-", count=1)

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        records = [orjson.loads(fields[b"d"]) for page in self._pages(sid) for _, fields in page]
        return [(r["id"], r["content"]) for r in records[1:]]

    def discard(self) -> None:
        if self.spec.prefix:
            keys = list(self.redis.scan_iter(match=self._key(self.spec.prefix + "*"), count=1000))
            for start in range(0, len(keys), 1000):
                self.redis.delete(*keys[start:start + 1000])

    def close(self) -> None:
        self.redis.close()


def check_redis(url: str) -> str:
    """Why a Redis column can't run here, or "" when the server answers."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install redis)"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"no Redis server at {url}: {exc}"
    return ""
