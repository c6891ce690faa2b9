"""The store contract on a real Redis Cluster (three masters, each with a replica) on
loopback, started once for the test run (the ``redis_cluster`` fixture in conftest.py);
plus what a cluster adds: a session's keys in one slot, sessions spread over every master,
the registry listing them all. Without redis-server it skips, except under CI=true."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import eventlog

from ._redis_cluster import Cluster
from ._redis_support import HOST, OwnServer
from .conformance import StoreContract

pytestmark = pytest.mark.redis


class TestRedisClusterStore(StoreContract):
    shared_between_processes = True
    missing_store_detectable = False  # a store is a key prefix: opening one writes nothing
    storage_type = "redis"

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: Cluster) -> None:
        self._cluster_url = redis_cluster.url

    def fresh_url(self) -> str:
        return f"{self._cluster_url}?prefix=t{uuid.uuid4().hex[:12]}:"

    def raw_contents(self, url: str, log: eventlog.EventLog) -> bytes:
        """Every value under the store's prefix on every node (a cluster client's scan
        walks every master), archive chunks inflated: the single server's reading."""
        from .test_redis_store import TestRedisStore
        return TestRedisStore.raw_contents(self, url, log)  # type: ignore[arg-type]


def test_a_sessions_keys_share_one_slot_and_sessions_spread_over_every_master(
        redis_cluster: Cluster) -> None:
    """Each session's keys hash to one slot (so its scripts run on one node), sessions land
    on all three masters, and the registry (one set, single-key commands only) lists them
    all, across slots, through create, compaction, delete and create again."""
    url = f"{redis_cluster.url}?prefix=spread{uuid.uuid4().hex[:8]}:"
    with eventlog.open(url) as log:
        backend = log.backend
        # Ids with braces and percent signs too: an id holding "}" must not cut its tag short.
        ids = [f"s{i}" for i in range(24)] + ["}x", "a}b", "{", "{a}", "%7D", "a%25}", "}"]
        for sid in ids:
            log.create_session(sid)
            log.append(sid, "x.y", {"i": 1})
        masters = set()
        with redis_cluster.nodes[0].client() as node:
            for sid in ids:
                keys = backend.keys(sid)  # type: ignore[attr-defined]
                slots = {int(node.execute_command("CLUSTER", "KEYSLOT", key)) for key in keys}
                assert len(slots) == 1, (sid, keys, slots)
                masters.add(redis_cluster.node_of(keys[0]).port)
        assert len(masters) == 3
        assert log.session_ids() == sorted(ids)
        log.compact("s0")
        for sid in ids[:12] + ids[24:]:
            log.delete_session(sid)
        assert log.session_ids() == sorted(ids[12:24])
        log.create_session("s0")
        assert log.session_ids() == sorted(["s0", *ids[12:24]])
        assert log.verify().ok


def test_a_cluster_url_is_a_cluster_store(redis_cluster: Cluster) -> None:
    url = f"{redis_cluster.url}?prefix=u{uuid.uuid4().hex[:8]}:"
    with eventlog.open(url) as log:
        backend = log.backend
        assert backend.where.startswith("Redis Cluster via ")  # type: ignore[attr-defined]
        assert backend.replicas == 1  # type: ignore[attr-defined]
        log.create_session("a")
    with eventlog.open(url + "&replicas=0") as log:
        assert log.backend.replicas == 0  # type: ignore[attr-defined]
        assert log.session_ids() == ["a"]


def test_an_append_no_replica_confirms_fails_saying_its_fate_and_lands_once(tmp_path: Path) -> None:
    """``replicas=1`` on a server with no replica: the append is written on the master, but
    no replica confirms it, so after ``retry_for`` it raises a StorageError that says its
    fate is unknown; it was sent again meanwhile with the same token, and is there once."""
    server = OwnServer(tmp_path).start()
    try:
        url = f"redis://{HOST}:{server.port}/0?prefix=nr:"
        with eventlog.open(url) as log:
            log.create_session("s")
        with eventlog.open(url, replicas=1, retry_for=2.5) as log:
            started = time.monotonic()
            with pytest.raises(eventlog.StorageError, match="may or may not") as info:
                log.append("s", "x.y", {"n": 1})
            assert 2.5 <= time.monotonic() - started < 6
            assert "replica" in str(info.value)
        with eventlog.open(url) as log:
            assert [e.data for e in log.events("s")][1:] == [{"n": 1}]
            assert log.verify().ok
    finally:
        server.stop()
