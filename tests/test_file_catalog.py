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
    with eventlog.open(tmp_path) as log:
        folded = _folds(log)
        assert log.list_sessions() == truth and folded == []
