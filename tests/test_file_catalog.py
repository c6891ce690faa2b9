"""The file backend's store-level catalog (``backends/files/_catalog.py``): derived data that a
torn, damaged or missing file, a writer killed mid-write, several processes and compaction
never turn into a wrong listing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import eventlog
from eventlog import ChatMessage
from eventlog.backends.files import _catalog
from eventlog.cli._main import run

from ._contract_base import fold


def _fill(root: Path, count: int = 20) -> list[eventlog.ChatSession]:
    with eventlog.open(root) as log:
        for i in range(count):
            sid = f"user:{i}"
            log.create_session(sid, participants=["a"], created_at=1000.0 + i)
            if i % 2:
                log.add_message(ChatMessage(sender=f"p{i}", content="x", session_id=sid,
                                            timestamp=2000.0 + i))
        return [log.get_session(f"user:{i}") for i in range(count)]


def _folds(log: eventlog.EventLog) -> list[str]:
    folded: list[str] = []
    state = log._state

    def counted(sid: str, upto: int | None = None) -> object:
        folded.append(sid)
        return state(sid, upto)

    log._state = counted  # type: ignore[method-assign,assignment]
    return folded


def test_a_torn_or_damaged_catalog_costs_folds_never_a_wrong_answer(tmp_path: Path) -> None:
    truth = sorted(_fill(tmp_path), key=lambda s: s.session_id)
    catalog = tmp_path / _catalog.CATALOG_FILE
    data = catalog.read_bytes()
    lines = data.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(b'["e"')][5]  # an entry line
    # A writer killed mid-line, and another one's line appended right after it.
    catalog.write_bytes(b"".join(lines[:at]) + lines[at][:17] + lines[at + 1]
                        + b"\xff\xfegarbage\n" + b"".join(lines[at + 2:]) + b'["e","user:0","00",1')
    with eventlog.open(tmp_path) as log:
        folded = _folds(log)
        assert log.list_sessions() == truth
        assert 1 <= len(folded) <= 2  # the torn line, and the one run into it: folded again
    with eventlog.open(tmp_path) as log:
        folded = _folds(log)
        assert log.list_sessions() == truth and folded == []  # saved again meanwhile
    catalog.write_bytes(os.urandom(4096))
    with eventlog.open(tmp_path) as log:
        assert log.list_sessions() == truth
    catalog.unlink()
    with eventlog.open(tmp_path) as log:
        assert log.list_sessions() == truth and catalog.exists()


def test_an_entry_for_another_head_or_life_is_not_used(tmp_path: Path) -> None:
    _fill(tmp_path, 4)
    with eventlog.open(tmp_path) as log:
        log.list_sessions()
        log.delete_session("user:1")
        log.create_session("user:1", participants=["new"], created_at=5.0)
    # The new life's page has its own life bytes, so the old entry (same seq) is refused.
    with eventlog.open(tmp_path) as log:
        assert log.get_session("user:1").participants == ["new"]
        assert log.list_sessions(participant="new")[0].session_id == "user:1"
        assert log.list_sessions(participant="p1") == []


def test_compaction_keeps_every_live_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_catalog, "COMPACT_AT", 10)
    truth = sorted(_fill(tmp_path, 12), key=lambda s: s.session_id)
    with eventlog.open(tmp_path) as log:
        for _ in range(3):
            for s in truth:
                log.append(s.session_id, "x.y", 1)
            log.list_sessions()
        truth = log.list_sessions()
    lines = (tmp_path / _catalog.CATALOG_FILE).read_bytes().count(b"\n")
    with eventlog.open(tmp_path) as log:
        folded = _folds(log)
        assert log.list_sessions() == truth and folded == []
    assert (tmp_path / _catalog.CATALOG_FILE).read_bytes().count(b"\n") <= lines
    assert not list(tmp_path.glob(".catalog.*.tmp"))


def test_writers_in_several_processes_and_a_kill(tmp_path: Path) -> None:
    """Processes append and list at once, one is SIGKILLed mid-way: a fresh listing equals
    the logs' folds."""
    _fill(tmp_path, 6)
    script = (
        "import sys, eventlog\n"
        "log = eventlog.open(sys.argv[1])\n"
        "for n in range(400):\n"
        "    sid = f'user:{n % 6}'\n"
        "    log.append(sid, 'x.y', n)\n"
        "    if n % 50 == 0: log.list_sessions()\n"
        "log.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(3)]
    victim = subprocess.Popen([sys.executable, "-c", script.replace("range(400)", "range(10**6)"),
                               str(tmp_path)])
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    with eventlog.open(tmp_path) as log:
        listed = log.list_sessions()
        folds = [fold(s.session_id, list(log.events(s.session_id))) for s in listed]
        assert listed == folds
        assert log.verify().ok


def test_eventlog_reindex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = sorted(_fill(tmp_path, 5), key=lambda s: s.session_id)
    assert run(["reindex", "--store", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "reindexed 5 session(s)\n"
    assert _has_base(tmp_path)
    with eventlog.open(tmp_path) as log:
        folded = _folds(log)
        assert log.list_sessions() == truth and folded == []


# The ordered index (the base's activity and creation tables, and the writers' marks) -------

_APPEND_AND_DIE = (
    "import os, signal, sys, eventlog\n"
    "log = eventlog.open(sys.argv[1])\n"
    "log.add_message(eventlog.ChatMessage(sender='late', content='x', session_id=sys.argv[2],\n"
    "                                     timestamp=float(sys.argv[3])))\n"
    "os.kill(os.getpid(), signal.SIGKILL)  # no close: no entry saved, only the mark\n")


def _append_and_die(root: Path, sid: str, timestamp: float) -> None:
    child = subprocess.run([sys.executable, "-c", _APPEND_AND_DIE, str(root), sid, str(timestamp)],
                           check=False, timeout=60)
    assert child.returncode == -signal.SIGKILL


def _newest(log: eventlog.EventLog, limit: int = 3) -> list[str]:
    page = log.page_sessions(limit, order="last_activity", descending=True)
    return [s.session_id for s in page.sessions]


def _has_base(root: Path) -> bool:
    return (root / _catalog.CATALOG_FILE).read_bytes().startswith(_catalog.MAGIC)


def test_a_session_another_process_appended_to_and_died_moves_to_the_top(tmp_path: Path) -> None:
    """The index says where a session stood; the killed writer's mark says to look again."""
    _fill(tmp_path, 20)
    with eventlog.open(tmp_path) as reader:
        assert _newest(reader) == ["user:19", "user:17", "user:15"]
        assert _has_base(tmp_path)
        _append_and_die(tmp_path, "user:4", 9000.0)
        assert _newest(reader) == ["user:4", "user:19", "user:17"]  # this process read it before
        _append_and_die(tmp_path, "user:6", 9500.0)
        assert _newest(reader, 1) == ["user:6"]
    with eventlog.open(tmp_path) as fresh:
        assert _newest(fresh) == ["user:6", "user:4", "user:19"]
        oldest = fresh.page_sessions(2, order="last_activity").sessions
        assert [s.session_id for s in oldest] == ["user:0", "user:2"]
        assert fresh.get_session("user:4").last_activity == 9000.0


def test_marks_outlive_a_compaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that marked a session before a compaction and appends after it (without
    marking again: its mark is outstanding) is still looked at: the new base carries it."""
    _fill(tmp_path, 10)
    with eventlog.open(tmp_path) as log:
        _newest(log)  # the first base
    monkeypatch.setattr(_catalog, "COMPACT_AT", 0)
    script = (
        "import sys, time, eventlog\n"
        "log = eventlog.open(sys.argv[1])\n"
        "log.append('user:2', 'x.y', 1)\n"
        "print('marked', flush=True)\n"
        "sys.stdin.readline()\n"
        "log.add_message(eventlog.ChatMessage(sender='late', content='x', session_id='user:2',\n"
        "                                     timestamp=4e9))\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline() == b"marked\n"
    with eventlog.open(tmp_path) as log:
        for sid in ("user:1", "user:3"):
            log.append(sid, "x.y", 2)
        _newest(log)  # compacts (COMPACT_AT is 0): a new base, the writer's mark carried over
    assert _has_base(tmp_path)
    writer.stdin.write(b"go\n")
    writer.stdin.close()
    assert writer.wait(timeout=60) == -signal.SIGKILL
    with eventlog.open(tmp_path) as log:
        assert _newest(log, 1) == ["user:2"]


def test_a_damaged_index_is_rebuilt_from_the_logs(tmp_path: Path) -> None:
    truth = _fill(tmp_path, 30)
    newest = [s.session_id for s in sorted(truth, key=lambda s: (s.last_activity, s.session_id),
                                           reverse=True)]
    catalog = tmp_path / _catalog.CATALOG_FILE
    with eventlog.open(tmp_path) as log:
        assert _newest(log, 30) == newest
    good = catalog.read_bytes()
    header_end = good.index(b"\n")
    damages = [
        good[: len(good) // 2],  # cut short
        good[:header_end] + os.urandom(len(good) - header_end),  # the sections overwritten
        good[: len(good) - 100] + b"\x00" * 100,  # the order tables zeroed
        good.replace(b'"sessions":30', b'"sessions":31'),  # a header that lies
    ]
    for damaged in damages:
        catalog.write_bytes(damaged)
        with eventlog.open(tmp_path) as log:
            assert _newest(log, 30) == newest
            assert log.page_sessions(5, order="created_at").sessions == sorted(
                truth, key=lambda s: (s.created_at, s.session_id))[:5]
        assert _has_base(tmp_path)


def test_a_compaction_killed_before_its_rename_changes_nothing(tmp_path: Path) -> None:
    _fill(tmp_path, 8)
    with eventlog.open(tmp_path) as log:
        expected = _newest(log, 8)
    before = (tmp_path / _catalog.CATALOG_FILE).read_bytes()
    script = (
        "import os, signal, sys, eventlog\n"
        "from eventlog.backends.files import _catalog\n"
        "_catalog.COMPACT_AT = 0\n"
        "real = os.rename\n"
        "def rename(a, b):\n"
        "    if str(b).endswith('.catalog'): os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(a, b)\n"
        "os.rename = rename\n"
        "log = eventlog.open(sys.argv[1])\n"
        "log.append('user:5', 'x.y', 1)  # a mark: a journal line to compact\n"
        "log.page_sessions(3, order='last_activity', descending=True)\n")
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False, timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / _catalog.CATALOG_FILE).read_bytes().startswith(before)  # the old file
    assert list(tmp_path.glob(".catalog.*.tmp"))  # and the new one it never renamed
    expected.remove("user:5")
    expected.insert(0, "user:5")  # appended to now (the mark says so; its entry never came)
    with eventlog.open(tmp_path) as log:
        assert _newest(log, 8) == expected
    assert run(["reindex", "--store", str(tmp_path)]) == 0
    assert not list(tmp_path.glob(".catalog.*.tmp"))
