"""The file store's trash (``backends/files/_trash.py``): cleanup removes each old session with
one rename into ``<root>/.trash`` and frees the space after the call; a trash left behind (a
crash, a process that exited first) is emptied when the store is next opened; a session id
is free for a new session at once; a SIGKILL anywhere in a cleanup leaves each session whole
or gone."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import eventlog
from eventlog import ChatMessage
from eventlog.backends.files._backend import FileBackend

DAY = 86400.0


def _aged(log: eventlog.EventLog, sid: str, days: float, messages: int = 3) -> None:
    then = time.time() - days * DAY
    log.create_session(sid, participants=["a"], created_at=then)
    log.add_messages([ChatMessage(sender="a", content=f"m{i}", session_id=sid, timestamp=then + i)
                      for i in range(messages)])


def _files(log: eventlog.EventLog) -> FileBackend:
    assert isinstance(log.backend, FileBackend)
    return log.backend


def _trash(root: Path) -> list[str]:
    try:
        return os.listdir(root / ".trash")
    except FileNotFoundError:
        return []


def _session_dirs(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if not n.startswith(".")]


def test_cleanup_returns_with_the_sessions_gone_and_frees_their_space_after(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    for i in range(6):
        _aged(log, f"old{i}", 40)
    _aged(log, "young", 1)
    log.list_sessions()  # the catalog holds them all (cleanup's candidates come from it)
    assert log.cleanup_old_sessions(30) == [f"old{i}" for i in range(6)]
    assert log.backend.session_ids() == ["young"]
    assert [s.session_id for s in log.list_sessions()] == ["young"]
    # The id is free at once, whatever the trash still holds.
    log.create_session("old0", participants=["b"])
    assert log.get_session("old0").message_count == 0
    _files(log).empty_trash()
    assert not (tmp_path / ".trash").exists()
    assert sorted(_session_dirs(tmp_path)) == ["old0", "young"]  # old0 created again
    assert log.verify().ok
    log.close()


def test_a_damaged_old_session_is_kept_and_an_appended_one_too(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    _aged(log, "damaged", 40)
    _aged(log, "fine", 40)
    log.list_sessions()
    segment = next((tmp_path / "damaged").glob("seg-*.jsonl"))
    segment.write_bytes(segment.read_bytes().replace(b'"m1"', b'"M1"'))
    assert log.cleanup_old_sessions(30) == ["fine"]
    assert log.session_exists("damaged")
    log.close()


def test_a_trash_left_by_a_crash_is_emptied_when_the_store_is_next_opened(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    _aged(log, "gone", 40)
    _aged(log, "kept", 40)
    log.close()
    # A deleter killed between its rename and the unlink of the lock file left this.
    (tmp_path / ".trash").mkdir()
    os.rename(tmp_path / "gone", tmp_path / ".trash" / "0123abcd")
    assert (tmp_path / ".trash" / "0123abcd" / "lock").exists()
    again = eventlog.open(tmp_path)
    assert again.backend.session_ids() == ["kept"]
    _files(again)._trash.wait()  # the thread the open started
    assert not (tmp_path / ".trash").exists()
    again.create_session("gone", participants=["x"])
    assert again.get_session("gone").message_count == 0
    assert again.verify().ok
    again.close()


def test_the_emptier_leaves_what_a_deleter_is_still_moving(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    _aged(log, "moving", 40)
    (tmp_path / ".trash").mkdir()
    os.rename(tmp_path / "moving", tmp_path / ".trash" / "feed")
    fd = os.open(tmp_path / ".trash" / "feed" / "lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the deleter holds it until it unlinks the lock
        _files(log).empty_trash()
        assert os.listdir(tmp_path / ".trash") == ["feed"]
    finally:
        os.close(fd)
    _files(log).empty_trash()
    assert not (tmp_path / ".trash").exists()
    log.close()


_CLEANER = """
import sys, eventlog
log = eventlog.open(sys.argv[1])
log.list_sessions()
print("ready", flush=True)
sys.stdin.readline()
log.cleanup_old_sessions(30)
print("done", flush=True)
"""


def test_sigkill_during_a_cleanup_leaves_each_session_whole_or_gone(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    old = [f"old{i:03d}" for i in range(150)]
    for sid in old:
        _aged(log, sid, 40)
    _aged(log, "young", 1)
    expected = {sid: [m.content for m in log.get_messages(sid)] for sid in old}
    log.close()
    child = subprocess.Popen([sys.executable, "-c", _CLEANER, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    child.stdin.write(b"go\n")
    child.stdin.flush()
    deadline = time.monotonic() + 60
    while not _trash(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.001)  # kill it once it has moved something: mid-cleanup
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    again = eventlog.open(tmp_path)
    left = again.backend.session_ids()
    assert "young" in left
    for sid in old:
        if sid in left:
            assert [m.content for m in again.get_messages(sid)] == expected[sid]
    assert sorted(s.session_id for s in again.list_sessions()) == left
    assert again.verify().ok
    # What the killed cleanup left, a second one finishes; the ids are free at once.
    assert again.cleanup_old_sessions(30) == sorted(set(left) - {"young"})
    again.create_session(old[0], participants=["new"])
    assert again.get_session(old[0]).participants == ["new"]
    _files(again).empty_trash()
    assert not (tmp_path / ".trash").exists()
    assert sorted(_session_dirs(tmp_path)) == [old[0], "young"]
    again.close()


def test_a_delete_survives_the_trash_removed_and_made_again_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's tidy removes .trash at any moment: between its mkdir seeing it exist
    and looking again (Path.mkdir's exist_ok then raised FileExistsError: a soak run saw
    StorageError [Errno 17] on .trash), and between the mkdir and the rename."""
    root = tmp_path / "store"
    with eventlog.open(root) as log:
        for sid in ("a", "b"):
            log.create_session(sid)
        real_rename, real_mkdir = os.rename, os.mkdir
        trash = root / ".trash"
        raced: list[str] = []

        def rename(src: object, dst: object) -> None:
            if ".trash" in str(dst) and "rename" not in raced:
                raced.append("rename")
                if trash.is_dir():
                    os.rmdir(trash)  # another process's tidy, just before our rename
            real_rename(src, dst)  # type: ignore[arg-type]

        def mkdir(path: object, mode: int = 0o777) -> None:
            if "mkdir" not in raced and str(path) == str(trash):
                raced.append("mkdir")
                real_mkdir(path, mode)  # type: ignore[arg-type]
                os.rmdir(path)  # type: ignore[arg-type]  # made and tidied by others
                raise FileExistsError(17, "File exists", str(path))
            real_mkdir(path, mode)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "mkdir", mkdir)
        log.delete_session("a")
        monkeypatch.undo()
        assert raced == ["rename", "mkdir"]
        assert log.session_ids() == ["b"]
        log.create_session("a")
        assert log.verify().ok
