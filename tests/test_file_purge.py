"""Deleted sessions' files are freed behind the delete (``backends/files/_purge.py``): the
session is gone when ``delete_session`` returns, its bytes by ``close``; what a killed process
left is removed by the next purge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import eventlog


def test_a_delete_is_done_at_once_and_its_files_freed_by_close(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    for i in range(20):
        log.create_session(f"s{i}")
        log.append(f"s{i}", "x", i)
    for i in range(20):
        log.delete_session(f"s{i}")
        assert not log.session_exists(f"s{i}") and f"s{i}" not in log.session_ids()
    log.close()
    assert sorted(os.listdir(tmp_path)) == [".catalog", ".eventlog.json"]


def test_what_a_killed_process_left_is_removed_by_the_next_purge(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys, eventlog\n"
        "from eventlog.backends.files import _purge\n"
        "_purge.shutil.rmtree = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "log = eventlog.open(sys.argv[1])\n"
        "log.create_session('old')\n"
        "log.delete_session('old')\n"
        "log.close()\n")
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False, timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert [n for n in os.listdir(tmp_path) if n.startswith(".deleted-")]
    with eventlog.open(tmp_path) as log:
        assert log.session_ids() == []
        log.create_session("new")
        log.delete_session("new")
    assert sorted(os.listdir(tmp_path)) == [".catalog", ".eventlog.json"]
