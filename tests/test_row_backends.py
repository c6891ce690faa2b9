"""What the row backends (memory, SQLite, Redis) share: reading by seq, pages, generations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog
from eventlog import ChatMessage

from . import _redis_support


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    yield from _redis_support.run_prefix()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://rows-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    prefix = request.getfixturevalue("redis_prefix") + uuid.uuid4().hex[:8] + ":"
    return f"redis://127.0.0.1:6379/0?prefix={prefix}"


def test_a_readers_kept_fold_follows_other_writers_and_new_lives(url: str) -> None:
    with eventlog.open(url) as reader, eventlog.open(url) as writer:
        sid = writer.create_session(participants=["a"]).session_id
        writer.add_message(ChatMessage(sender="a", content="1", session_id=sid))
        assert reader.get_session(sid).message_count == 1  # the reader keeps this fold
        writer.add_message(ChatMessage(sender="b", content="2", session_id=sid))
        state = reader.get_session(sid)
        assert (state.message_count, state.participants, state.last_seq) == (2, ["a", "b"], 3)
        # Another store deletes it and creates it again, as long: the kept fold is stale.
        writer.delete_session(sid)
        writer.create_session(sid, participants=["z"])
        writer.append_many(sid, [("x", 1), ("x", 2)])
        state = reader.get_session(sid)
        assert (state.message_count, state.participants, state.last_seq) == (0, ["z"], 3)


def test_pages_join_up_exactly(url: str) -> None:
    with eventlog.open(url) as log:
        log.backend.page_size = 7  # type: ignore[attr-defined]
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(100)])
        assert [e.seq for e in log.events(sid)] == list(range(1, 102))
        assert [e.seq for e in log.events(sid, after_seq=50)] == list(range(51, 102))
        assert [e.seq for e in log.events(sid, after_seq=101)] == []
        assert [e.seq for e in log.events(sid, after_seq=500)] == []
        assert len(log.get_messages(sid)) == 0 and log.verify(sid).ok


def test_a_scan_stops_at_a_delete_instead_of_splicing_two_lives(url: str) -> None:
    with eventlog.open(url) as log:
        log.backend.page_size = 2  # type: ignore[attr-defined]
        sid = log.create_session().session_id
        log.append_many(sid, [("old", i) for i in range(6)])
        reading = log.events(sid)
        assert [next(reading).seq for _ in range(2)] == [1, 2]
        log.delete_session(sid)
        log.create_session(sid)
        log.append_many(sid, [("new", i) for i in range(6)])
        rest = list(reading)  # at most the page already fetched; never the new life's records
        assert all(e.type == "old" for e in rest) and len(rest) <= 2
