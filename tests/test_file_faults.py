"""Write faults (file backend): a failed or short write raises a typed error, leaves the log at
its last good record and loses nothing acknowledged; a failed fsync poisons the session for
that store.

Faults are injected at the 1st, 2nd, 3rd, ... I/O call an operation makes, until it makes
fewer calls than that and completes; a real short write comes from RLIMIT_FSIZE in a worker.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import Event, EventLog

from . import _procs
from ._torn import die_mid_write

SID = "s"
IO_CALLS = ("open", "write", "pread", "fstat", "fsync", "ftruncate", "rename", "mkdir", "unlink",
            "listdir", "scandir", "close", "dup")


@dataclass
class Faults:
    """Fail the ``fail_at``-th I/O call (``sticky``: that one and every later one, as a disk
    that filled up would: the first write is short, the rest fail)."""

    fail_at: int
    error: int
    sticky: bool = False
    calls: int = 0
    fired: list[str] = field(default_factory=list)

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            failing = self.calls == self.fail_at or (self.sticky and self.calls > self.fail_at)
            if not failing or (name == "close"):  # close: the descriptor is gone either way
                return real(*args, **kwargs)
            self.fired.append(name)
            if name == "write" and self.sticky and self.fired.count("write") == 1 and len(args[1]) > 1:
                return real(args[0], bytes(args[1])[: len(args[1]) // 2])  # a short write
            raise OSError(self.error, f"injected: {os.strerror(self.error)} in os.{name}")
        return call


@contextmanager
def injected(faults: Faults) -> Iterator[Faults]:
    saved = {name: getattr(os, name) for name in IO_CALLS}
    for name, real in saved.items():
        setattr(os, name, faults.wrap(name, real))
    try:
        yield faults
    finally:
        for name, real in saved.items():
            setattr(os, name, real)


@dataclass
class Scenario:
    """A store ready for one operation, and what the log holds before it."""

    log: EventLog
    before: list[Event]
    action: Callable[[], list[Event]]


def _store(root: Path, **options: Any) -> EventLog:
    log = eventlog.open(root, **options)
    log.create_session(SID, participants=["a"])
    log.append_many(SID, [("x", i) for i in range(2)])
    return log


def _torn(root: Path) -> None:
    """A writer dies 30 bytes into its write."""
    die_mid_write(root, lambda log: log.append_many(SID, [("torn", i) for i in range(3)]), 30)


def scenario(name: str, root: Path) -> Scenario:
    durable = "fsync" if "durable" in name else "os"
    seal = {"segment_max_events": 3} if "seal" in name else {}  # full: the action seals it
    snap = {"snapshot_every": 4} if "snapshot" in name else {}
    log = _store(root, durability=durable, **seal, **snap)
    if "cold" in name:
        log.close()
        log = eventlog.open(root, durability=durable, **seal, **snap)
    if "torn" in name:
        _torn(root)
    if "catch-up" in name:
        with eventlog.open(root) as other:
            other.append(SID, "other", 1)
    before = list(log.events(SID))
    if "create" in name:
        def create() -> list[Event]:
            s = log.create_session("new")
            return [Event(1, "session.created", s.created_at,
                          {"participants": s.participants, "metadata": s.metadata})]
        return Scenario(log, before, create)
    if "batch" in name:
        return Scenario(log, before, lambda: log.append_many(SID, [("b", i) for i in range(5)]))
    if "message" in name:
        return Scenario(log, before, lambda: [
            Event(m.seq or 0, "message", m.timestamp, None)
            for m in [log.add_message(eventlog.ChatMessage(sender="a", content="c", session_id=SID))]])
    return Scenario(log, before, lambda: [log.append(SID, "new", {"k": 1})])


SCENARIOS = ["warm", "cold", "batch", "message", "seal", "snapshot", "torn", "cold-torn", "catch-up",
             "durable", "durable-seal", "durable-batch", "create"]


def _session_events(log: EventLog) -> dict[str, list[tuple[int, str, Any]]]:
    return {s.session_id: [(e.seq, e.type, e.data) for e in log.events(s.session_id)]
            for s in log.list_sessions()}


def _run_once(root: Path, name: str, faults: Faults) -> bool:
    """One operation under ``faults``; check the aftermath. True if the fault was reached."""
    sc = scenario(name, root)
    expected = _session_events(sc.log)
    raised: BaseException | None = None
    with injected(faults):
        try:
            done = sc.action()
        except BaseException as exc:  # checked below
            raised = exc
    reached = bool(faults.fired)
    if raised is None:
        for event in done:
            if event.type == "session.created":
                expected["new"] = [(1, "session.created", event.data)]
            else:
                expected[SID].append((event.seq, event.type, event.data))
    else:
        assert reached, f"{name}: raised without a fault: {raised!r}"
        assert isinstance(raised, eventlog.StorageError), f"{name}: untyped error {raised!r}"
        assert isinstance(raised, OSError) and isinstance(raised, eventlog.EventLogError)
    fsync_failed = "fsync" in faults.fired
    with eventlog.open(root) as fresh:
        found = _session_events(fresh)
        if raised is not None and fsync_failed and "durable" in name:
            # The one in-doubt outcome: the write reached the file, its fsync failed after the
            # lock was released (group commit), so it may be there. It is then whole.
            found = {sid: events[:len(expected.get(sid, []))] for sid, events in found.items()}
        if "message" in name:
            found = {sid: [(s, t, None if t == "message" else d) for s, t, d in events]
                     for sid, events in found.items()}
        assert found == expected, f"{name}: {faults}"
        report = fresh.verify()
        assert report.ok, (name, faults, report.problems)
    # The same store carries on (or refuses, after a failed fsync, until reopened).
    try:
        sc.log.append(SID, "later", 1)
    except eventlog.SessionPoisonedError:
        assert fsync_failed, f"{name}: poisoned without a failed fsync: {faults}"
    finally:
        sc.log.close()
    with eventlog.open(root) as fresh:
        assert fresh.verify().ok
        fresh.append(SID, "reopened", 1)
        events = list(fresh.events(SID))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return reached


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize(("error", "sticky"), [(errno.ENOSPC, True), (errno.EIO, False)],
                         ids=["ENOSPC-from-then-on", "EIO-once"])
def test_a_fault_at_every_io_call(fast_tmp: Path, name: str, error: int, sticky: bool) -> None:
    k = 0
    while True:
        k += 1
        assert k < 200, "the operation never completed"
        if not _run_once(fast_tmp / f"{k}", name, Faults(k, error, sticky)):
            break
    assert k > 1, "no I/O call was ever failed"


def test_fsync_failure_poisons_the_session_for_that_store(root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with eventlog.open(root, durability="fsync") as log:
        log.create_session("s")
        log.create_session("other")
        real = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
        with pytest.raises(eventlog.StorageError) as info:
            log.append("s", "x", 1)
        assert not isinstance(info.value, eventlog.SessionPoisonedError)
        monkeypatch.setattr(os, "fsync", real)
        for durability in ("fsync", "os"):
            with pytest.raises(eventlog.SessionPoisonedError) as poisoned:
                log.append("s", "x", 2, durability=durability)
            assert isinstance(poisoned.value, OSError)
        with pytest.raises(eventlog.SessionPoisonedError):
            log.add_message(eventlog.ChatMessage(sender="a", content="c", session_id="s"))
        assert log.append("other", "x", 1).seq == 2  # only that session
        assert [e.seq for e in log.events("s")] == [1, 2]  # readers still read
    with eventlog.open(root) as again:  # a reopened store can write
        assert again.append("s", "x", 3).seq == 3
        assert again.verify().ok


@pytest.mark.parametrize("batch", [1, 4])
def test_a_real_short_write_under_rlimit_fsize(root: Path, tmp_path: Path, batch: int) -> None:
    with eventlog.open(root) as log:
        log.create_session(SID)
    [seg] = (root / SID).glob("seg-*.jsonl")
    limit = seg.stat().st_size + 20_000
    ack = tmp_path / "ack"
    proc = _procs.start("fsize", root, SID, limit, batch, ack)
    _procs.finish(proc)
    lines = _procs.ack_lines(ack)
    assert lines[-1] == ["done"]
    errors = [ln for ln in lines if ln[0] == "error"]
    assert len(errors) == 3
    for _, kind, code, typed in errors:
        assert (kind, code, typed) == ("StorageError", str(errno.EFBIG), "True"), errors
    acked = [int(s) for ln in lines if ln[0] == "ack" for s in ln[2].split(",")]
    assert acked == list(range(2, len(acked) + 2)) and len(acked) > 5
    size = seg.stat().st_size
    assert size <= limit
    with eventlog.open(root) as log:
        assert [e.seq for e in log.events(SID)] == [1, *acked]  # exactly the acknowledged
        assert log.verify().ok
        data = seg.read_bytes()
        assert data.endswith(b"}\n")  # truncated back to the last good record, no torn tail
        log.append(SID, "after", 1)  # no limit here
        assert [e.seq for e in log.events(SID)][-1] == acked[-1] + 1
        assert not list((root / SID).glob("quarantine-*"))
