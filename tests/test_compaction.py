"""Compaction: sealing, boundary snapshots and archives, read back through every API."""

from __future__ import annotations

import errno
import fcntl
import gzip
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, CompactionReport, CorruptLogError, SessionNotFoundError

from . import _procs

SID = "s1"


def open_log(root: Path, **options) -> eventlog.EventLog:
    options.setdefault("segment_max_events", 40)
    options.setdefault("snapshot_every", 25)
    return eventlog.open(root, **options)


def fill(log: eventlog.EventLog, sid: str = SID, count: int = 200, *, start: int = 0) -> None:
    if not log.session_exists(sid):
        log.create_session(sid, participants=["a", "b"], metadata={"topic": "t"})
    for i in range(start, start + count):
        if i % 17 == 5:
            log.append_many(sid, [("tool.call", {"i": i}), ("tool.result", {"i": i, "ok": True})])
        elif i % 23 == 7:
            log.add_participant(sid, f"p{i}")
        else:
            log.add_message(ChatMessage(sender="ab"[i % 2], recipient=None if i % 3 else "b",
                                        content=f"message {i}", session_id=sid, timestamp=1000.0 + i))


def files(root: Path, sid: str = SID) -> list[str]:
    return sorted(os.listdir(root / sid))


def everything(log: eventlog.EventLog, sid: str = SID) -> dict[str, object]:
    """What every reading API says about a session."""
    events = list(log.events(sid))
    last = events[-1].seq
    return {
        "session": log.get_session(sid),
        "events": events,
        "tails": [log.get_messages(sid, limit=n) for n in (1, 7, 50, 10_000)],
        "windows": [log.get_messages(sid, limit=5, before_seq=b, after_seq=a)
                    for a, b in ((0, 30), (35, 90), (100, None))],
        "all": log.get_messages(sid),
        "from": [list(log.events(sid, after_seq=a)) for a in (1, 39, 40, 41, 120, last - 1, last)],
        "follow": list(log.follow(sid, after_seq=last - 60, timeout=0)),
        "last_seq": log.backend.last_seq(sid),
        "list": [s for s in log.list_sessions() if s.session_id == sid],
    }


def test_compaction_changes_nothing_that_can_be_read(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log)
    plain = {name: (tmp_path / SID / name).read_bytes() for name in files(tmp_path)
             if name.startswith("seg-")}
    before = everything(log)
    report = log.compact(SID)
    assert isinstance(report, CompactionReport) and report.ok
    assert report.sessions == 1
    assert report.segments_archived == len(plain)  # all sealed, the active one too
    assert report.bytes_after < report.bytes_before
    assert report.seconds > 0
    archives = [n for n in files(tmp_path) if n.endswith(".jsonl.gz")]
    assert sorted(archives) == sorted(n + ".gz" for n in plain)
    for name, data in plain.items():  # zcat prints exactly the segment that was sealed
        assert gzip.decompress((tmp_path / SID / (name + ".gz")).read_bytes())[:len(data)] == data
    assert everything(log) == before
    verified = log.verify(SID)
    assert verified.ok, verified.problems
    assert verified.events_checked == before["session"].last_seq  # type: ignore[attr-defined]
    reopened = open_log(tmp_path)
    assert everything(reopened) == before


def test_compaction_snapshots_the_sealed_boundary(tmp_path: Path) -> None:
    log = open_log(tmp_path, snapshot_every=10_000)
    fill(log, count=95)
    head = log.get_session(SID).last_seq
    log.compact(SID)
    assert f"snap-{head:016d}.json" in files(tmp_path)
    assert f"seg-{head + 1:016d}.jsonl" in files(tmp_path)  # the new, empty active segment
    # get_session needs nothing from the archives now.
    for name in files(tmp_path):
        if name.endswith(".gz"):
            os.chmod(tmp_path / SID / name, 0)
    if os.geteuid() != 0:  # root reads anything
        assert log.get_session(SID).last_seq == head


