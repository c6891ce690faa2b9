"""Redaction beyond the contract: version 1 stores, interrupted redactions, forged
tombstones, the checker, exports, and Redis's cold archive."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, RedactionError
from eventlog.cli._main import run

FIXTURES = Path(__file__).parent / "fixtures"
TOOL = Path(__file__).resolve().parents[1] / "tools" / "checkstore.py"


def checker() -> Any:
    spec = importlib.util.spec_from_file_location("checkstore_redaction", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fill(log: eventlog.EventLog, sid: str = "s") -> None:
    log.create_session(sid, ["A"])
    log.add_messages([ChatMessage(sender="A", content=f"secret {i}", session_id=sid)
                      for i in range(6)])


def test_a_version_1_store_refuses_redaction_and_says_why(tmp_path: Path) -> None:
    store = shutil.copytree(FIXTURES / "v1-files", tmp_path / "v1")
    with eventlog.open(store) as log:
        with pytest.raises(RedactionError, match="format version 1"):
            log.redact("s1", [2], reason="r")
        assert log.verify().ok


def test_the_checker_finds_a_redacted_store_sound_and_a_forged_tombstone_not(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        fill(log)
        log.redact("s", [3, 5], reason="erasure")
        log.compact("s")
    found = checker().check_file_store(store)
    assert found.problems == [] and found.version == 2
    database = tmp_path / "store.db"
    with eventlog.open(f"sqlite:///{database}") as log:
        fill(log)
        log.compact("s")
        log.redact("s", [2, 6], reason="erasure")
    found = checker().check_sqlite_store(database)
    assert found.problems == [] and found.version == 2
    # A tombstone put in by hand (with the right hash, so the chain checks) that no
    # redaction event names: both eventlog and the checker say so.
    with eventlog.open(store) as log:
        fill(log, "t")
        events = list(log.events("t"))
    segment = store / "t" / "seg-0000000000000001.jsonl"
    raw = segment.read_bytes()
    line = next(x for x in raw.splitlines() if b'"secret 2"' in x).rstrip(b" ")
    start = line.index(b',"data":') + 8
    data = line[start:-40]
    import hashlib
    tomb = json.dumps({"redacted": {"reason": "forged", "seq": 9,
                                    "sha256": hashlib.sha256(data).hexdigest()}},
                      separators=(",", ":")).encode()
    segment.write_bytes(raw.replace(line, line[:start] + tomb + line[-40:]))
    assert len(events) == 7
    with eventlog.open(store) as log:
        report = log.verify("t")
    assert not report.ok and "does not name" in report.problems[0]
    problems = checker().check_file_store(store).problems
    assert problems and "does not name" in problems[0]


def test_an_interrupted_redaction_is_reported_and_finished_by_running_it_again(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "store") as log:
        fill(log)

        def crash(*_args: object, **_kwargs: object) -> None:
            raise OSError("killed")

        original = log.backend.redact
        log.backend.redact = crash  # type: ignore[method-assign]
        with pytest.raises(OSError):
            log.redact("s", [2], reason="r")
        log.backend.redact = original  # type: ignore[method-assign]
        report = log.verify("s")
        assert not report.ok and "still holds its data" in report.problems[0]
        log.redact("s", [2], reason="r")
        assert log.verify("s").ok
        assert log.get_messages("s")[0].message_type == "redacted"


def test_export_carries_tombstones_and_import_verifies_them(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        fill(log)
        log.redact("s", [4], reason="gone")
    out = tmp_path / "s.jsonl"
    assert run(["--store", str(store), "export", "s", "-o", str(out)]) == 0
    assert b"secret 2" not in out.read_bytes() and b'"redacted"' in out.read_bytes()
    other = tmp_path / "other"
    assert run(["--store", str(other), "import", str(out), "--session", "copy"]) == 0
    assert run(["copy", str(other), str(tmp_path / "third")]) == 0
    capsys.readouterr()
    for location, sid in ((other, "copy"), (tmp_path / "third", "copy")):
        with eventlog.open(location, create=False) as log:
            assert log.verify().ok
            assert log.get_messages(sid)[2].message_type == "redacted"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    from ._redis_support import delete_prefixed, shared_server
    client = shared_server()
    prefix = f"eventlog-test-redact-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_prefixed(client, prefix)
    client.close()


def test_redis_redaction_reaches_the_cold_file_archive(tmp_path: Path, redis_prefix: str) -> None:
    cold = tmp_path / "cold"
    url = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}&archive={cold}"
    secret = f"SECRET-{uuid.uuid4().hex}"
    with eventlog.open(url) as log:
        log.create_session("s", ["A"])
        log.add_messages([ChatMessage(sender="A", content=f"{secret} " + "x" * 200, session_id="s")]
                         + [ChatMessage(sender="A", content="y" * 200, session_id="s")
                            for _ in range(60)])
        log.compact("s")
        log.compact("s")

        def cold_bytes() -> bytes:
            found = []
            for path in cold.rglob("*"):
                if path.is_file():
                    data = path.read_bytes()
                    found.append(gzip.decompress(data) if path.name.endswith(".gz") else data)
            return b"".join(found)

        assert secret.encode() in cold_bytes()
        log.redact("s", [2], reason="r")
        assert secret.encode() not in cold_bytes()
        assert log.verify().ok
        assert log.get_messages("s")[0].message_type == "redacted"


def test_the_redaction_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_redaction", TOOL.parent / "bench_redaction.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--events", "300", "--sessions", "5", "--stores", "file,sqlite,memory"]) == 0
    out = capsys.readouterr().out
    for store in ("file", "sqlite", "memory"):
        assert f"{store}: fill_s " in out and "redact_one_s" in out and "checkpoint_store_s" in out


def test_redis_copies_a_long_log_a_page_at_a_time(redis_prefix: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The log is copied in pages (the server is never blocked for long), the rest and the
    swap in one final script; entries appended between pages are kept."""
    from eventlog.backends.redis import _redaction, _scripts
    monkeypatch.setattr(_redaction, "_PAGE", 4)
    url = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"
    with eventlog.open(url) as log:
        fill(log)
        log.add_messages([ChatMessage(sender="A", content=f"later {i}", session_id="s")
                          for i in range(10)])
        calls: list[int] = []
        original = log.backend._redact_copy  # type: ignore[attr-defined]

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:  # another writer appends between two pages
                log.add_message(ChatMessage(sender="A", content="between", session_id="s"))
            return original(*args, **kwargs)

        log.backend._redact_copy = counted  # type: ignore[attr-defined]
        log.redact("s", [3, 15], reason="r")
        assert len(calls) >= 5 and _scripts.REDACT_COPY
        contents = [m.content for m in log.get_messages("s")]
        assert contents[1] == contents[13] == "" and contents[-1] == "between"
        assert contents[0] == "secret 0" and contents[12] == "later 6"
        assert log.verify().ok and log.backend.last_seq("s") == 19
        client = log.backend.client  # type: ignore[attr-defined]
        assert not client.exists(f"{redis_prefix}{{s}}:log:redacting")
        assert b"secret 1" not in b"".join(f[b"r"] for _i, f in client.xrange(f"{redis_prefix}{{s}}:log"))


@pytest.mark.parametrize("location", ["files", "sqlite"])
def test_keyed_events_chain_in_version_2_and_redact_keeping_their_key(tmp_path: Path,
                                                                      location: str) -> None:
    """Issue 17's idempotency key ("k", after data) is outside the data the chain hashes:
    string data and keyed events seal, read, redact and pass the checker."""
    url = str(tmp_path / "store") if location == "files" else f"sqlite:///{tmp_path / 'db'}"
    with eventlog.open(url) as log:
        fill(log)
        keyed = log.append("s", "tool.call", {"secret": "KEYED-SECRET"}, idempotency_key="call-1")
        plain = log.append("s", "note", "a string, ending in a quote")
        again = log.append("s", "tool.call", {"secret": "KEYED-SECRET"}, idempotency_key="call-1")
        assert again.seq == keyed.seq
        assert log.verify().ok
        log.redact("s", [keyed.seq, plain.seq], reason="r")
        assert log.verify().ok
        events = {e.seq: e for e in log.events("s")}
        assert "redacted" in events[keyed.seq].data and "redacted" in events[plain.seq].data
    check = checker()
    found = check.check_file_store(tmp_path / "store") if location == "files" else \
        check.check_sqlite_store(tmp_path / "db")
    assert found.problems == []
