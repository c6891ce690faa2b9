"""The JSONL file backend: the whole store contract, plus what only files have
(privacy modes, the root directory, fork safety, locks)."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import EventLog
from eventlog.backends.files._names import dir_name

from ._contract_base import message
from ._contract_input import HOSTILE_IDS, VALID_ODD_IDS
from ._contract_reads import _later, _next_within
from ._torn import die_mid_write
from .conformance import StoreContract


class TestFileStore(StoreContract):
    shared_between_processes = True
    storage_type = "json"

    @pytest.fixture(autouse=True)
    def _temp(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def fresh_url(self) -> str:
        return str(self._tmp.mktemp("store"))


def _tree(top: Path) -> dict[str, int]:
    """Every path under ``top`` with its mode bits."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(top))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _exercise(root: Path, **options: object) -> None:
    """Make every kind of file the store writes: segments, snapshots, a quarantine file."""
    with eventlog.open(root, snapshot_every=2, segment_max_events=3, **options) as log:
        sid = log.create_session("s").session_id
        for i in range(7):
            log.append(sid, "x", i)
        die_mid_write(root, lambda other: other.append(sid, "x", "torn"), 20)
        log.append(sid, "x", "after the torn tail")
        assert log.verify().ok
    names = {p.name.split("-")[0] for p in (root / "s").iterdir()}
    assert {"lock", "seg", "snap", "quarantine"} <= names, names


class TestPrivacy:
    def test_files_are_owner_only_by_default(self, root: Path, umask: int) -> None:
        _exercise(root)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        tree = _tree(root)
        assert tree
        for name, mode in tree.items():
            assert mode == (0o700 if (root / name).is_dir() else 0o600), name

    @pytest.mark.parametrize(("mode", "dir_mode"), [(0o640, 0o750), (0o660, 0o770), (0o644, 0o755)])
    def test_another_mode(self, root: Path, umask: int, mode: int, dir_mode: int) -> None:
        _exercise(root, mode=mode)
        for name, found in _tree(root).items():
            assert found == (dir_mode if (root / name).is_dir() else mode) & ~umask, name


class TestRootDirectory:
    def test_hostile_ids_touch_nothing_anywhere(self, tmp_path: Path) -> None:
        root = tmp_path / "deep" / "store"
        with eventlog.open(root) as log:
            log.create_session("s")
            before = _tree(tmp_path)
            calls: list[Callable[[Any], object]] = [
                lambda bad: log.append(bad, "x", 1), lambda bad: log.add_message(message(bad)),
                lambda bad: log.delete_session(bad), lambda bad: log.get_session(bad),
                lambda bad: log.import_events(bad, log.events("s"))]
            for bad in HOSTILE_IDS:
                for call in calls + ([lambda bad: log.create_session(bad)] if bad is not None else []):
                    with pytest.raises(eventlog.InvalidInputError):
                        call(bad)
            assert _tree(tmp_path) == before

    def test_sessions_live_in_their_own_directory_under_the_root(self, tmp_path: Path) -> None:
        root = tmp_path / "store"
        with eventlog.open(root) as log:
            before = set(_tree(tmp_path))
            for sid in VALID_ODD_IDS:
                log.create_session(sid)
                log.append(sid, "x", 1)
            created = set(_tree(tmp_path)) - before
        for path in created:
            top = Path(path).parts
            # ... and the store's session catalog, whose marks a create and an append write.
            assert top[0] == "store" and top[1] in {dir_name(sid) for sid in VALID_ODD_IDS} | {
                ".catalog"}, path

    def test_file_urls_and_paths(self, tmp_path: Path) -> None:
        with eventlog.open(f"file://{tmp_path}/a") as log:
            log.create_session("s")
        with eventlog.open(tmp_path / "a") as log:  # a PathLike
            assert log.session_exists("s")
        with eventlog.open(str(tmp_path / "a")) as log:
            assert log.session_exists("s")
        for bad in ("file://relative/x", "", "nosuch://x"):
            with pytest.raises(eventlog.InvalidInputError):
                eventlog.open(bad)

    def test_a_directory_that_is_not_a_store_is_refused(self, tmp_path: Path) -> None:
        with eventlog.open(tmp_path / "ok"):
            pass
        marker = next(p for p in (tmp_path / "ok").iterdir() if "eventlog" in p.name)
        marker.write_text('{"format": "something-else", "version": 1}')
        with pytest.raises(eventlog.StorageError):
            eventlog.open(tmp_path / "ok")
        marker.write_text('{"format": "eventlog-jsonl", "version": 99}')
        with pytest.raises(eventlog.StorageError, match="version"):
            eventlog.open(tmp_path / "ok")
        (tmp_path / "file").write_text("x")
        with pytest.raises(eventlog.StorageError):
            eventlog.open(tmp_path / "file")

    def test_delete_leaves_nothing_behind(self, file_log: EventLog, root: Path) -> None:
        before = set(os.listdir(root))
        file_log.create_session("s")
        file_log.append_many("s", [("x", i) for i in range(10)])
        file_log.delete_session("s")
        # The session catalog (derived data, made by the create's mark) is the store's.
        assert set(os.listdir(root)) - {".catalog"} == before


