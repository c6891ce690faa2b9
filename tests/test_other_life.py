"""Another life of a session id is not damage (issue 13, item 4): a session deleted and
created again while compaction, cleanup or a follower works on it is reported as gone
(``SessionNotFoundError``) or skipped, never as a corrupt log; and one session's trouble
never stops cleanup of the others."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, EventLog
from eventlog.backends.files._backend import FileBackend
from eventlog.backends.files._dirs import Dirs

SID = "s"
DAY = 86400.0


def recreate(root: Path, sid: str = SID) -> None:
    """Another process deletes the session and creates it again, with one append."""
    with eventlog.open(root) as other:
        other.delete_session(sid)
        other.create_session(sid)
        other.append(sid, "new.life", 1)


def once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()
    return run


def big_session(log: EventLog, sid: str = SID, *, created_at: float | None = None) -> None:
    log.create_session(sid, created_at=created_at)
    for i in range(6):  # over the 4 KiB compaction threshold, over several segments
        log.add_message(ChatMessage(sender="a", content="x" * 900, session_id=sid,
                                    timestamp=(created_at or time.time()) + i))


@pytest.mark.parametrize("between", ["seal-and-snapshot", "listing-and-lock"])
def test_compact_of_a_session_made_again_meanwhile(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                   between: str) -> None:
    """Made again after the seal (the boundary snapshot finds a log that does not reach the
    sealed head), or after archiving listed the old life's segments and before it locked
    the directory (it finds the new life's active segment, not sealed)."""
    with eventlog.open(root, segment_max_events=3) as log:
        big_session(log)
        fire = once(lambda: recreate(root))
        if between == "seal-and-snapshot":
            real_seal = log.backend.seal

            def seal(sid: str, **kwargs: Any) -> Any:
                sealed = real_seal(sid, **kwargs)
                fire()
                return sealed

            monkeypatch.setattr(log.backend, "seal", seal)
        else:
            real_lock = Dirs.lock_dir

            def lock_dir(self: Dirs, sid: str) -> Any:
                fire()
                return real_lock(self, sid)

            monkeypatch.setattr(Dirs, "lock_dir", lock_dir)
        with pytest.raises(eventlog.SessionNotFoundError):
            log.compact(SID)
        report = log.compact()  # all sessions: the new life is compacted or left, never damage
        assert report.ok, report.problems
        assert [e.type for e in log.events(SID)] == ["session.created", "new.life"]
        assert log.verify().ok


@pytest.fixture(params=["sqlite", "redis"])
def row_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from . import _redis_support

    for prefix in _redis_support.run_prefix():
        yield f"redis://{_redis_support.HOST}:{_redis_support.PORT}/0?prefix={prefix}"


def test_compact_of_a_row_store_session_made_again_meanwhile(
        row_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on SQLite and Redis (Redis said "sealed records after seq 0 are missing")."""
    with eventlog.open(row_store_url) as log:
        big_session(log)
        real_seal = log.backend.seal

        def recreate_here() -> None:
            with eventlog.open(row_store_url) as other:
                other.delete_session(SID)
                other.create_session(SID)
                other.append(SID, "new.life", 1)

        fire = once(recreate_here)

        def seal(sid: str, **kwargs: Any) -> Any:
            sealed = real_seal(sid, **kwargs)
            fire()
            return sealed

        monkeypatch.setattr(log.backend, "seal", seal)
        with pytest.raises(eventlog.SessionNotFoundError):
            log.compact(SID)
        assert [e.type for e in log.events(SID)] == ["session.created", "new.life"]
        assert log.verify().ok


def test_compact_all_skips_a_session_made_again_meanwhile(root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with eventlog.open(root, segment_max_events=3) as log:
        big_session(log)
        big_session(log, "t")
        real = log.backend.archive
        fire = once(lambda: recreate(root))

        def archive(sid: str) -> Any:
            if sid == SID:
                fire()
            return real(sid)

        monkeypatch.setattr(log.backend, "archive", archive)
        report = log.compact()
        assert report.ok, report.problems
        assert report.segments_archived >= 1  # "t" was compacted
        assert log.verify().ok


def old_store(root: Path) -> EventLog:
    log = eventlog.open(root)
    old = time.time() - 40 * DAY
    for sid in ("a", "b", "c"):
        big_session(log, sid, created_at=old)
    return log


def test_cleanup_goes_on_past_a_session_made_again(root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive copy of "b" reads its new life half-way (its head is not the one judged
    old): "b" stays, as the new life it is now, and "a" and "c" go."""
    log = old_store(root)
    real = log.backend.scan
    scans: list[str] = []

    def scan(sid: str, *args: Any) -> Any:
        scans.append(sid)
        if sid == "b" and scans.count("b") == 2:  # the first judged its age, this one copies it
            recreate(root, "b")
        return real(sid, *args)

    monkeypatch.setattr(log.backend, "scan", scan)
    assert log.cleanup_old_sessions(30, archive_dir=tmp_path / "aside") == ["a", "c"]
    assert [e.type for e in log.events("b")] == ["session.created", "new.life"]
    assert sorted(p.name for p in (tmp_path / "aside").iterdir()) == ["a.jsonl", "c.jsonl"]
    log.close()


def test_cleanup_reports_a_session_it_could_not_remove_and_goes_on(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = old_store(root)
    real = FileBackend.delete

    def delete(self: FileBackend, sid: str, **kwargs: Any) -> bool:
        if sid == "b":
            raise eventlog.StorageError(5, "injected: Input/output error")
        return real(self, sid, **kwargs)

    monkeypatch.setattr(FileBackend, "delete", delete)
    with pytest.raises(eventlog.CleanupError) as info:
        log.cleanup_old_sessions(30, archive_dir=tmp_path / "aside")
    assert info.value.removed == ["a", "c"]
    assert list(info.value.failed) == ["b"]
    assert isinstance(info.value.failed["b"], eventlog.StorageError)
    assert isinstance(info.value, eventlog.StorageError)
    assert [s.session_id for s in log.list_sessions()] == ["b"]
    assert sorted(p.name for p in (tmp_path / "aside").iterdir()) == ["a.jsonl", "c.jsonl"]
    log.close()


@pytest.mark.parametrize("where", ["listing", "segment"])
def test_follow_of_a_session_made_again_raises_session_not_found(
        root: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The races seen from outside ("no segment files", "segment vanished"), made to
    happen: the follower's listing of the old directory comes back empty (emptied by the
    delete as it was read), or the segment it listed to start from is not in the new life."""
    with eventlog.open(root, segment_max_events=3) as log:
        big_session(log)
        fire = once(lambda: recreate(root))
        if where == "listing":
            real_listing = Dirs.listing

            def listing(self: Dirs, sid: str) -> Any:
                if sid == SID and not fired:
                    fired.append(True)
                    recreate(root)
                    return {}
                return real_listing(self, sid)

            fired: list[bool] = []
            monkeypatch.setattr(Dirs, "listing", listing)
        else:
            real_open = Dirs.open_read

            def open_read(self: Dirs, sid: str, first: int, *args: Any) -> Any:
                if first > 1:
                    fire()
                return real_open(self, sid, first, *args)

            monkeypatch.setattr(Dirs, "open_read", open_read)
        with pytest.raises(eventlog.SessionNotFoundError):
            for _ in log.follow(SID, after_seq=4, timeout=5):
                pass



def test_lines_handed_to_the_id_check_must_continue_its_window(tmp_path: Path) -> None:
    """A backend without positions (Redis, issue 16; SQLite here, a row backend too) hands
    the id check the lines after the head its writer sent: lines at the right seqs but of
    another life (the same seq, another chain) must not move a window on, or it would hold
    the other life's ids."""
    from eventlog.backends._rows import RowBackend
    from eventlog.store import _retries

    with eventlog.open(f"sqlite:///{tmp_path}/a.db") as log, \
            eventlog.open(f"sqlite:///{tmp_path}/b.db") as elsewhere:
        for store, content in ((log, "here"), (elsewhere, "there")):
            store.create_session(SID, participants=["A"])
            store.add_message(ChatMessage(sender="A", content=content, session_id=SID))
        def head_of(store: EventLog) -> Any:
            backend = store.backend
            assert isinstance(backend, RowBackend)
            return backend.read_head(SID)[1]

        window = _retries.Window(head_of(log), {}, {}, None)  # at seq 2
        theirs = elsewhere.add_message(ChatMessage(sender="A", content="x", session_id=SID))
        mine = log.add_message(ChatMessage(sender="A", content="y", session_id=SID))

        def after_two(store: EventLog) -> tuple[Any, list[bytes]]:
            return (head_of(store),
                    [line for _source, _no, line in store.backend.scan(SID, 2, None).lines])

        head, lines = after_two(elsewhere)
        assert _retries._read_since(SID, window, head, lambda _where: (lines, None), log.version) is None
        assert theirs.id not in window.ids
        head, lines = after_two(log)
        assert _retries._read_since(SID, window, head, lambda _where: (lines, None), log.version) is window
        assert window.ids[mine.id] == 3


@pytest.mark.parametrize("after", ["gone", "created again"])
def test_an_empty_read_of_a_life_that_ended_under_it_is_gone_not_damaged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str) -> None:
    """The fold read no event at all because the session was deleted between the backend's
    steps (Redis pages under churn raised "the log holds no events" on a healthy store).
    Every life holds its create event, so the session it read is gone."""
    from eventlog.backends._base import Scan
    from eventlog.core._codec import genesis
    root = tmp_path / "store"
    with eventlog.open(root) as log:
        log.create_session(SID, ["A"])
        log.append(SID, "x", 1)
    with eventlog.open(root) as log:
        backend = log.backend

        def emptied(session_id: str, after_seq: int, position: Any) -> Scan:
            # What the read met: the old life's log already gone.
            with eventlog.open(root) as other:
                other.delete_session(session_id)
                if after == "created again":
                    other.create_session(session_id, ["B"])
            return Scan(genesis(session_id), iter(()))

        monkeypatch.setattr(backend, "scan", emptied)
        monkeypatch.setattr(backend, "snapshots", lambda session_id: [])
        with pytest.raises(eventlog.SessionNotFoundError):
            log.get_session(SID)
        monkeypatch.undo()
        assert log.verify().ok
        if after == "created again":
            assert log.get_session(SID).participants == ["B"]


def test_an_empty_log_of_a_session_still_there_is_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventlog.backends._base import Scan
    from eventlog.core._codec import genesis
    root = tmp_path / "store"
    with eventlog.open(root) as log:
        log.create_session(SID, ["A"])
        backend = log.backend
        monkeypatch.setattr(backend, "scan", lambda sid, after_seq, position: Scan(genesis(sid), iter(())))
        monkeypatch.setattr(backend, "last_seq", lambda sid: 0)  # the log is empty, as read
        monkeypatch.setattr(backend, "snapshots", lambda session_id: [])
        with pytest.raises(eventlog.CorruptLogError, match="holds no events"):
            log.get_session(SID)
