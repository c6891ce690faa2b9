"""``eventlog sessions`` with the catalog's filters and paging (issue 15), and ids as users write
them shown safely on a terminal."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

import eventlog
from eventlog import ChatMessage

from .test_cli import cli


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    now = time.time()
    with eventlog.open(root) as log:
        for i in range(7):
            sid = f"user:{i}"
            log.create_session(sid, participants=["Ann" if i % 2 else "Bob"],
                               metadata={"team": "red" if i < 3 else "blue", "n": i},
                               created_at=now - 86400 * (10 - i))
            if i % 3 == 0:
                log.add_message(ChatMessage(sender="Cy", content="x", session_id=sid,
                                            timestamp=now - 60 * i))
        log.create_session("thread/1", created_at=now - 86400 * 30)
    return root


def _ids(out: str) -> list[str]:
    return [line.split("  ")[0] for line in out.splitlines()[1:]]


def test_filters_and_order(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    code, out, _ = cli(capsys, "sessions", "--store", store, "--participant", "Ann")
    assert code == 0 and _ids(out) == ["user:1", "user:3", "user:5"]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--meta", "team=red", "--meta", "n=2")
    assert _ids(out) == ["user:2"]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--prefix", "thread/")
    assert _ids(out) == ["thread/1"]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--since", "1h")
    assert _ids(out) == ["user:0", "user:3", "user:6"]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--order", "last_activity",
                       "--descending", "--since", "1h")
    assert _ids(out) == ["user:0", "user:3", "user:6"]  # messages 0, 3 and 6 minutes ago
    code, out, err = cli(capsys, "sessions", "--store", store, "--participant", "Nobody")
    assert (code, out, err) == (0, "", "no sessions match\n")


def test_paging_through_every_session(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        code, out, err = cli(capsys, "sessions", "--store", store, "--limit", "3",
                             "--order", "created_at", *cursor)
        assert code == 0
        seen += _ids(out)
        if "--cursor" not in err:
            break
        cursor = ["--cursor", err.split("--cursor ")[1].strip()]
    assert seen == ["thread/1"] + [f"user:{i}" for i in range(7)]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--limit", "5", "--json")
    page = orjson.loads(out)
    assert [s["session_id"] for s in page["sessions"]] == ["thread/1"] + [f"user:{i}" for i in range(4)]
    code, out, _ = cli(capsys, "sessions", "--store", store, "--limit", "5", "--json",
                       "--cursor", page["next_cursor"])
    assert [s["session_id"] for s in orjson.loads(out)["sessions"]] == ["user:4", "user:5", "user:6"]
    assert orjson.loads(out)["next_cursor"] is None


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    for args in (["--cursor", "nonsense"], ["--meta", "novalue"], ["--since", "7x"],
                 ["--order", "size"], ["--limit", "0"]):
        code, _, err = cli(capsys, "sessions", "--store", store, *args)
        assert code == 2, (args, err)
    _, out, _ = cli(capsys, "sessions", "--store", store, "--limit", "2", "--json")
    code, _, err = cli(capsys, "sessions", "--store", store, "--limit", "2", "--prefix", "user",
                       "--cursor", orjson.loads(out)["next_cursor"])  # another listing's
    assert code == 2 and "cursor" in err


def test_ids_that_could_fool_a_terminal_are_shown_escaped(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    root = tmp_path / "s"
    evil = "\u202eexe.txt"
    with eventlog.open(root) as log:
        log.create_session(evil, participants=["\u2066x\u2069"])
        log.add_message(ChatMessage(sender="a\u202eb", content="c\x1b[2Jd", session_id=evil))
    code, out, _ = cli(capsys, "sessions", "--store", root)
    assert code == 0 and "\\u202eexe.txt" in out and "\\u2066x\\u2069" in out
    assert "\u202e" not in out and "\u2066" not in out
    code, out, _ = cli(capsys, "show", evil, "--store", root)
    assert code == 0 and "a\\u202eb" in out and "c\\x1b[2Jd" in out and "\x1b" not in out
    code, out, _ = cli(capsys, "sessions", "--store", root, "--json")
    assert orjson.loads(out)[0]["session_id"] == evil  # JSON keeps it exactly (escaped by JSON)


def test_a_cursor_never_looks_like_an_option() -> None:
    """A cursor is passed on the command line: base64url may begin with "-", which argparse
    took for an option (a usage error, about one page in 64)."""
    from eventlog.store import _catalog

    query = _catalog.make_query(None, None, None, None, None, "session_id", False)
    cursors = [_catalog.encode_cursor(query, (f"s{i}",)) for i in range(2000)]
    assert not [c for c in cursors if c.startswith("-")]
    assert all(_catalog.decode_cursor(c, query) == (f"s{i}",) for i, c in enumerate(cursors))
