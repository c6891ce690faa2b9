"""Compaction's archive in the row backends (SQLite's archive table, Redis's archive stream,
and Redis with a file store as its cold tier): archived records read back exactly, while
appends, readers and other compactors carry on."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, EventLog

from . import _redis_support

KINDS = ["sqlite", "redis", "redis-file-tier"]


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    yield from _redis_support.run_prefix()


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    prefix = request.getfixturevalue("redis_prefix") + uuid.uuid4().hex[:8] + ":"
    base = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    return base + (f"&archive={tmp_path}/cold" if request.param == "redis-file-tier" else "")


@pytest.fixture
def log(url: str) -> Iterator[EventLog]:
    with eventlog.open(url) as store:
        yield store


def compact(log: EventLog, sid: str) -> tuple[int, int, int]:
    report = log.compact(sid)
    assert report.ok and report.sessions == 1
    return report.segments_archived, report.bytes_before, report.bytes_after


def messages(sid: str, n: int, start: int = 0) -> list[ChatMessage]:
    return [ChatMessage(sender=f"a{i % 3}", content=f"m{i}", session_id=sid)
            for i in range(start, start + n)]


def test_archived_records_read_back_exactly(log: EventLog) -> None:
    sid = log.create_session(participants=["a0"]).session_id
    log.add_messages(messages(sid, 3000))
    before = list(log.events(sid))
    size_before = log.size(sid)
    chunks, before_bytes, after_bytes = compact(log, sid)
    assert chunks >= 1 and before_bytes == size_before
    assert after_bytes == log.size(sid) < size_before / 2  # chat text compresses well
    assert list(log.events(sid)) == before
    assert list(log.events(sid, after_seq=1234)) == before[1234:]
    assert [m.content for m in log.get_messages(sid, limit=5)] == [f"m{i}" for i in range(2995, 3000)]
    assert [m.content for m in log.get_messages(sid, limit=3, before_seq=10)] == ["m5", "m6", "m7"]
    assert log.get_messages(sid, after_seq=2990, before_seq=2993)[0].content == "m2989"
    report = log.verify(sid)
    assert report.ok and report.events_checked == 3001, report.problems
    assert log.get_session(sid).message_count == 3000
    # Appending continues after the archive, and archiving again moves only what is new.
    log.add_messages(messages(sid, 10, start=3000))
    assert [e.seq for e in log.follow(sid, after_seq=3005, timeout=0)] == list(range(3006, 3012))
    compact(log, sid)
    log.add_message(messages(sid, 1, start=3010)[0])
    assert [e.seq for e in log.events(sid)] == list(range(1, 3013)) and log.verify(sid).ok


def test_compacting_with_nothing_new_does_nothing(log: EventLog) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(10)])
    compact(log, sid)
    assert compact(log, sid)[0] == 0
    assert [e.seq for e in log.events(sid)] == list(range(1, 12))


def test_a_deleted_and_recreated_id_starts_a_new_archive(log: EventLog) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("old", i) for i in range(50)])
    compact(log, sid)
    log.delete_session(sid)
    log.create_session(sid)
    log.append_many(sid, [("new", i) for i in range(20)])
    compact(log, sid)
    assert [e.type for e in log.events(sid)][1:] == ["new"] * 20
    assert log.verify(sid).ok


def test_appends_and_readers_carry_on_while_archiving(log: EventLog) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(6000)])
    stop = threading.Event()
    problems: list[BaseException] = []

    def append() -> None:
        try:
            for i in range(200):
                log.append(sid, "live", i)
        except BaseException as exc:  # reported below
            problems.append(exc)
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                seqs = [e.seq for e in log.events(sid)]
                assert seqs == list(range(1, len(seqs) + 1))
        except BaseException as exc:  # reported below
            problems.append(exc)

    threads = [threading.Thread(target=append), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    compact(log, sid)
    for thread in threads:
        thread.join(60)
    assert problems == []
    assert [e.seq for e in log.events(sid)] == list(range(1, 6202))
    assert log.verify(sid).ok


def test_two_compactors_at_once(url: str) -> None:
    with eventlog.open(url) as a, eventlog.open(url) as b:
        sid = a.create_session().session_id
        a.append_many(sid, [("x", i) for i in range(9000)])
        results: list[Any] = []
        threads = [threading.Thread(target=lambda s=s: results.append(compact(s, sid))) for s in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 2
        assert [e.seq for e in a.events(sid)] == list(range(1, 9002)) and a.verify(sid).ok