def test_appending_and_compacting_again(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, count=60)
    log.compact(SID)
    again = log.compact(SID)
    assert again.segments_archived == 0  # nothing new was sealed
    fill(log, count=70, start=60)
    before = everything(log)
    third = log.compact(SID)
    assert third.segments_archived >= 2
    assert everything(log) == before
    assert log.verify().ok


def test_compact_all_sessions(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for sid in ("a", "b", "c"):
        fill(log, sid, count=50)
    log.create_session("empty")
    report = log.compact()
    assert report.sessions == 4 and report.ok
    assert log.verify().ok
    assert log.get_session("empty").last_seq == 1


def test_compact_missing_session_and_closed_store(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    with pytest.raises(SessionNotFoundError):
        log.compact("nope")
    with pytest.raises(eventlog.InvalidSessionIdError):
        log.compact("a\nb")
    log.close()
    with pytest.raises(eventlog.StoreClosedError):
        log.compact()


def test_compacting_all_reports_a_damaged_session_and_goes_on(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, "bad", count=60)
    fill(log, "good", count=60)
    segment = tmp_path / "bad" / "seg-0000000000000001.jsonl"
    data = segment.read_bytes()
    segment.write_bytes(data.replace(b'{"seq":3,', b'{"seq":9,', 1))
    report = log.compact()
    assert report.sessions == 1 and not report.ok
    assert "bad" in report.problems[0]
    assert (tmp_path / "bad" / "seg-0000000000000001.jsonl").exists()  # left as it was
    with pytest.raises(CorruptLogError):
        log.compact("bad")
    assert log.verify("good").ok


def test_compacting_all_goes_on_past_a_storage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk or EIO under one session is reported and the rest are compacted (it
    used to stop there); the session that failed is left whole."""
    log = open_log(tmp_path)
    for sid in ("a", "b", "c"):
        fill(log, sid, count=60)
    before = {sid: list(log.events(sid)) for sid in ("a", "b", "c")}
    backend = log.backend
    real_archive = backend.archive

    def archive(session_id: str) -> Any:
        if session_id == "b":
            raise eventlog.StorageError(errno.ENOSPC, "No space left on device")
        return real_archive(session_id)

    monkeypatch.setattr(backend, "archive", archive)
    report = log.compact()
    assert report.sessions == 2 and not report.ok
    assert len(report.problems) == 1 and "'b'" in report.problems[0] and "No space" in report.problems[0]
    assert list((tmp_path / "a").glob("seg-*.jsonl.gz")) and list((tmp_path / "c").glob("seg-*.jsonl.gz"))
    with pytest.raises(eventlog.StorageError):
        log.compact("b")
    monkeypatch.undo()
    assert {sid: list(log.events(sid)) for sid in ("a", "b", "c")} == before
    assert log.verify().ok
    assert log.compact("b").segments_archived >= 1


def test_a_stale_appender_never_recreates_an_archived_segment(tmp_path: Path) -> None:
    # Process A's handle points at segment 1; meanwhile B fills and seals segments 2
    # and 3 and compaction archives them. A must not make segment 2 again.
    a = open_log(tmp_path, segment_max_events=1000)
    b = open_log(tmp_path, segment_max_events=20)
    a.create_session(SID)
    a.append(SID, "x.y", {"by": "a"})
    fill(b, count=70)
    b.compact(SID)
    event = a.append(SID, "x.y", {"by": "a again"})
    assert event.seq == b.get_session(SID).last_seq
    assert [e.seq for e in b.events(SID)] == list(range(1, event.seq + 1))
    assert a.verify().ok


def test_follow_reads_on_across_compaction(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, count=30)
    follower = log.follow(SID, after_seq=0, timeout=0)
    first = [next(follower) for _ in range(10)]
    log.compact(SID)
    fill(log, count=30, start=30)
    rest = list(follower)
    seqs = [e.seq for e in first + rest]
    assert seqs == list(range(1, log.get_session(SID).last_seq + 1))


def test_delete_removes_archives_and_the_id_can_be_reused(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, count=90)
    log.compact(SID)
    log.delete_session(SID)
    assert not (tmp_path / SID).exists()
    # only the store's own files are left (its marker and its catalog)
    assert [n for n in os.listdir(tmp_path) if n not in (".eventlog.json", ".catalog")] == []
    log.create_session(SID, participants=["c"])
    assert log.get_session(SID).participants == ["c"]
    assert log.verify(SID).ok


# Damage ---------------------------------------------------------------------------------


def compacted(tmp_path: Path) -> tuple[eventlog.EventLog, dict[str, object]]:
    log = open_log(tmp_path)
    fill(log, count=150)
    log.compact(SID)
    fill(log, count=10, start=150)
    return log, everything(log)


def newest_snapshot(root: Path) -> Path:
    return root / SID / [n for n in files(root) if n.startswith("snap-")][-1]


@pytest.mark.parametrize("damage", ["bit flip", "truncated", "missing", "all missing", "garbage"])
def test_a_damaged_snapshot_is_detected_and_bypassed(tmp_path: Path, damage: str) -> None:
    log, before = compacted(tmp_path)
    snapshot = newest_snapshot(tmp_path)
    data = bytearray(snapshot.read_bytes())
    if damage == "bit flip":
        data[len(data) // 2] ^= 0x04
        snapshot.write_bytes(bytes(data))
    elif damage == "truncated":
        snapshot.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "missing":
        snapshot.unlink()
    elif damage == "all missing":
        for name in files(tmp_path):
            if name.startswith("snap-"):
                (tmp_path / SID / name).unlink()
    else:
        snapshot.write_bytes(b"\0" * len(data))
    assert everything(log) == before
    assert everything(open_log(tmp_path)) == before
    report = log.verify(SID)
    if damage in ("missing", "all missing"):
        assert report.ok
    else:
        assert any("snapshot" in p for p in report.problems)


def test_a_snapshot_that_does_not_equal_the_fold_is_reported(tmp_path: Path) -> None:
    from eventlog.store._state import decode_snapshot, encode_snapshot

    log, _ = compacted(tmp_path)
    snapshot = newest_snapshot(tmp_path)
    state, position = decode_snapshot(SID, snapshot.read_bytes())
    state.message_count += 1  # a well-formed snapshot that lies
    snapshot.write_bytes(encode_snapshot(state, position))
    report = log.verify(SID)
    assert any("does not equal the fold" in p for p in report.problems)


def archive_path(root: Path, index: int = 0) -> Path:
    return root / SID / [n for n in files(root) if n.endswith(".gz")][index]


def test_verify_finds_a_damaged_archive(tmp_path: Path) -> None:
    log, _ = compacted(tmp_path)
    path = archive_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    report = log.verify(SID)
    assert not report.ok
    assert any(path.name in p for p in report.problems)
    with pytest.raises(CorruptLogError):
        list(log.events(SID))


def test_verify_finds_a_missing_archive(tmp_path: Path) -> None:
    log, _ = compacted(tmp_path)
    archive_path(tmp_path, 1).unlink()
    report = log.verify(SID)
    assert any("does not continue" in p for p in report.problems)


def test_verify_finds_an_archive_that_differs_from_its_plain_twin(tmp_path: Path) -> None:
    log, _ = compacted(tmp_path)
    path = archive_path(tmp_path, 0)
    content = gzip.decompress(path.read_bytes())
    twin = tmp_path / SID / path.name[:-3]
    twin.write_bytes(content)
    assert log.verify(SID).ok  # a crash between rename and unlink leaves equal twins
    twin.write_bytes(content.replace(b"message 3", b"massage 3"))
    report = log.verify(SID)
    assert any("differs from its archive" in p for p in report.problems)
    with pytest.raises(CorruptLogError):
        log.compact(SID)  # and compaction won't pick either copy over the other


def test_a_reader_that_reaches_a_trailer_before_the_next_segment_exists_goes_on(tmp_path: Path) -> None:
    # The window between a sealer's trailer and its new segment: a follower that read up
    # to the trailer then must resume at the next segment, not past the trailer (where it
    # once waited forever, seeing new seqs it could never reach).
    from eventlog.core._codec import FORMAT_VERSION, ChainReader

    log = open_log(tmp_path, segment_max_events=5)
    log.create_session(SID)
    for i in range(4):
        log.append(SID, "x.y", {"i": i})
    log.backend.seal(SID, durable=False)  # (appends seal a full segment only when they need room)
    (tmp_path / SID / "seg-0000000000000006.jsonl").unlink()  # sealed, successor not made yet
    scan = log.backend.scan(SID, 0, None)
    chain = ChainReader(SID, scan.start, FORMAT_VERSION)
    assert [e.seq for e in chain.read(scan.lines)] == [1, 2, 3, 4, 5]
    position = scan.position()
    assert position == {"segment": 6, "offset": 0}
    open_log(tmp_path).append(SID, "x.y", {"i": 5})  # makes the next segment
    scan = log.backend.scan(SID, 5, {**position, "seq": 5, "h": chain.head.digest})
    assert [e.seq for e in ChainReader(SID, scan.start, FORMAT_VERSION).read(scan.lines)] == [6]
    follower = log.follow(SID, after_seq=3, timeout=0)
    assert [e.seq for e in follower] == [4, 5, 6]


def test_compaction_sweeps_temporary_files_of_dead_processes(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, count=90)
    directory = tmp_path / SID
    dead_archive = directory / ".seg-0000000000000001.jsonl.gz.0123.tmp"  # only made under the lock
    old_snapshot = directory / ".snap-0000000000000050.json.4567.tmp"
    new_snapshot = directory / ".snap-0000000000000075.json.89ab.tmp"  # may be a live writer's
    for path in (dead_archive, old_snapshot, new_snapshot):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(old_snapshot, (hours_ago, hours_ago))
    log.compact(SID)
    assert not dead_archive.exists() and not old_snapshot.exists()
    assert new_snapshot.exists()
    assert log.verify(SID).ok


def hold_compaction_lock(root: Path, ready: Any, release: Any) -> None:
    fd = os.open(root / SID, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)
    os.close(fd)


def test_delete_waits_for_a_compactor_and_compact_all_skips_a_busy_session(tmp_path: Path) -> None:
    import multiprocessing

    log = open_log(tmp_path, lock_timeout=0.3)
    fill(log, count=90)
    fill(log, "other", count=90)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold_compaction_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(eventlog.LockTimeoutError, match="compaction"):
            log.delete_session(SID)
        report = log.compact()
        assert report.sessions == 1 and any(SID in p for p in report.problems)
        assert log.cleanup_old_sessions(0) == ["other"]  # the busy one is kept for next time
        assert log.session_exists(SID)
    finally:
        release.set()
        holder.join()
    log.delete_session(SID)
    assert not log.session_exists(SID)


def _file_size_limit() -> None:  # in the child: no file may grow past 6,000 bytes (EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))


def test_a_failed_seal_names_the_seal_not_an_append(tmp_path: Path) -> None:
    """A compaction on a full disk (here: a file size limit the segment is already past, so
    its trailer can't be written) said "write failed, nothing appended", the words of an
    append that it never made (outside tester). The error names what failed."""
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        log.create_session("a", ["A"])
        log.append_many("a", [("note", {"text": "x" * 500}) for _ in range(16)])
    assert (store / "a" / "seg-0000000000000001.jsonl").stat().st_size > 6000
    done = subprocess.run([sys.executable, "-m", "eventlog", "--store", str(store), "compact",
                           "--all"], env=_procs.worker_env(), capture_output=True, text=True,
                          preexec_fn=_file_size_limit, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in said, said
    assert "sealing segment 1" in said and "appended" not in said, said
    with eventlog.open(store) as log:
        assert log.verify().ok  # the failed seal was undone
