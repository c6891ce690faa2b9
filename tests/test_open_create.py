"""Opening only what exists (``create=False``), refusing what is not a store, and the command line
built on it: a command that only reads never creates anything, on any backend."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog
from eventlog.cli._main import run

from . import _procs

READ_COMMANDS = [
    ["sessions"], ["sessions", "--json"], ["stats"], ["stats", "--json"], ["verify"],
    ["verify", "--json"], ["cleanup", "--older-than", "1d", "--dry-run"], ["show", "s"],
    ["replay", "s"], ["export", "s"], ["tail", "s"], ["compact", "--all"],
    ["post", "s", "--sender", "A", "hi"],
]


def tree(path: Path) -> set[str]:
    """Every path under ``path`` (and ``path`` itself, if it exists)."""
    if not path.exists():
        return set()
    found = {str(path)}
    for base, dirs, files in os.walk(path):
        found.update(os.path.join(base, name) for name in dirs + files)
    return found


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# The library ----------------------------------------------------------------------------------

def test_create_false_on_a_missing_file_store_creates_nothing(tmp_path: Path) -> None:
    where = tmp_path / "new" / "deeper" / "store"
    with pytest.raises(eventlog.StoreNotFoundError, match="no such directory") as caught:
        eventlog.open(where, create=False)
    assert caught.value.location == str(where)
    assert isinstance(caught.value, FileNotFoundError)
    assert tree(tmp_path) == {str(tmp_path)}


def test_create_false_on_a_missing_sqlite_store_creates_nothing(tmp_path: Path) -> None:
    before = tree(tmp_path)
    for url in (f"sqlite:///{tmp_path}/new/deeper/x.db", f"sqlite:///{tmp_path}/x.db"):
        with pytest.raises(eventlog.StoreNotFoundError, match="no such file"):
            eventlog.open(url, create=False)
    assert tree(tmp_path) == before


def test_create_false_on_memory_stores() -> None:
    name = f"m{uuid.uuid4().hex}"
    with pytest.raises(eventlog.StoreNotFoundError, match=f"memory://{name}"):
        eventlog.open(f"memory://{name}", create=False)
    with pytest.raises(eventlog.StoreNotFoundError, match="memory://"):
        eventlog.open("memory://", create=False)
    with eventlog.open(f"memory://{name}") as log:
        log.create_session("s")
    with eventlog.open(f"memory://{name}", create=False) as log:
        assert log.session_ids() == ["s"]
        log.append("s", "x.y", 1)  # an existing store opens as usual, writes and all
    for sid in ("s",):
        with eventlog.open(f"memory://{name}") as log:
            log.delete_session(sid)


def test_create_false_opens_existing_stores_and_they_work(tmp_path: Path) -> None:
    for url in (str(tmp_path / "files"), f"sqlite:///{tmp_path}/db.sqlite"):
        with eventlog.open(url) as log:
            log.create_session("s", ["A"])
        with eventlog.open(url, create=False) as log:
            log.add_message(eventlog.ChatMessage(sender="A", content="hi", session_id="s"))
            assert log.get_session("s").message_count == 1
            assert log.verify().ok


def test_create_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(eventlog.InvalidInputError, match="create"):
        eventlog.open(tmp_path / "x", create="no")
    assert not (tmp_path / "x").exists()


def test_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "sub1").mkdir(parents=True)
    (plain / "notes.txt").write_text("mine")
    before = tree(plain)
    with pytest.raises(eventlog.StoreNotFoundError, match=r"\.eventlog\.json"):
        eventlog.open(plain, create=False)
    with pytest.raises(eventlog.StorageError, match="adopt=True"):
        eventlog.open(plain)
    assert tree(plain) == before  # no marker written by either
    with eventlog.open(plain, adopt=True) as log:
        log.create_session("s")
    assert (plain / ".eventlog.json").is_file() and (plain / "notes.txt").read_text() == "mine"
    with eventlog.open(plain) as log:  # a store now: no adopt needed any more
        assert log.session_exists("s")
    empty = tmp_path / "empty"
    empty.mkdir()
    with eventlog.open(empty):  # an empty directory becomes a store, as a missing one does
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(eventlog.StoreNotFoundError, match="not a directory"):
        eventlog.open(tmp_path / "file", create=False)


def test_sqlite_files_that_are_not_stores(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE mine (x)")
    db.commit()
    db.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 10)
    snapshot = {p: p.read_bytes() for p in (other, junk)}
    with pytest.raises(eventlog.StoreNotFoundError, match="without eventlog's tables"):
        eventlog.open(f"sqlite:///{other}", create=False)
    with pytest.raises(eventlog.StoreNotFoundError, match="not an SQLite database"):
        eventlog.open(f"sqlite:///{junk}", create=False)
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert sorted(os.listdir(tmp_path)) == ["junk.db", "other.db"]  # no -wal or -shm left
    with pytest.raises(eventlog.StorageError, match="adopt=True"):
        eventlog.open(f"sqlite:///{other}")
    with eventlog.open(f"sqlite:///{other}", adopt=True) as log:
        log.create_session("s")
    db = sqlite3.connect(other)
    assert db.execute("SELECT count(*) FROM mine").fetchone() == (0,)
    db.close()
    clash = tmp_path / "clash.db"
    db = sqlite3.connect(clash)
    db.execute("CREATE TABLE sessions (x)")
    db.commit()
    db.close()
    with pytest.raises(eventlog.StorageError, match="already has tables named sessions"):
        eventlog.open(f"sqlite:///{clash}", adopt=True)


def test_adopt_is_an_option_of_the_stores_that_have_it() -> None:
    with pytest.raises(eventlog.InvalidInputError, match="adopt"):
        eventlog.open("memory://", adopt=True)


# The command line -----------------------------------------------------------------------------

@pytest.fixture
def missing(tmp_path: Path) -> Iterator[list[str]]:
    yield [str(tmp_path / "new" / "deeper" / "store"), f"sqlite:///{tmp_path}/new/deeper/x.db",
           f"sqlite:///{tmp_path}/x.db", f"file://{tmp_path}/new/store",
           f"memory://never-{uuid.uuid4().hex}"]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_commands_that_only_read_create_nothing(capsys, tmp_path: Path, missing: list[str],
                                                command: list[str]) -> None:
    for location in missing:
        code, out, err = cli(capsys, "--store", location, *command)
        assert code == 1, (location, out, err)
        assert err.startswith(f"eventlog: no store at {location}: "), err
        assert tree(tmp_path) == {str(tmp_path)}, location


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_commands_that_only_read_refuse_a_directory_that_is_not_a_store(capsys, tmp_path: Path,
                                                                        command: list[str]) -> None:
    (tmp_path / "sub1").mkdir()
    (tmp_path / "sub2").mkdir()
    before = tree(tmp_path)
    code, _out, err = cli(capsys, "--store", str(tmp_path), *command)
    assert code == 1
    assert ".eventlog.json" in err and "not an eventlog store" in err
    assert tree(tmp_path) == before


def test_copy_reads_its_source_only(capsys, tmp_path: Path) -> None:
    code, _out, err = cli(capsys, "copy", f"sqlite:///{tmp_path}/src.db", str(tmp_path / "dst"))
    assert code == 1 and "no store at" in err
    assert tree(tmp_path) == {str(tmp_path)}


def test_one_answer_about_damage(capsys, tmp_path: Path) -> None:
    """A session directory without its lock file: sessions, stats and verify all report it."""
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        log.create_session("fine", ["A"])
    (store / "junk").mkdir()
    code, _out, err = cli(capsys, "--store", str(store), "sessions")
    assert code == 1 and "(junk)" in err
    code, _out, err = cli(capsys, "--store", str(store), "stats")
    assert code == 1 and "(junk)" in err
    code, out, _err = cli(capsys, "--store", str(store), "verify")
    assert code == 1 and "problem: session 'junk'" in out and "verified 2 session(s)" in out
    code, out, _err = cli(capsys, "--store", str(store), "verify", "junk")
    assert code == 1 and "problem: session 'junk'" in out
    with eventlog.open(store) as log:
        assert not log.verify("junk").ok
        assert not log.verify().ok
        with pytest.raises(eventlog.SessionNotFoundError):
            log.verify("nope")


def test_serve_read_only_creates_nothing(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    where = tmp_path / "missing"
    done = subprocess.run([sys.executable, "-m", "eventlog.server", "--read-only", "--port", "0",
                           "--store", str(where)], env=_procs.worker_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "no eventlog store at" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not where.exists()
