"""Session ids as users write them, on the file backend (issue 15): each id's directory name
is safe and reversible, nothing is made outside the store, and a store written before
(``tests/fixtures/store-0.1.0``, made by ``make_store_0_1_0.py`` with the code of commit
549a0dd) opens, reads, verifies and appends: both layouts are read, nothing is renamed."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import ChatMessage
from eventlog.backends.files._names import MAX_NAME, dir_name, file_name, id_of, is_long

from ._contract_input import VALID_ODD_IDS
from .test_checkstore import checkstore

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.1.0"
FIXTURE_IDS = ["CON", "Compacted_1", "Team-A", "a.", "lower", "team-a"]
SAFE_NAME = re.compile(r"[a-z0-9_.~%-]{1,255}")
valid_ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=255)


def _walk(top: Path) -> list[Path]:
    return [Path(d) / n for d, dirs, files in os.walk(top) for n in dirs + files]


@settings(max_examples=300, deadline=None)
@given(valid_ids)
def test_every_valid_id_has_a_safe_name_that_gives_it_back(sid: str) -> None:
    name = dir_name(sid)
    assert SAFE_NAME.fullmatch(name) and len(name.encode()) <= MAX_NAME
    assert name not in (".", "..") and not name.startswith(".") and not name.endswith(".")
    assert name == name.lower()  # case-insensitive file systems can't fold two into one
    assert id_of(name) == sid or (id_of(name) is None and is_long(name))


@settings(max_examples=300, deadline=None)
@given(valid_ids, valid_ids)
def test_two_ids_never_share_a_name_even_ignoring_case(a: str, b: str) -> None:
    if a != b:
        assert dir_name(a).lower() != dir_name(b).lower()


def test_the_issues_ids_and_their_names() -> None:
    assert dir_name("user:42") == "~user%3a42"
    assert dir_name("thread/123") == "~thread%2f123"
    assert dir_name("Team") == "~%54eam" and dir_name("team") == "team"
    assert dir_name("..") == "~%2e%2e" and dir_name("CON") == "~%43%4f%4e"
    assert dir_name("con") == "~con" and dir_name("a.b") == "a.b" and dir_name("a.") == "~a%2e"
    assert is_long(dir_name("é" * 255)) and not is_long(dir_name("x" * 255))


def test_hostile_looking_ids_create_nothing_outside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "inner" / "store"
    with eventlog.open(root) as log:
        for sid in VALID_ODD_IDS:
            log.create_session(sid, participants=["a"])
            log.add_message(ChatMessage(sender="a", content=sid, session_id=sid))
            log.compact(sid)
        assert log.session_ids() == sorted(VALID_ODD_IDS)
        assert log.cleanup_old_sessions(0, archive_dir=tmp_path / "inner" / "archive")
    assert sorted(p.name for p in (tmp_path / "inner").iterdir()) == ["archive", "store"]
    assert list(tmp_path.iterdir()) == [tmp_path / "inner"]
    for path in _walk(root) + _walk(tmp_path / "inner" / "archive"):
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(tmp_path / "inner")
    archived = sorted(p.name for p in (tmp_path / "inner" / "archive").iterdir())
    assert archived == sorted(f"{file_name(sid, 244)}.jsonl" for sid in VALID_ODD_IDS)
    assert all(len(name.encode()) <= 255 for name in archived)


def test_long_names_keep_their_id_in_the_directory(tmp_path: Path) -> None:
    sid = "日本語" * 85
    with eventlog.open(tmp_path) as log:
        log.create_session(sid)
        assert log.session_ids() == [sid]
    [directory] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert is_long(directory.name) and (directory / "id").read_bytes() == sid.encode()
    (directory / "id").write_bytes(b"another")  # an id file that does not fit its name
    with eventlog.open(tmp_path) as log:
        assert log.session_ids() == []


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_a_store_written_before_opens_reads_verifies_and_appends(old_store: Path) -> None:
    before = sorted(p.name for p in old_store.iterdir() if p.name != ".catalog")
    with eventlog.open(old_store) as log:
        assert log.session_ids() == FIXTURE_IDS
        assert log.verify().ok and log.verify().sessions_checked == 6
        for sid in FIXTURE_IDS:
            session = log.get_session(sid)
            assert session.metadata == {"sid": sid}
            assert [m.content for m in log.get_messages(sid)] == [f"{sid} {i}" for i in range(6)]
            log.add_message(ChatMessage(sender="new", content="after", session_id=sid))
            assert log.get_session(sid).last_seq == session.last_seq + 1
        assert [s.session_id for s in log.list_sessions(participant="new")] == FIXTURE_IDS
        with pytest.raises(eventlog.SessionExistsError):
            log.create_session("Team-A")
        assert log.verify().ok
    after = sorted(p.name for p in old_store.iterdir() if p.name != ".catalog")
    assert after == before  # read in place, nothing renamed (the catalog is new: derived data)
    assert checkstore.check(str(old_store)).problems == []


def test_an_old_session_deleted_comes_back_under_its_new_name(old_store: Path) -> None:
    with eventlog.open(old_store) as log:
        log.delete_session("Team-A")
        assert not (old_store / "Team-A").exists()
        log.create_session("Team-A", participants=["again"])
        assert (old_store / "~%54eam-%41").is_dir()
        assert log.session_ids() == FIXTURE_IDS
        assert log.get_session("Team-A").participants == ["again"]
        assert log.get_session("team-a").participants == ["cy", "Ann"]
    assert checkstore.check(str(old_store)).problems == []


def test_the_checker_reads_every_kind_of_name(tmp_path: Path) -> None:
    ids = ["user:42", "Team", "team", "é" * 255, "..", "CON", "a."]
    with eventlog.open(tmp_path) as log:
        for sid in ids:
            log.create_session(sid)
    report = checkstore.check(str(tmp_path))
    assert report.problems == [] and sorted(report.sessions) == sorted(ids)
    (tmp_path / "~%zz").mkdir()  # not a name any id has
    (tmp_path / "~%54EAM").mkdir()  # upper-case hex: not the one spelling of "Team"
    assert len(checkstore.check(str(tmp_path)).problems) == 2
