"""Crash injection: the compacting process dies before its 1st, 2nd, 3rd ... file operation.

A forked child wraps every mutating ``os`` call (open for writing, write, pwrite,
fsync, rename, link, unlink, ftruncate, mkdir, rmdir) and calls ``os._exit`` just
before the k-th, for k = 1, 2, ... until compaction finishes without reaching k.
After each crash, a fresh store must open, verify, hold exactly the acknowledged
events, accept an append, and compact to a clean directory.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import eventlog
from eventlog import ChatMessage

SID = "s1"
CRASHED = 77
_MUTATING = ("write", "pwrite", "fsync", "rename", "replace", "link", "unlink", "ftruncate",
             "mkdir", "rmdir")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def open_log(root: Path) -> eventlog.EventLog:
    return eventlog.open(root, segment_max_events=15, snapshot_every=10)


def crash_at(k: int, action) -> None:
    """In this (child) process, die just before the k-th mutating file operation."""
    count = [0]

    def step() -> None:
        count[0] += 1
        if count[0] == k:
            os._exit(CRASHED)

    def wrap(fn):
        def wrapper(*args, **kwargs):
            step()
            return fn(*args, **kwargs)
        return wrapper

    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS:
            step()
        return real_open(path, flags, *args, **kwargs)

    for name in _MUTATING:
        setattr(os, name, wrap(getattr(os, name)))
    os.open = open_
    action()


def run_child(root: Path, k: int, what: str) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            log = open_log(root)
            if what == "compact":
                crash_at(k, lambda: log.compact(SID))
            else:
                crash_at(k, lambda: log.cleanup_old_sessions(1, archive_dir=str(root.parent / "aside")))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def check_after_crash(root: Path, expected: list[eventlog.Event]) -> None:
    log = open_log(root)
    report = log.verify()
    assert report.ok, report.problems
    assert list(log.events(SID)) == expected
    session = log.get_session(SID)
    assert session.last_seq == expected[-1].seq
    assert [m.seq for m in log.get_messages(SID, limit=5)] == [
        e.seq for e in expected if e.type == "message"][-5:]
    event = log.append(SID, "after.crash", {"n": 1})
    assert event.seq == expected[-1].seq + 1
    assert log.compact(SID).ok
    assert log.verify().ok
    assert list(log.events(SID)) == [*expected, event]
    leftovers = [n for n in os.listdir(root / SID)
                 if n.endswith(".gz.tmp") or ".jsonl.gz." in n
                 or (n.endswith(".jsonl") and n + ".gz" in os.listdir(root / SID))]
    assert leftovers == []  # the next compaction finished what the dead one started
    log.close()


def build(root: Path, count: int) -> None:
    log = open_log(root)
    log.create_session(SID, participants=["a"])
    for i in range(count):
        if i % 9 == 4:
            log.append_many(SID, [("t.x", {"i": i}), ("t.y", {"i": i})])
        else:
            log.add_message(ChatMessage(sender="a", content=f"m{i}", session_id=SID))
    log.close()


def snapshot_dir(src: Path, dst: Path) -> None:
    import shutil
    shutil.copytree(src, dst)


@pytest.mark.parametrize("precompacted", [False, True])
def test_a_crash_before_any_file_operation_of_compaction(tmp_path: Path, precompacted: bool) -> None:
    pristine = tmp_path / "pristine"
    build(pristine, 40)
    if precompacted:  # some segments archived already, new ones sealed since
        open_log(pristine).compact(SID)
        log = open_log(pristine)
        for i in range(25):
            log.add_message(ChatMessage(sender="b", content=f"late {i}", session_id=SID))
    expected = list(open_log(pristine).events(SID))
    k = 0
    while True:
        k += 1
        assert k < 500, "compaction never finished"
        root = tmp_path / f"run{k}"
        snapshot_dir(pristine, root)
        code = run_child(root, k, "compact")
        assert code in (0, CRASHED), f"child failed at step {k} with {code}"
        check_after_crash(root, expected)
        if code == 0:
            break
    assert k > 10  # really stepped through sealing, snapshotting and archiving


def test_a_crash_before_any_file_operation_of_cleanup(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    log = open_log(pristine)
    old = time.time() - 3 * 86400
    log.create_session("old", created_at=old)
    for i in range(30):
        log.add_message(ChatMessage(sender="a", content=f"m{i}", session_id="old", timestamp=old))
    log.compact("old")
    expected = list(log.events("old"))
    log.close()
    k = 0
    while True:
        k += 1
        assert k < 200, "cleanup never finished"
        root = tmp_path / f"run{k}" / "store"
        snapshot_dir(pristine, root)
        code = run_child(root, k, "cleanup")
        assert code in (0, CRASHED), f"child failed at step {k} with {code}"
        log = open_log(root)
        assert log.verify().ok
        aside = root.parent / "aside" / "old.jsonl"
        if log.session_exists("old"):
            assert list(log.events("old")) == expected  # kept whole
        else:
            # Removed only after its history was safely aside: never lost.
            assert aside.exists()
            lines = aside.read_bytes().splitlines()
            assert len(lines) == len(expected) + 2  # header, records, trailer
        if code == 0:
            assert not log.session_exists("old")
            break
    assert k > 5


def test_sigkill_at_random_moments_of_compaction(tmp_path: Path) -> None:
    """The same, but killed by the parent at arbitrary instants (mid-syscall included)."""
    import random

    rng = random.Random(7)
    root = tmp_path / "store"
    build(root, 150)
    expected = list(open_log(root).events(SID))
    for round_ in range(12):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                log = open_log(root)
                for i in range(40):
                    log.add_message(ChatMessage(sender="c", content=f"r{round_}.{i}", session_id=SID))
                    log.compact(SID)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.005, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        log = open_log(root)
        report = log.verify()
        assert report.ok, report.problems
        events = list(log.events(SID))
        assert events[:len(expected)] == expected  # nothing acknowledged before is lost
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        expected = events
        log.close()
