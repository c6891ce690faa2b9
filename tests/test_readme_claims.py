"""Claims the README makes that no other test pins down, each checked as a user would see it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import eventlog
from eventlog.store._compaction import COMPACT_MIN_BYTES

from . import _procs


@pytest.mark.parametrize("url", ["files", "sqlite", "memory://"])
def test_compaction_leaves_a_session_under_4_kib_alone(tmp_path: Path, url: str) -> None:
    location = {"files": str(tmp_path / "s"), "sqlite": f"sqlite:///{tmp_path}/s.db"}.get(url, url)
    assert COMPACT_MIN_BYTES == 4096  # the README says 4 KiB
    with eventlog.open(location) as log:
        log.create_session("tiny", ["A"])
        log.add_message(eventlog.ChatMessage(sender="A", content="hi", session_id="tiny"))
        size = log.size("tiny")
        report = log.compact("tiny")
        assert (report.sessions, report.segments_archived) == (1, 0)
        assert report.bytes_before == report.bytes_after == size == log.size("tiny")
        big = log.create_session("big", ["A"]).session_id
        log.add_messages([eventlog.ChatMessage(sender="A", content=f"message {i} " * 10, session_id=big)
                          for i in range(60)])
        assert log.size(big) >= COMPACT_MIN_BYTES
        report = log.compact(big)
        if url != "memory://":  # memory archives nothing: there is no disk to save
            assert report.segments_archived >= 1 and report.bytes_after < report.bytes_before
        assert log.verify().ok


NO_FCNTL = """
import os, sys
sys.modules["fcntl"] = None  # as on Windows: ``import fcntl`` raises ImportError,
del os.register_at_fork       # and there is no fork()
import eventlog
where = sys.argv[1]
for url in (f"sqlite:///{where}/x.db", "memory://"):
    with eventlog.open(url) as log:
        log.create_session("s", ["A"])
        log.add_message(eventlog.ChatMessage(sender="A", content="hi", session_id="s"))
        log.compact("s")
        assert log.verify().ok
        log.cleanup_old_sessions(0, archive_dir=os.path.join(where, "archived"))
for url in (os.path.join(where, "files"), f"file://{where}/files"):
    try:
        eventlog.open(url)
    except eventlog.InvalidInputError as exc:
        print(exc)
print(sorted(os.listdir(where)))
"""


def test_without_fcntl_the_file_backend_says_which_backends_work(tmp_path: Path) -> None:
    """Where there is no fcntl (Windows), ``import eventlog``, SQLite and memory stores work,
    and opening a file store raises a clear error naming the backends that do."""
    done = subprocess.run([sys.executable, "-c", NO_FCNTL, str(tmp_path)], env=_procs.worker_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *refusals, listing = done.stdout.splitlines()
    assert len(refusals) == 2
    for line in refusals:
        assert "needs POSIX file locks (flock)" in line
        assert "use sqlite:///path.db, memory:// or redis://" in line
    assert listing == "['archived', 'x.db']"  # no file store was started