class TestSegments:
    def test_reading_across_sealed_segments(self, root: Path) -> None:
        with eventlog.open(root, segment_max_events=4) as log:
            sid = log.create_session().session_id
            follower = log.follow(sid, after_seq=0, timeout=5)
            for i in range(30):
                if i % 4 == 0:
                    log.append_many(sid, [("x", i), ("y", i), ("z", i)])
                else:
                    log.add_message(message(sid, content=str(i)))
            events = list(log.events(sid))
            assert [e.seq for e in events] == list(range(1, 48))
            assert len(list(root.joinpath(sid).glob("seg-*.jsonl"))) > 5
            assert [next(follower) for _ in range(47)] == events
            assert [m.content for m in log.get_messages(sid, limit=5)] == ["23", "25", "26", "27", "29"]
            for after in range(0, 48, 7):
                assert list(log.events(sid, after_seq=after)) == events[after:]
            assert log.verify().ok
        with eventlog.open(root) as log:  # another process's view: starts from the files
            assert list(log.events(sid)) == events
            log.append(sid, "after", 1)
            assert log.verify(sid).ok


class TestLocks:
    def test_a_held_lock_times_out_with_a_timeout_error(self, root: Path) -> None:
        with eventlog.open(root, lock_timeout=0.2) as log:
            sid = log.create_session().session_id
            fd = os.open(root / sid / "lock", os.O_RDWR)  # another open file description
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with pytest.raises(eventlog.LockTimeoutError) as info:
                    log.append(sid, "x", 1)
                assert isinstance(info.value, TimeoutError)
                assert list(log.events(sid))[-1].seq == 1  # readers never wait for writers
            finally:
                os.close(fd)
            assert log.append(sid, "x", 1).seq == 2


class TestFollowLives:
    @pytest.mark.parametrize("lock", ["zeros", "empty"])
    @pytest.mark.parametrize("when", ["between waits", "while it waits"])
    def test_a_lock_file_from_before_life_bytes_still_tells_lives_apart(
            self, root: Path, lock: str, when: str) -> None:
        # Lock files made before create wrote the 16 life bytes hold zeros there, or (older
        # still) nothing at all: the follower goes by the lock file's inode instead.
        with eventlog.open(root) as log:
            sid = log.create_session().session_id
        path = root / sid / "lock"
        if lock == "empty":
            path.write_bytes(b"")
        else:
            with path.open("r+b") as f:
                f.seek(48)
                f.write(bytes(16))
        with eventlog.open(root) as log:
            log.append(sid, "x", 0)
            follower = log.follow(sid, after_seq=0, timeout=None)
            assert [next(follower).seq for _ in range(2)] == [1, 2]

            def again() -> None:
                log.delete_session(sid)
                log.create_session(sid)
                log.append_many(sid, [("y", i) for i in range(5)])

            thread = None
            if when == "between waits":
                again()
            else:
                thread = _later(0.3, again)
            assert isinstance(_next_within(follower, 5), eventlog.SessionNotFoundError)
            if thread is not None:
                # The follower wakes at the delete: ``again`` still has a create and an
                # append to do, and the store must outlive them (CI saw StoreClosedError).
                thread.join(10)


class TestFork:
    def test_a_forked_child_appends_with_the_parents_store(self, file_log: EventLog) -> None:
        log = file_log
        sid = log.create_session().session_id
        log.append(sid, "parent", 0)  # the parent now holds open descriptors for the session
        stop = threading.Event()

        def busy_parent_thread() -> None:
            while not stop.is_set():
                log.append(sid, "thread", 1)

        thread = threading.Thread(target=busy_parent_thread)
        thread.start()
        children = []
        try:
            for c in range(3):
                pid = os.fork()
                if pid == 0:  # the child: use the parent's store object
                    code = 1
                    try:
                        for i in range(20):
                            log.append(sid, "child", {"c": c, "i": i})
                        code = 0
                    finally:
                        os._exit(code)
                children.append(pid)
            for i in range(20):
                log.append(sid, "parent", i)
        finally:
            stop.set()
            thread.join()
        for pid in children:
            assert os.waitpid(pid, 0)[1] == 0
        events = list(log.events(sid))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        child = [(e.data["c"], e.data["i"]) for e in events if e.type == "child"]
        assert sorted(child) == [(c, i) for c in range(3) for i in range(20)]
        assert log.verify().ok


class TestDurability:
    def test_fsync_mode_syncs_files_and_new_directories(self, root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        synced: list[int] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            synced.append(os.fstat(fd).st_ino)
            real_fsync(fd)

        with eventlog.open(root) as log:
            monkeypatch.setattr(os, "fsync", fsync)
            log.create_session("fast")
            log.append("fast", "x", 1)
            assert synced == []  # durability "os": reaching the OS is enough
            log.create_session("safe", durability="fsync")
            session_dir = root / "safe"
            assert root.stat().st_ino in synced and session_dir.stat().st_ino in synced
            segment = next(session_dir.glob("seg-*.jsonl"))
            assert segment.stat().st_ino in synced
            synced.clear()
            log.append("safe", "x", 1, durability="fsync")
            assert segment.stat().st_ino in synced
        synced.clear()
        with eventlog.open(root, durability="fsync", segment_max_events=3) as log:
            log.append_many("safe", [("x", 1), ("x", 2)])
            log.append("safe", "x", 3)  # seals: a new segment file, so the directory too
            assert (root / "safe").stat().st_ino in synced
