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


def test_without_fcntl_the_redis_backend_works(tmp_path: Path) -> None:
    from . import _redis_support  # skips (fails under CI=true) without redis or a server

    for prefix in _redis_support.run_prefix():
        url = f"redis://{_redis_support.HOST}:{_redis_support.PORT}/0?prefix={prefix}"
        script = ("import sys; sys.modules['fcntl'] = None\n"
                  "import eventlog\n"
                  f"with eventlog.open({url!r}) as log:\n"
                  "    log.create_session('s', ['A'])\n"
                  "    assert log.verify().ok\n"
                  "    log.delete_session('s')\n")
        done = subprocess.run([sys.executable, "-c", script], env=_procs.worker_env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_the_servers_token_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README's server section says of tokens, rule by rule."""
    pytest.importorskip("starlette")
    import io
    import re
    import stat

    from eventlog.server import default_token_file, load_token

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("EVENTLOG_TOKEN", "   ")  # blank: not a token, so the file is used
    assert default_token_file() == tmp_path / "config" / "eventlog" / "token"
    shown = io.StringIO()
    made = load_token(out=shown)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", made) and made in shown.getvalue()
    path = default_token_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_token(out=shown) == made  # read back, not made again
    for mode in (0o640, 0o620, 0o610, 0o604, 0o602, 0o601):
        path.chmod(mode)
        with pytest.raises(eventlog.InvalidInputError, match="chmod 600"):
            load_token()
    path.chmod(0o400)
    assert load_token() == made
    given = tmp_path / "given"
    for text, ok in (("  sixteen-chars-ok  \n", True), ("fifteen-chars-x", False),
                     ("has a space inside it", False)):
        given.write_text(text)
        given.chmod(0o600)
        if ok:
            assert load_token(given) == text.strip()
        else:
            with pytest.raises(eventlog.InvalidInputError, match="at least 16 characters"):
                load_token(given)
    monkeypatch.setenv("EVENTLOG_TOKEN", " from-the-environment ")
    assert load_token() == "from-the-environment"


def test_durations_cleanup_accepts() -> None:
    """One or more parts, each a number (digits, optional decimal fraction) and s, m, h or d,
    written together and added up; more than zero."""
    from eventlog.cli._terminal import parse_duration

    for text, seconds in (("90s", 90), ("15m", 900), ("1h30m", 5400), ("1.5d", 129600),
                          ("1d12h", 129600), ("0.5s", 0.5), ("2h2h", 14400)):
        assert parse_duration(text) == seconds
    for bad in ("", "30", ".5h", "5.h", "1 h", "1H", "-1d", "+1d", "1e3s", "0s", "0h0m", "1d 2h", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)
