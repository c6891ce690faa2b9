"""The ``eventlog`` command line, run in-process through ``eventlog.cli._main.run`` against real stores.

The commands that need a second process (stdin, ``tail -f``, the demo, ``python -m``) are in
test_cli_processes.py.
"""

from __future__ import annotations

import errno
import io
import re
import sys
import time
import types
from datetime import datetime
from pathlib import Path

import orjson
import pytest

import eventlog
from eventlog.cli._commands import COMMANDS
from eventlog.cli._main import run
from eventlog.cli._terminal import Progress, human_bytes, parse_duration, safe


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def local(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def team(store: Path) -> list[eventlog.ChatMessage]:
    """A session 'team' with three messages (one to everyone) and a custom event."""
    with eventlog.open(store) as log:
        log.create_session("team", ["Agent-1", "Agent-2"], {"topic": "release"})
        stored = [log.add_message(eventlog.ChatMessage(sender=s, recipient=r, content=c,
                                                       session_id="team", timestamp=1_700_000_000 + i))
                  for i, (s, r, c) in enumerate([("Agent-1", "Agent-2", "hello"),
                                                 ("Agent-2", None, "hi all"),
                                                 ("Agent-1", "Agent-2", "two\nlines")])]
        log.append("team", "tool.result", {"hits": 3})
    return stored


# Help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_help_shows_an_example(capsys, name):
    code, out, _ = cli(capsys, name, "--help")
    assert code == 0
    example = out.split("example:\n", 1)[1]
    assert f"  eventlog {name}" in example


def test_the_issue_commands_all_exist():
    assert {c.name for c in COMMANDS} == {
        "demo", "sessions", "show", "tail", "create", "post", "replay", "verify", "compact",
        "cleanup", "export", "import", "stats", "copy", "serve", "search", "fork", "rewind",
        "reindex", "redact", "checkpoint", "keygen"}  # reindex: issue 15; the rest: issue 18


def test_top_level_help_and_no_command(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "eventlog demo" in out and "tail" in out
    code, out, err = cli(capsys)
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and "choose a command" in err


# Looking -----------------------------------------------------------------------------------

def test_sessions_table_and_json(capsys, store, team):
    code, out, _ = cli(capsys, "sessions", "--store", store)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["SESSION", "PARTICIPANTS", "MESSAGES", "LAST", "ACTIVITY", "SIZE"]
    assert row.startswith("team ") and "Agent-1, Agent-2" in row and " 3 " in row
    with eventlog.open(store) as log:
        assert local(log.get_session("team").last_activity) in row
    code, out, _ = cli(capsys, "--store", store, "sessions", "--json")
    [entry] = orjson.loads(out)
    with eventlog.open(store) as log:
        size = log.size("team")
    assert entry == {"session_id": "team", "participants": ["Agent-1", "Agent-2"],
                     "message_count": 3, "last_seq": 5,
                     "created_at": entry["created_at"], "last_activity": entry["last_activity"],
                     "metadata": {"topic": "release"}, "size_bytes": size}
    # The custom event was appended now, so it is the last activity, in ISO 8601.
    assert abs(datetime.fromisoformat(entry["last_activity"]).timestamp() - time.time()) < 60


def test_store_from_environment_then_default(capsys, store, team, tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTLOG_STORE", str(store))
    assert "team" in cli(capsys, "sessions")[1]
    monkeypatch.delenv("EVENTLOG_STORE")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "sessions")
    assert code == 1
    assert err == ("eventlog: no store at chatlogs: no such directory "
                   "(give --store PATH|URL or set EVENTLOG_STORE)\n")
    assert not (tmp_path / "chatlogs").exists()  # looking never creates a store
    assert cli(capsys, "create", "s1")[0] == 0
    assert (tmp_path / "chatlogs" / "s1").is_dir()


def test_show_transcript_local_times_limit_and_json(capsys, store, team):
    code, out, _ = cli(capsys, "show", "team", "--store", store)
    assert code == 0
    assert out.splitlines() == [
        f"{local(1_700_000_000)}  #2  Agent-1 -> Agent-2: hello",
        f"{local(1_700_000_001)}  #3  Agent-2 -> all: hi all",
        f"{local(1_700_000_002)}  #4  Agent-1 -> Agent-2: two",
        "    lines"]
    code, out, _ = cli(capsys, "show", "team", "--store", store, "--limit", "1", "--json")
    [m] = orjson.loads(out)
    assert m == {"seq": 4, "id": team[2].id, "timestamp": "2023-11-14T22:13:22.000000+00:00",
                 "sender": "Agent-1", "recipient": "Agent-2", "content": "two\nlines",
                 "message_type": "text", "metadata": None}


def test_show_escapes_terminal_control_characters(capsys, store):
    with eventlog.open(store) as log:
        log.create_session("s")
        log.add_message(eventlog.ChatMessage(sender="evil\x1b]0;x\x07", content="\x1b[2Jgone\ttab",
                                             session_id="s"))
    out = cli(capsys, "show", "s", "--store", store)[1]
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;x\\x07 -> all: \\x1b[2Jgone\ttab" in out
    assert safe("a\x9bb\nc") == "a\\x9bb\nc"


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_show_and_sessions_escape_bidirectional_overrides(capsys, store):
    # "\u202egpj.exe\u202c" is shown by a terminal as "exe.jpg"; one RLO in a name reverses
    # what follows it on the line. Every override and isolate is shown as an escape.
    with eventlog.open(store) as log:
        log.create_session("s", ["Ann\u202e", "Bob"])
        log.add_message(eventlog.ChatMessage(sender="Ann\u202e", recipient="Bob\u2066",
                                             content="see \u202egpj.exe\u202c " + BIDI,
                                             session_id="s", message_type="x\u2067"))
    for command in (["show", "s"], ["sessions"], ["tail", "s"]):
        out = cli(capsys, *command, "--store", store)[1]
        assert not set(BIDI) & set(out), (command, out)
    out = cli(capsys, "show", "s", "--store", store)[1]
    assert "Ann\\u202e -> Bob\\u2066 [x\\u2067]: see \\u202egpj.exe\\u202c" in out
    assert safe(BIDI) == "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert safe("\u200f\u05d0 \u0627") == "\u200f\u05d0 \u0627"  # right-to-left text itself stays


def test_a_literal_backslash_escape_is_not_taken_for_an_escaped_override(capsys, store):
    r"""An id of the six characters ``\u202e`` was shown exactly like an escaped real override
    (outside tester): a backslash is shown as ``\\``, so each shown escape means one thing."""
    with eventlog.open(store) as log:
        log.create_session("fake\\u202e", ["A"])
        log.create_session("real\u202e", ["A"])
    out = cli(capsys, "sessions", "--store", store)[1]
    assert "fake\\\\u202e " in out and "real\\u202e " in out, out
    assert safe("C:\\new\\x1b") == "C:\\\\new\\\\x1b"
    assert safe("\\\x1b") == "\\\\\\x1b"  # a backslash, then a real ESC


def test_tail_prints_the_last_n(capsys, store, team):
    code, out, _ = cli(capsys, "tail", "-n", "2", "team", "--store", store)
    assert code == 0
    assert [line.split("  ")[1] for line in out.splitlines() if not line.startswith("    ")] == ["#3", "#4"]


def test_replay_prints_events_exactly_as_stored(capsys, store, team):
    code, out, _ = cli(capsys, "replay", "team", "--store", store)
    assert code == 0
    stored = [line.rstrip(b" ") for seg in sorted((store / "team").glob("seg-*.jsonl"))
              for line in seg.read_bytes().splitlines() if line.startswith(b'{"seq":')]
    # The stored line minus its digest member is exactly what replay prints.
    assert out.encode().splitlines() == [line[:-40] + b"}" for line in stored]
    events = [orjson.loads(line) for line in out.splitlines()]
    assert [list(e) for e in events] == [["seq", "type", "ts", "data"]] * 5
    assert events[4] == {"seq": 5, "type": "tool.result", "ts": events[4]["ts"], "data": {"hits": 3}}
    code, out, _ = cli(capsys, "replay", "team", "--store", store, "--after-seq", "3")
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == [4, 5]


def test_stats(capsys, store, team):
    with eventlog.open(store) as log:
        log.create_session("other", created_at=1_600_000_000)
        size = log.size("team") + log.size("other")
    stats = orjson.loads(cli(capsys, "stats", "--json", "--store", store)[1])
    assert stats["sessions"] == 2 and stats["events"] == 6 and stats["messages"] == 3
    assert stats["bytes"] == size
    assert stats["oldest_activity"] == "2020-09-13T12:26:40.000000+00:00"
    out = cli(capsys, "stats", "--store", store)[1]
    assert "sessions:         2\n" in out and f"oldest activity:  {local(1_600_000_000)}\n" in out
    assert out.endswith("damaged sessions: 0\n")


def test_a_damaged_session_does_not_hide_the_others(capsys, store, team):
    with eventlog.open(store) as log:
        log.create_session("fine", ["X"])
    [segment] = (store / "team").glob("seg-*.jsonl")
    segment.write_bytes(segment.read_bytes().replace(b"hi all", b"hi ALL"))
    code, out, err = cli(capsys, "sessions", "--store", store)
    assert code == 1
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["fine", "team"]
    assert "team     (damaged: see eventlog verify)" in out
    assert err == "eventlog: 1 session(s) could not be read (team); 'eventlog verify' shows why\n"
    code, out, _ = cli(capsys, "sessions", "--json", "--store", store)
    fine, damaged = orjson.loads(out)
    assert code == 1 and fine["session_id"] == "fine" and damaged["session_id"] == "team"
    assert "seq 3" in damaged["error"]
    code, out, _ = cli(capsys, "stats", "--json", "--store", store)
    stats = orjson.loads(out)
    assert code == 1 and (stats["sessions"], stats["damaged_sessions"], stats["events"]) == (1, 1, 1)


# Writing -----------------------------------------------------------------------------------

def test_create_and_post(capsys, store):
    code, out, _ = cli(capsys, "create", "--store", store, "-p", "A", "--participant", "B",
                       "--metadata", '{"k": 1}')
    sid = out.strip()
    assert code == 0 and len(sid) == 32
    assert cli(capsys, "create", "named", "--store", store) == (0, "named\n", "")
    code, out, _ = cli(capsys, "post", sid, "--sender", "A", "--to", "B", "hello", "--store", store)
    assert (code, out) == (0, f"posted to {sid} as seq 2\n")
    with eventlog.open(store) as log:
        s = log.get_session(sid)
        [m] = log.get_messages(sid)
    assert (s.participants, s.metadata) == (["A", "B"], {"k": 1})
    assert (m.sender, m.recipient, m.content) == ("A", "B", "hello")


def test_create_refuses_an_existing_id(capsys, store, team):
    code, out, err = cli(capsys, "create", "team", "--store", store)
    assert (code, out, err) == (1, "", "eventlog: session 'team' already exists\n")


# Errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "message"), [
    (["show", "nope"], 1, "eventlog: session 'nope' does not exist"),
    (["post", "nope", "--sender", "A", "x"], 1, "eventlog: session 'nope' does not exist"),
    (["show", "../x"], 1, "eventlog: session '../x' does not exist"),
    (["show", "a\tb"], 2, "invalid session id 'a\\tb'"),
    (["show", "team", "--limit", "-1"], 2, "argument --limit: '-1' is negative"),
    (["post", "team", "x"], 2, "the following arguments are required: --sender"),
    (["post", "team", "--sender", "", "x"], 2, "eventlog: sender must not be empty"),
    (["create", "x", "--metadata", "{"], 2, "--metadata: not valid JSON"),
    (["cleanup", "--older-than", "7x"], 2, "--older-than: invalid duration '7x'"),
    (["cleanup", "--older-than", "0d"], 2, "it must be longer than zero"),
    (["cleanup"], 2, "the following arguments are required: --older-than"),
    (["compact"], 2, "name the sessions to compact, or give --all"),
    (["compact", "team", "--all"], 2, "name the sessions to compact, or give --all"),
    (["verify", "nope"], 1, "eventlog: session 'nope' does not exist"),
    (["import", "missing.jsonl"], 1, "eventlog: missing.jsonl: No such file or directory"),
    (["export", "team", "--format", "xml"], 2, "invalid choice: 'xml'"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["sessions", "--store", "redis+nope://x"], 2, "unknown store scheme"),
])
def test_errors_are_one_line_with_the_right_status(capsys, store, team, args, code, message):
    got, out, err = cli(capsys, *args, "--store", store) if "--store" not in args else cli(capsys, *args)
    assert (got, out) == (code, "")
    assert message in err and err.count("\n") == 1 and err.startswith("eventlog: ")


def test_unreadable_import_file(capsys, store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"eventlog_export": 1, "session_id": "s"}\n{"seq": 1, "type": "session.created"}\n')
    code, _, err = cli(capsys, "import", bad, "--store", store)
    assert code == 1
    assert err == (f"eventlog: {bad} line 2: not an event (an object with exactly seq, type, ts "
                   "and data, and a string key if it was appended with one)\n")
    bad.write_text('{"seq": 1, "type": "tool.x", "ts": 1, "data": {}}\n')
    code, _, err = cli(capsys, "import", bad, "--store", store, "--session", "s")
    assert code == 1 and "an imported history must start with a session.created event" in err
    assert not (store / "s").exists()


def test_unexpected_errors_are_one_line_too(capsys, store, team, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(eventlog.EventLog, "size", broken)
    code, _, err = cli(capsys, "sessions", "--store", store)
    assert (code, err) == (1, "eventlog: internal error: RuntimeError: boom "
                              "(set EVENTLOG_DEBUG=1 to see where)\n")


# Verify ------------------------------------------------------------------------------------

def test_verify_sound_and_damaged(capsys, store, team):
    with eventlog.open(store) as log:
        log.create_session("other")
    code, out, _ = cli(capsys, "verify", "--store", store)
    assert (code, out) == (0, "verified 2 session(s), 6 event(s): ok\n")
    [segment] = (store / "team").glob("seg-*.jsonl")
    segment.write_bytes(segment.read_bytes().replace(b"hi all", b"hi ALL"))
    code, out, _ = cli(capsys, "verify", "--store", store)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1 and "'team'" in problems[0] and "seq 3" in problems[0]
    assert out.endswith("1 problem(s)\n")
    assert cli(capsys, "verify", "other", "--store", store)[0] == 0
    report = orjson.loads(cli(capsys, "verify", "team", "--json", "--store", store)[1])
    assert report["ok"] is False and report["sessions_checked"] == 1 and len(report["problems"]) == 1


# Export, import, copy ---------------------------------------------------------------------------

def all_events(store: Path) -> dict[str, list[eventlog.Event]]:
    with eventlog.open(store) as log:
        return {sid: list(log.events(sid)) for sid in log.session_ids()}


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_export_import_round_trip(capsys, store, team, tmp_path, fmt):
    path = tmp_path / f"team.{fmt}"
    assert cli(capsys, "export", "team", "--format", fmt, "-o", path, "--store", store) == (0, "", "")
    other = tmp_path / "other"
    code, out, _ = cli(capsys, "import", path, "--store", other)
    assert (code, out) == (0, "imported 5 events into session team (3 messages)\n")
    assert all_events(other) == all_events(store)
    # The id exists now: refused, and nothing changes.
    code, _, err = cli(capsys, "import", path, "--store", other)
    assert code == 1 and "session 'team' already exists" in err
    assert cli(capsys, "import", path, "--store", other, "--session", "copy")[0] == 0
    assert all_events(other)["copy"] == all_events(store)["team"]
    assert cli(capsys, "verify", "--store", other)[0] == 0


def test_export_jsonl_to_stdout_is_header_then_replay(capsys, store, team):
    out = cli(capsys, "export", "team", "--store", store)[1]
    header, *events = out.splitlines(keepends=True)
    assert orjson.loads(header) == {"eventlog_export": 1, "session_id": "team"}
    assert "".join(events) == cli(capsys, "replay", "team", "--store", store)[1]


def test_export_markdown(capsys, store, team):
    out = cli(capsys, "export", "team", "--format", "markdown", "--store", store)[1]
    assert out.startswith("# Session team\n\n- participants: Agent-1, Agent-2\n")
    assert "- messages: 3, events: 5" in out
    assert f"**Agent-2 → all** · {local(1_700_000_001)} · seq 3\n\n> hi all\n" in out
    assert "> two\n> lines\n" in out and '`tool.result`' in out and '{"hits":3}' in out


def test_export_unknown_session_writes_no_file(capsys, store, team, tmp_path):
    code, _, err = cli(capsys, "export", "nope", "-o", tmp_path / "x.jsonl", "--store", store)
    assert (code, err) == (1, "eventlog: session 'nope' does not exist\n")
    assert not (tmp_path / "x.jsonl").exists()
    assert list(tmp_path.glob(".*")) == []  # nor the temporary file it was written to


def test_export_errors_name_the_path_given(capsys, store, team, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    code, _, err = cli(capsys, "export", "team", "-o", folder, "--store", store)
    assert (code, err) == (1, f"eventlog: can't write {folder}: it is a directory\n")
    code, _, err = cli(capsys, "export", "team", "-o", tmp_path / "no" / "x.md", "--store", store)
    missing = tmp_path / "no" / "x.md"
    assert (code, err) == (1, f"eventlog: can't write {missing}: No such file or directory\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]


def test_copy_store_to_store(capsys, store, team, tmp_path):
    with eventlog.open(store) as log:
        log.create_session("second", ["X"])
    target = tmp_path / "target"
    code, out, _ = cli(capsys, "copy", store, target)
    assert code == 0
    assert out == (f"copied 2 session(s), 6 event(s), from {store} to {target}; "
                   "skipped 0 existing; the copy verifies\n")
    assert all_events(target) == all_events(store)
    # Again: every session exists in the target, so it is refused and nothing is written.
    with eventlog.open(store) as log:
        log.create_session("third")
    code, out, err = cli(capsys, "copy", store, target)
    assert code == 1 and "2 session(s) already exist" in err and "nothing was copied" in err
    assert "third" not in all_events(target)
    code, out, _ = cli(capsys, "copy", store, target, "--skip-existing")
    assert code == 0 and "copied 1 session(s), 1 event(s)" in out and "skipped 2 existing" in out
    assert all_events(target) == all_events(store)


def test_copy_from_a_missing_store(capsys, tmp_path):
    code, _, err = cli(capsys, "copy", tmp_path / "nothing", tmp_path / "target")
    assert code == 1 and "no store at" in err and not (tmp_path / "target").exists()


# Compaction and retention (EventLog.compact / cleanup_old_sessions) -------------------------------

@pytest.fixture
def compact_tiny(monkeypatch):
    """Compact sessions of any size (compaction leaves sessions under 4 KiB alone)."""
    monkeypatch.setattr("eventlog.store._compaction.COMPACT_MIN_BYTES", 0)


def test_compact_leaves_a_tiny_session_alone(capsys, store, team):
    before = {p.name: p.read_bytes() for p in (store / "team").iterdir()}
    size = sum(map(len, before.values()))
    code, out, _ = cli(capsys, "compact", "team", "--store", store)
    assert code == 0
    assert out.splitlines()[0] == f"team: {human_bytes(size)} -> {human_bytes(size)}, 0 segment(s) archived"
    assert {p.name: p.read_bytes() for p in (store / "team").iterdir()} == before


def test_compact_named_and_all(capsys, store, team, compact_tiny):
    with eventlog.open(store) as log:
        log.create_session("other")
        before = all_events(store)
        size = log.size("team")
    code, out, _ = cli(capsys, "compact", "team", "--store", store)
    assert code == 0
    first, summary = out.splitlines()
    assert re.fullmatch(r"team: \S+ \S+ -> \S+ \S+, 1 segment\(s\) archived", first)
    assert first.startswith(f"team: {human_bytes(size)} -> ")
    assert summary.startswith("compacted 1 session(s): ") and summary.endswith(", 1 segment(s) archived")
    assert len(list((store / "team").glob("seg-*.jsonl.gz"))) == 1  # really archived
    code, out, _ = cli(capsys, "compact", "--all", "--store", store)
    assert code == 0 and re.fullmatch(r"compacted 2 session\(s\): .* -> .*, \d+ segment\(s\) archived\n", out)
    assert all_events(store) == before
    assert cli(capsys, "verify", "--store", store)[0] == 0
    assert cli(capsys, "compact", "nope", "--store", store)[0] == 1


def test_compact_all_goes_on_past_a_damaged_session(capsys, store, team, compact_tiny):
    with eventlog.open(store) as log:
        log.create_session("fine")
    [segment] = (store / "team").glob("seg-*.jsonl")
    segment.write_bytes(segment.read_bytes().replace(b"hi all", b"hi ALL"))
    code, out, _ = cli(capsys, "compact", "--all", "--store", store)
    assert code == 1
    problem, summary = out.splitlines()
    assert problem.startswith("problem: ") and "'team'" in problem
    assert summary.startswith("compacted 1 session(s): ") and summary.endswith(
        "1 session(s) left as they were")


def test_compact_all_goes_on_past_a_storage_error(capsys, store, team, compact_tiny, monkeypatch):
    from eventlog.backends.files._backend import FileBackend
    with eventlog.open(store) as log:
        log.create_session("fine")
    real_archive = FileBackend.archive

    def archive(self, session_id):
        if session_id == "team":
            raise eventlog.StorageError(errno.EIO, "Input/output error")
        return real_archive(self, session_id)

    monkeypatch.setattr(FileBackend, "archive", archive)
    code, out, _ = cli(capsys, "compact", "--all", "--store", store)
    assert code == 1
    problem, summary = out.splitlines()
    assert problem.startswith("problem: session 'team': ") and "Input/output error" in problem
    assert summary.startswith("compacted 1 session(s): ") and summary.endswith(
        "1 session(s) left as they were")
    code, out, err = cli(capsys, "compact", "team", "--store", store)
    assert code == 1 and "Input/output error" in err


def test_cleanup_dry_run_then_for_real(capsys, store, team):
    old = time.time() - 40 * 86400
    with eventlog.open(store) as log:
        log.create_session("old", ["A"], created_at=old)
        log.add_message(eventlog.ChatMessage(sender="A", content="long ago", session_id="old",
                                             timestamp=old + 60))
    code, out, _ = cli(capsys, "cleanup", "--older-than", "30d", "--dry-run", "--store", store)
    assert (code, out) == (0, "would remove old\nwould remove 1 session(s) with no activity in "
                              "the last 30 days\n")
    assert (store / "old").is_dir()
    data = orjson.loads(cli(capsys, "cleanup", "--older-than", "30d", "--dry-run", "--json",
                            "--store", store)[1])
    assert data == {"dry_run": True, "older_than_seconds": 30 * 86400, "sessions": ["old"],
                    "failed": {}}
    code, out, _ = cli(capsys, "cleanup", "--older-than", "29d12h", "--store", store)
    assert code == 0 and out.startswith("removed old\nremoved 1 session(s)")
    assert set(all_events(store)) == {"team"}


# serve -----------------------------------------------------------------------------------------

def test_serve_without_the_server_extra(capsys, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "eventlog.server", None)  # import fails, as when not installed
    code, out, err = cli(capsys, "serve", "--store", store)
    assert code == 2 and out == ""
    assert err == ("eventlog: 'eventlog serve' needs the server extra (eventlog.server is missing): "
                   "pip install 'eventlog[server]'\n")


def test_serve_passes_its_options(capsys, store, monkeypatch):
    calls = []
    fake = types.ModuleType("eventlog.server")
    fake.serve = lambda url, **kw: calls.append((url, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "eventlog.server", fake)
    monkeypatch.setenv("EVENTLOG_STORE", "sqlite:///x.db")
    assert cli(capsys, "serve", "--port", "9000", "--read-only", "--cors-origin", "http://a",
               "--cors-origin", "http://b", "--token-file", "tok")[0] == 0
    assert cli(capsys, "--store", store, "serve", "--allow-delete", "--host", "0.0.0.0")[0] == 0
    assert calls == [
        ("sqlite:///x.db", {"host": "127.0.0.1", "port": 9000, "read_only": True,
                            "allow_delete": False, "allow_redact": False, "token_file": "tok",
                            "cors_origins": ["http://a", "http://b"]}),
        (str(store), {"host": "0.0.0.0", "port": 8765, "read_only": False, "allow_delete": True,
                      "allow_redact": False, "token_file": None, "cors_origins": []})]


# Pieces ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1.5d", 129600), ("1d12h", 129600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "7 d", "-1d", "1d-", "0s", "1e3s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only():
    tty = FakeTerminal()
    with Progress("verifying", 4, stream=tty) as progress:
        for _ in range(4):
            progress.advance()
            progress._drawn = 0  # don't wait for the redraw interval
    assert "verifying [" in tty.getvalue() and "4/4" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
    plain = io.StringIO()
    with Progress("verifying", 4, stream=plain) as progress:
        progress.advance(4)
    assert plain.getvalue() == ""


def test_commands_are_silent_on_stderr_when_it_is_not_a_terminal(capsys, store, team):
    assert cli(capsys, "verify", "--store", store)[2] == ""


def test_cleanup_archive_then_import_restores_the_session(capsys, store, team, tmp_path):
    old = time.time() - 40 * 86400
    with eventlog.open(store) as log:
        log.create_session("old", ["A"], created_at=old)
        log.add_messages([eventlog.ChatMessage(sender="A", content=f"m{i}", session_id="old",
                                               timestamp=old + i) for i in range(3)])
        log.add_message(eventlog.ChatMessage(sender="B", content="last", session_id="old",
                                             timestamp=old + 9))
    history = all_events(store)["old"]
    archive = tmp_path / "archive"
    code, out, _ = cli(capsys, "cleanup", "--older-than", "30d", "--archive-dir", archive,
                       "--store", store)
    assert (code, out.splitlines()[0]) == (0, "archived old")
    assert "old" not in all_events(store)
    [saved] = archive.glob("old*")
    code, out, _ = cli(capsys, "import", saved, "--store", store)
    assert (code, out) == (0, "imported 5 events into session old (4 messages)\n")
    assert all_events(store)["old"] == history
    # Its digests are checked on the way in, and a cut archive is refused.
    lines = saved.read_bytes().splitlines(keepends=True)
    saved.write_bytes(b"".join(lines[:-1]))
    code, _, err = cli(capsys, "import", saved, "--store", store, "--session", "cut")
    assert code == 1 and "the archive is incomplete" in err
    saved.write_bytes(b"".join(lines).replace(b'"m1"', b'"m!"'))
    code, _, err = cli(capsys, "import", saved, "--store", store, "--session", "edited")
    assert code == 1 and "digest does not match" in err
    assert set(all_events(store)) == {"team", "old"}


# search -------------------------------------------------------------------------------------

def test_search_finds_text_in_every_session(capsys, store, team):
    with eventlog.open(store) as log:
        log.create_session("other", ["Zed"])
        log.add_message(eventlog.ChatMessage(sender="Zed", content="Hello from \u202eother",
                                             session_id="other", timestamp=1_700_000_100))
    code, out, err = cli(capsys, "search", "HELLO", "--store", store)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("other  ") and "#2  Zed -> all: [[Hello]] from \\u202eother" in lines[0]
    assert lines[1].startswith("team  ") and "#2  Agent-1 -> Agent-2: [[hello]]" in lines[1]


def test_search_filters_pages_and_json(capsys, store, team):
    code, out, _ = cli(capsys, "search", "", "--session", "team", "--type", "message", "--sender",
                       "Agent-1", "--newest-first", "--json", "--store", store)
    docs = [orjson.loads(chunk) for chunk in re.split(r"\n(?=\{)", out.strip())]
    assert [d["seq"] for d in docs[:-1]] == [4, 2] and docs[-1] == {"next_cursor": None}
    assert docs[0]["fields"] == [] and docs[0]["data"]["content"] == "two\nlines"
    code, out, err = cli(capsys, "search", "", "--session", "team", "--limit", "2", "--store", store)
    assert code == 0 and len(out.splitlines()) == 2
    cursor = err.split("--cursor ")[1].split()[0]
    code, out, _ = cli(capsys, "search", "", "--session", "team", "--cursor", cursor, "--store", store)
    assert [line.split("#")[1].split()[0] for line in out.splitlines()] == ["3", "4", "5"]
    assert "[tool.result] {\"hits\":3}" in out
    code, out, _ = cli(capsys, "search", "", "--session", "team", "--to", "*", "--store", store)
    assert len(out.splitlines()) == 1 and "Agent-2 -> all: hi all" in out


def test_search_with_no_match_exits_1_and_bad_input_2(capsys, store, team):
    code, out, err = cli(capsys, "search", "nowhere", "--store", store)
    assert (code, out, err.strip()) == (1, "", "no match")
    assert cli(capsys, "search", "x", "--cursor", "bogus", "--store", store)[0] == 2
    assert cli(capsys, "search", "x", "--session", "missing", "--store", store)[0] == 1


def test_fork_and_rewind_commands(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    assert cli(capsys, "create", "team", "--store", store)[0] == 0
    for word in ("one", "two", "three"):
        assert cli(capsys, "post", "team", "--sender", "A", word, "--store", store)[0] == 0
    code, out, _ = cli(capsys, "fork", "team", "team-b", "--at-seq", "3", "--store", store)
    assert (code, out) == (0, "team-b\n")
    code, out, _ = cli(capsys, "fork", "team", "--store", store)
    assert code == 0 and len(out.strip()) == 32
    code, out, _ = cli(capsys, "rewind", "team", "--to-seq", "2", "--reason", "undo",
                       "--store", store)
    assert code == 0 and "seq 5" in out
    code, _, err = cli(capsys, "rewind", "team", "--to-seq", "99", "--store", store)
    assert code != 0 and "to_seq" in err
    with eventlog.open(store) as log:
        assert [m.content for m in log.get_messages("team")] == ["one"]
        assert log.get_session("team-b").forked_from == ("team", 3)
        assert [m.content for m in log.get_messages("team-b")] == ["one", "two"]
        assert log.events("team").__next__().seq == 1 and log.get_session("team").last_seq == 5


def test_replay_export_and_import_keep_idempotency_keys(capsys: pytest.CaptureFixture[str],
                                                        store: Path, tmp_path: Path) -> None:
    with eventlog.open(store) as log:
        log.create_session("k")
        log.append("k", "tool.call", {"n": 1}, idempotency_key="call-1")
    code, out, _ = cli(capsys, "replay", "k", "--store", store)
    assert code == 0 and '"key":"call-1"' in out.splitlines()[1]
    assert cli(capsys, "export", "k", "-o", tmp_path / "k.jsonl", "--store", store)[0] == 0
    assert cli(capsys, "import", tmp_path / "k.jsonl", "--session", "k2", "--store", store)[0] == 0
    with eventlog.open(store) as log:
        assert list(log.events("k2")) == list(log.events("k"))
        assert [e.key for e in log.events("k2")] == [None, "call-1"]
        assert log.append("k2", "tool.call", {"n": 1}, idempotency_key="call-1").seq == 2
