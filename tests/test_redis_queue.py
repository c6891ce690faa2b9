"""The Redis backend's queue of contending appenders (eventlog/backends/redis/_queue.py):
the baton is advice, so a lost baton, extra batons and writers that race on one session
still give every append exactly once, in a gapless chain; and in the normal course the
baton comes back, one of it, carrying the head."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import eventlog

from . import _redis_support
from ._redis_support import HOST, PORT, redis

pytestmark = pytest.mark.redis

WRITERS, EACH = 4, 60


@pytest.fixture(scope="module")
def run_prefix() -> Iterator[str]:
    yield from _redis_support.run_prefix()


@pytest.fixture
def url(run_prefix: str) -> str:
    return f"redis://{HOST}:{PORT}/0?prefix={run_prefix}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def raw() -> Iterator[Any]:
    client = redis.Redis(host=HOST, port=PORT)
    yield client
    client.close()


def _race(url: str, sid: str, lock_timeout: float = 10.0) -> list[BaseException]:
    """WRITERS threads, each with a store of its own, append EACH events to ``sid`` at once."""
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write(n: int) -> None:
        try:
            with eventlog.open(url, lock_timeout=lock_timeout) as log:
                start.wait()
                for i in range(EACH):
                    log.append(sid, "x.y", {"w": n, "i": i})
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def _check(url: str, sid: str) -> None:
    with eventlog.open(url) as log:
        events = list(log.events(sid))
        assert [e.seq for e in events] == list(range(1, WRITERS * EACH + 2))
        got = sorted((e.data["w"], e.data["i"]) for e in events[1:])
        assert got == [(n, i) for n in range(WRITERS) for i in range(EACH)]
        assert log.verify(sid).ok


def test_racing_writers_hand_one_baton_on_carrying_a_head_of_the_chain(url: str, raw: Any) -> None:
    with eventlog.open(url) as log:
        log.create_session("s")
        head_key, log_key, *_, baton = log.backend.keys("s")  # type: ignore[attr-defined]
    assert not _race(url, "s")
    _check(url, "s")
    if raw.hget(head_key, "bq"):  # the writers did contend (they nearly always do)
        # One baton came back, carrying a head of the chain (the last one its holders
        # wrote: a writer that got in without queueing may have appended after it).
        [carried] = raw.lrange(baton, 0, -1)
        seq, digest = carried.decode().split()
        [(_id, fields)] = raw.xrange(log_key, f"0-{seq}", f"0-{seq}")
        assert fields[b"r"].endswith(f',"h":"{digest}"}}'.encode())


def test_a_baton_lost_with_its_holder_is_made_again(url: str, raw: Any) -> None:
    """The session says a baton exists, but none is there (its holder died holding it):
    writers that queue wait one wait, see the head stand still, and make it again."""
    with eventlog.open(url) as log:
        log.create_session("s")
        head_key, *_, baton = log.backend.keys("s")  # type: ignore[attr-defined]
    raw.hset(head_key, "bq", 1)
    raw.delete(baton)
    assert not _race(url, "s", lock_timeout=20)
    _check(url, "s")


def test_extra_batons_cost_nothing_but_time(url: str, raw: Any) -> None:
    with eventlog.open(url) as log:
        log.create_session("s")
        head_key, *_, baton = log.backend.keys("s")  # type: ignore[attr-defined]
    raw.hset(head_key, "bq", 1)
    raw.rpush(baton, "1 stale", "1 stale", "0 wrong")  # batons with heads long gone
    assert not _race(url, "s")
    _check(url, "s")


def test_queueing_for_a_deleted_session_raises_not_found(url: str) -> None:
    from eventlog.backends.redis import _queue
    with eventlog.open(url) as log:
        log.create_session("s")
        log.delete_session("s")
        with pytest.raises(eventlog.SessionNotFoundError):
            _queue.take(log.backend, "s", time.monotonic() + 10, 1)  # type: ignore[arg-type]
