"""Retention: cleanup_old_sessions(days, archive_dir=, dry_run=)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson
import pytest

import eventlog
from eventlog import ChatMessage, Event, SessionNotFoundError, SessionPersistence
from eventlog.backends.files._segments import parse_header, parse_trailer
from eventlog.core._codec import FORMAT_VERSION, ChainReader, genesis

DAY = 86400.0


def aged(log: eventlog.EventLog, sid: str, days_ago: float, messages: int = 3) -> None:
    ts = time.time() - days_ago * DAY
    log.create_session(sid, participants=["Agent-1", "Agent-2"], created_at=ts)
    for i in range(messages):
        log.add_message(ChatMessage(sender="Agent-1", recipient="Agent-2", content=f"hello {i}",
                                    session_id=sid, timestamp=ts + i))


def test_the_original_designs_cleanup_demo(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    old, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    aged(log, old, 40)
    aged(log, fresh, 0)
    assert log.get_session(old).last_activity < time.time() - 39 * DAY
    assert log.cleanup_old_sessions(days=30) == [old]
    assert not log.session_exists(old)
    with pytest.raises(SessionNotFoundError):
        log.get_session(old)
    with pytest.raises(SessionNotFoundError):
        log.get_messages(old, limit=50)
    assert not (tmp_path / old).exists()  # really gone: segments, snapshots, lock
    assert [s.session_id for s in log.list_sessions()] == [fresh]
    assert log.get_session(fresh).message_count == 3
    log.create_session(old)  # and the id can be used again
    assert log.get_session(old).message_count == 0


def test_last_activity_is_the_newest_event_not_the_creation(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    aged(log, "revived", 40)
    log.add_message(ChatMessage(sender="Agent-2", content="back", session_id="revived"))
    aged(log, "imported", 40)  # old timestamps, written just now: ages by its own clock
    assert log.cleanup_old_sessions(30) == ["imported"]
    assert log.session_exists("revived")


def test_fractional_days_and_boundaries(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    aged(log, "hours", 0.5)  # 12 hours
    assert log.cleanup_old_sessions(0.6) == []
    assert log.cleanup_old_sessions(0.4) == ["hours"]
    log.create_session("now")
    assert log.cleanup_old_sessions(0) == ["now"]


@pytest.mark.parametrize("days", [-1, float("nan"), float("inf"), "7", None, True])
def test_bad_days(tmp_path: Path, days: object) -> None:
    log = eventlog.open(tmp_path)
    aged(log, "x", 40)
    with pytest.raises(eventlog.InvalidInputError):
        log.cleanup_old_sessions(days)  # type: ignore[arg-type]
    assert log.session_exists("x")


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    aged(log, "a", 40)
    aged(log, "b", 50)
    aged(log, "c", 1)
    before = sorted(os.listdir(tmp_path / "a"))
    aside = tmp_path.parent / f"{tmp_path.name}-aside"
    assert log.cleanup_old_sessions(30, dry_run=True, archive_dir=str(aside)) == ["a", "b"]
    assert sorted(os.listdir(tmp_path / "a")) == before
    assert log.session_exists("b") and not aside.exists()


def read_aside(path: Path, sid: str) -> list[Event]:
    """Read an archived history back, checking its header, chain and trailer."""
    lines = path.read_bytes().splitlines()
    assert parse_header(lines[0]) == genesis(sid)
    chain = ChainReader(sid, genesis(sid), FORMAT_VERSION)
    events = list(chain.read((path.name, n, line) for n, line in enumerate(lines[1:-1], 2)))
    assert parse_trailer(lines[-1]) == chain.head
    return events


def test_archive_dir_keeps_a_verifiable_history_that_can_be_imported(tmp_path: Path) -> None:
    store, aside = tmp_path / "store", tmp_path / "aside"
    log = eventlog.open(store, segment_max_events=4)
    aged(log, "old", 40, messages=10)
    log.compact("old")  # archives are read back like anything else
    expected = list(log.events("old"))
    session = log.get_session("old")
    assert log.cleanup_old_sessions(30, archive_dir=str(aside)) == ["old"]
    assert not log.session_exists("old")
    assert os.listdir(aside) == ["old.jsonl"]
    assert read_aside(aside / "old.jsonl", "old") == expected
    # The README's restore recipe.
    with open(aside / "old.jsonl", "rb") as f:
        records = [orjson.loads(line) for line in f]
    log.import_events("old", (Event(r["seq"], r["type"], r["ts"], r["data"])
                              for r in records if "seq" in r))
    assert log.get_session("old") == session
    assert list(log.events("old")) == expected
    # Archived again: a second file, never overwriting the first.
    assert log.cleanup_old_sessions(30, archive_dir=aside) == ["old"]
    assert sorted(os.listdir(aside)) == ["old.jsonl", "old~2.jsonl"]


def test_a_session_appended_to_during_cleanup_is_kept_whole(tmp_path: Path, monkeypatch) -> None:
    log = eventlog.open(tmp_path / "store")
    aged(log, "old", 40)
    other = eventlog.open(tmp_path / "store")
    real_delete = log.backend.delete

    def delete_after_an_append(session_id: str, *, if_head=None) -> bool:
        # Another process appends between cleanup's judging the session and its delete.
        other.add_message(ChatMessage(sender="late", content="still here", session_id=session_id))
        return real_delete(session_id, if_head=if_head)

    monkeypatch.setattr(log.backend, "delete", delete_after_an_append)
    aside = tmp_path / "aside"
    assert log.cleanup_old_sessions(30, archive_dir=str(aside)) == []
    assert log.get_session("old").message_count == 4
    assert [m.content for m in log.get_messages("old", limit=1)] == ["still here"]
    assert os.listdir(aside) == []  # its copy went again
    assert log.verify().ok


def test_damaged_sessions_are_kept(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    aged(log, "old", 40)
    segment = tmp_path / "old" / "seg-0000000000000001.jsonl"
    segment.write_bytes(segment.read_bytes().replace(b"hello 0", b"hellO 0"))
    assert log.cleanup_old_sessions(30) == []
    assert log.session_exists("old")


def test_session_persistence_cleanup(tmp_path: Path) -> None:
    p = SessionPersistence(storage_type="json", storage_path=str(tmp_path))
    session = p.create_session(session_id=str(uuid.uuid4()), participants=["Agent-1", "Agent-2"],
                               created_at=time.time() - 10 * DAY)
    p.add_message(ChatMessage(id=str(uuid.uuid4()), sender="Agent-1", recipient="Agent-2",
                              content="Hello", timestamp=time.time() - 9 * DAY,
                              session_id=session.session_id))
    keep = p.create_session(participants=["Agent-3"])
    assert p.cleanup_old_sessions(days=7) == [session.session_id]
    assert p.cleanup_old_sessions() == []
    assert [s.session_id for s in p.list_sessions()] == [keep.session_id]
    p.close()


def test_the_readmes_restore_recipe_restores_every_id_cleanup_archived(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's recipe, run on what cleanup wrote (outside tester: it took the id from the
    file name, and restored 1 of 7 ids: escaped names gave an empty id)."""
    from .test_readme import README, python_blocks
    [recipe] = [code for _, code, _ in python_blocks(README.read_text())
                if "chatlogs-archive" in code and "import_events" in code]
    ids = ["team", "user:42", "Team", "thread/123", "é", "a~b", "x" * 255]
    old = time.time() - 100 * 86400
    monkeypatch.chdir(tmp_path)
    with eventlog.open("chatlogs") as log:
        for sid in ids:
            log.create_session(sid, ["A"], created_at=old)
            log.add_message(ChatMessage(sender="A", content=f"about {sid}", session_id=sid,
                                        timestamp=old + 1))
        before = {sid: list(log.events(sid)) for sid in ids}
        assert sorted(log.cleanup_old_sessions(30, archive_dir="chatlogs-archive")) == sorted(ids)
        assert log.session_ids() == []
    exec(compile(recipe, "README recipe", "exec"), {})
    with eventlog.open("chatlogs") as log:
        assert {sid: list(log.events(sid)) for sid in ids} == before
        assert log.verify().ok
