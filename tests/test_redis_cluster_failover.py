"""Failovers of a real Redis Cluster while writers append: nothing acknowledged is lost or
stored twice, and appends resume within ``retry_for``, so none of them fails.

Two kinds: a manual ``CLUSTER FAILOVER`` on a replica (the master hands over cleanly),
and a master killed with SIGKILL (its replica takes over once the master has been silent
for the node timeout, 1 s here; the killed node is then started again, as a supervisor
would, and rejoins as the new master's replica). Writers are threads, each with its own
store (so its own connections), appending to sessions spread over all three masters.
Each test leaves the cluster as it found it: three masters, each with a replica in sync.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

import eventlog

from ._redis_cluster import Cluster, Node

pytestmark = pytest.mark.redis

RETRY_FOR = 10.0  # seconds an operation keeps retrying: a node timeout (1 s), an election,
# and for a killed master, its restart and resync as the new master's replica


class Writers:
    """Threads appending to their sessions until stopped; what each append returned."""

    def __init__(self, url: str, session_ids: list[str], per_session: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.acked: dict[str, dict[str, int]] = {sid: {} for sid in session_ids}
        self.errors: list[BaseException] = []
        self.slowest = self.slowest_at = 0.0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(sid, f"w{n}"), daemon=True)
                        for sid in session_ids for n in range(per_session)]

    def _run(self, sid: str, name: str) -> None:
        try:
            with eventlog.open(self.url, retry_for=RETRY_FOR) as log:
                i = 0
                while not self.stop.is_set():
                    mark = f"{name}-{i}"
                    started = time.monotonic()
                    event = log.append(sid, "x.y", {"mark": mark})
                    took = time.monotonic() - started
                    with self.lock:
                        self.acked[sid][mark] = event.seq
                        if took > self.slowest:
                            self.slowest, self.slowest_at = took, started
                    i += 1
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def count(self) -> int:
        with self.lock:
            return sum(len(marks) for marks in self.acked.values())

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(RETRY_FOR + 5)


def _wait(check: Callable[[], bool], what: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # a node down or failing over: ask again
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout:g} s")


def _run_failover(cluster: Cluster, fail: Callable[[Node], Node]) -> None:
    """Writers on sessions over every master; ``fail(master)`` fails over the master of the
    first session and returns the node that now holds its slots; then every acknowledged
    append must be read back exactly once, in a gapless chain that verifies."""
    cluster.wait_healthy()
    url = f"{cluster.url}?prefix=fo{uuid.uuid4().hex[:8]}:"
    with eventlog.open(url, retry_for=RETRY_FOR) as log:
        session_ids = [f"s{i}" for i in range(6)]
        for sid in session_ids:
            log.create_session(sid)
        head_key = log.backend.keys(session_ids[0])[0]  # type: ignore[attr-defined]
    master = cluster.node_of(head_key)
    with Writers(url, session_ids) as writers:
        _wait(lambda: writers.count() >= 200, "200 appends before the failover", 30)
        before = writers.count()
        failed_at = time.monotonic()
        successor = fail(master)
        assert successor is not master
        assert cluster.node_of(head_key) is successor
        after_failover = writers.count()
        _wait(lambda: writers.count() >= after_failover + 200, "200 appends after it", RETRY_FOR)
    assert not writers.errors, writers.errors
    assert writers.slowest < RETRY_FOR
    with eventlog.open(url, retry_for=RETRY_FOR) as log:
        for sid in session_ids:
            events = list(log.events(sid))
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            marks = [e.data["mark"] for e in events[1:]]
            assert len(marks) == len(set(marks)), f"{sid}: an append stored twice"
            stored = {e.data["mark"]: e.seq for e in events[1:]}
            # Every acknowledged append is there, at the seq it was acknowledged with; an
            # append can't be in the log unacknowledged, since none failed.
            assert stored == writers.acked[sid], sid
        assert log.verify().ok
    print(f"failover: {before} appends before, {writers.count()} in all, slowest append "
          f"{writers.slowest:.2f} s, begun {writers.slowest_at - failed_at:+.2f} s from the "
          f"failover's start (retry_for {RETRY_FOR:g} s)")
    cluster.wait_healthy()


def test_a_manual_failover_during_appends_loses_and_doubles_nothing(redis_cluster: Cluster) -> None:
    def fail(master: Node) -> Node:
        replica = redis_cluster.replica_of(master)
        replica.call("CLUSTER", "FAILOVER")
        _wait(lambda: replica.role() == "master" and master.role() == "slave",
              "the replica promoted", RETRY_FOR)
        return replica

    _run_failover(redis_cluster, fail)


def test_a_killed_master_during_appends_loses_and_doubles_nothing(redis_cluster: Cluster) -> None:
    def fail(master: Node) -> Node:
        replica = redis_cluster.replica_of(master)
        master.kill()
        took = _wait(lambda: replica.role() == "master", "the replica promoted", RETRY_FOR)
        print(f"\npromoted after {took:.2f} s")
        # A supervisor starts the dead node again: it rejoins as its successor's replica, so
        # appends (acknowledged once a replica holds them) go on.
        redis_cluster.restart(master)
        took = _wait(lambda: replica.replication().get("connected_slaves") == 1, "rejoined", 30)
        print(f"rejoined after {took:.2f} s")
        return replica

    _run_failover(redis_cluster, fail)
