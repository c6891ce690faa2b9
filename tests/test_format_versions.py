"""Record format versions: new stores write version 2, whose chain covers a hash of each
event's data; stores written in version 1 (fixtures made by the code of that time) stay
readable, verifiable and writable in version 1."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.core._codec import (
    FORMAT_VERSION,
    Head,
    chain_body,
    encode_payload,
    genesis,
    line_links,
    link,
    payload_chain,
    seal,
    seal_one,
)
from eventlog.core._records import keyed_event

from ._redis_support import delete_prefixed, shared_server

FIXTURES = Path(__file__).parent / "fixtures"


def v1_digest(prev: str, line: bytes) -> str:
    return hashlib.sha256(prev.encode() + line[:-40] + b"}").hexdigest()[:32]


def v2_digest(prev: str, line: bytes) -> str:
    """The README's version 2 rule, written out: the body with its data replaced by the
    JSON string of the data's SHA-256 (a tombstone's stated one)."""
    body = line[:-40] + b"}"
    start = body.index(b',"data":') + 8
    data = json.loads(line)["data"]
    stated = data.get("redacted", {}).get("sha256") if isinstance(data, dict) else None
    hashed = stated or hashlib.sha256(body[start:-1]).hexdigest()
    return hashlib.sha256(prev.encode() + body[:start] + b'"' + hashed.encode() + b'"}'
                          ).hexdigest()[:32]


def records(segment: Path) -> list[bytes]:
    return [line.rstrip(b" ") for line in segment.read_bytes().splitlines()
            if line.startswith(b'{"seq":')]


def chained(sid: str, lines: list[bytes], rule: object) -> bool:
    prev = genesis(sid).digest
    for line in lines:
        if rule(prev, line) != json.loads(line)["h"]:  # type: ignore[operator]
            return False
        prev = json.loads(line)["h"]
    return True


def fill(log: eventlog.EventLog, sid: str = "s1") -> None:
    log.create_session(sid, ["alice"])
    log.add_message(eventlog.ChatMessage(sender="alice", content="hello", session_id=sid))
    log.append(sid, "note", {"text": "custom", "n": [1, 2.5, None]})


def test_a_new_file_store_is_version_2_and_chains_by_the_data_hash(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "store") as log:
        fill(log)
        assert log.verify().ok
    assert json.loads((tmp_path / "store" / ".eventlog.json").read_bytes())["version"] == 2
    segment = tmp_path / "store" / "s1" / "seg-0000000000000001.jsonl"
    assert json.loads(segment.read_bytes().splitlines()[0])["eventlog"] == 2
    lines = records(segment)
    assert len(lines) == 3
    assert chained("s1", lines, v2_digest)
    assert not chained("s1", lines, v1_digest)


def test_a_new_sqlite_store_is_version_2(tmp_path: Path) -> None:
    with eventlog.open(f"sqlite:///{tmp_path / 'db'}") as log:
        fill(log)
        assert log.backend.record_version == 2
    db = sqlite3.connect(tmp_path / "db")
    assert dict(db.execute("SELECT key, value FROM eventlog_meta"))["version"] == "2"
    lines = [bytes(row[0]) for row in db.execute("SELECT line FROM events ORDER BY seq")]
    db.close()
    assert chained("s1", lines, v2_digest)


def test_the_memory_store_is_version_2() -> None:
    with eventlog.open("memory://") as log:
        fill(log)
        assert log.backend.record_version == FORMAT_VERSION == 2
        assert log.verify().ok


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_a_version_1_store_stays_readable_verifiable_and_version_1(tmp_path: Path, kind: str) -> None:
    if kind == "files":
        location = str(shutil.copytree(FIXTURES / "v1-files", tmp_path / "v1"))
    else:
        location = f"sqlite:///{shutil.copy(FIXTURES / 'v1.db', tmp_path / 'v1.db')}"
    with eventlog.open(location, create=False) as log:
        assert log.backend.record_version == 1
        assert [m.content for m in log.get_messages("s1")] == [f"secret number {i}" for i in range(5)]
        assert log.get_session("s1").participants == ["alice", "bob"]
        report = log.verify()
        assert report.ok and report.events_checked == 9
        # Appends, and new sessions, keep the store's version: it is never rewritten in place.
        log.add_message(eventlog.ChatMessage(sender="dave", content="later", session_id="s1"))
        fill(log, "s3")
        log.compact()
        assert log.verify().ok
        assert [m.content for m in log.get_messages("s1", limit=2)] == ["secret number 4", "later"]
        lines = {sid: [line.removesuffix(b" ") for _s, _n, line in log.backend.scan(sid, 0, None).lines
                       if line.startswith(b'{"seq":')] for sid in ("s1", "s3")}
    for sid, found in lines.items():
        assert chained(sid, found, v1_digest), sid
    # A version 1 store read by a version 2 reader would fail: the rules do differ.
    assert not chained("s1", lines["s1"], v2_digest)


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_idempotency_keys_are_version_2s_and_a_version_1_store_refuses_them(
        tmp_path: Path, kind: str) -> None:
    """The "k" member is format version 2's: a version 1 store must stay readable by the
    releases that wrote it, which take a record with six members for damage. So it refuses
    keys (appends, batches, imports and forks of keyed events) and writes nothing; message
    ids, which live in the data, stay idempotent there."""
    if kind == "files":
        location = str(shutil.copytree(FIXTURES / "v1-files", tmp_path / "v1"))
    else:
        location = f"sqlite:///{shutil.copy(FIXTURES / 'v1.db', tmp_path / 'v1.db')}"
    with eventlog.open(location, create=False) as log:
        before = list(log.events("s1"))
        with pytest.raises(eventlog.InvalidEventError, match="version 1"):
            log.append("s1", "tool.call", {"n": 1}, idempotency_key="call-1")
        with pytest.raises(eventlog.InvalidEventError, match="version 1"):
            log.append_many("s1", [("tool.call", {"n": 2})], idempotency_key="call-2")
        assert list(log.events("s1")) == before
        message = eventlog.ChatMessage(sender="alice", content="again", session_id="s1")
        assert log.add_message(message) == log.add_message(message)  # stored once
        assert log.get_session("s1").last_seq == before[-1].seq + 1
        keyed = [*before[:2], keyed_event(3, "tool.call", 1.0, {"n": 3}, "call-3")]
        with pytest.raises(eventlog.InvalidEventError, match="version 1"):
            log.import_events("copy", keyed)
        assert not log.session_exists("copy")
        assert all(len(orjson.loads(line)) == 5 for sid in log.backend.session_ids()
                   for _s, _n, line in log.backend.scan(sid, 0, None).lines
                   if line.startswith(b'{"seq":'))
        # A version 1 store written before keys were version 2's may hold keyed records:
        # they stay readable and verifiable, and a fork refuses to copy them.
        payload = encode_payload("tool.call", 2.0, {"n": 4}, "call-4")
        log.backend.append("s1", lambda at: [seal_one(payload, at, 1 << 20, 1)], durable=False)
        assert list(log.events("s1"))[-1].key == "call-4"
        assert log.verify("s1").ok
        with pytest.raises(eventlog.InvalidEventError, match="version 1"):
            log.fork("s1", "f1")
        assert not log.session_exists("f1")
    with eventlog.open(tmp_path / "v2") as log:  # version 2 holds them
        log.create_session("s1", ["alice"])
        first = log.append("s1", "tool.call", {"n": 1}, idempotency_key="call-1")
        assert log.append("s1", "tool.call", {"n": 1}, idempotency_key="call-1") == first
        assert log.fork("s1", "f1").last_seq == 3


def test_a_store_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        fill(log)
    (store / ".eventlog.json").write_text('{"format":"eventlog-jsonl","version":3}')
    with pytest.raises(eventlog.StorageError, match="format version 3 is not supported"):
        eventlog.open(store)


def test_the_version_2_digest_covers_the_data_hash_not_the_data(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "store") as log:
        fill(log)
    line = records(tmp_path / "store" / "s1" / "seg-0000000000000001.jsonl")[1]
    prev = json.loads(records(tmp_path / "store" / "s1" / "seg-0000000000000001.jsonl")[0])["h"]
    body = line[:-40] + b"}"
    obj = json.loads(line)
    assert link(prev, body, 2) == obj["h"]
    data = orjson.dumps(obj["data"])
    # A tombstone that states the data's hash chains exactly as the data did ...
    tomb = orjson.dumps({"redacted": {"reason": "r", "seq": 9,
                                      "sha256": hashlib.sha256(data).hexdigest()}})
    assert link(prev, body.replace(data, tomb), 2) == obj["h"]
    assert chain_body(body.replace(data, tomb)) == chain_body(body)
    # ... and one stating any other hash, or data changed by one byte, does not.
    wrong = tomb.replace(hashlib.sha256(data).hexdigest().encode(), b"0" * 64)
    assert link(prev, body.replace(data, wrong), 2) != obj["h"]
    assert link(prev, body.replace(b"hello", b"hellO"), 2) != obj["h"]


# Data that tries to mislead a search for the data's end: members and strings spelling
# ``,"k":"`` (the key member's start), tombstones, and values ending in a string.
_TRICKY = st.sampled_from(['","k":"x', ',"k":"', '\\', '"}', 'k', '"data":', ""])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=8) | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["k", "data", "h", "x"]) | st.text(max_size=3), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(data=_JSON | st.builds(lambda reason, seq: {"redacted": {"reason": reason, "seq": seq,
                                                                 "sha256": "ab" * 32}},
                             st.text(max_size=4), st.integers(1, 9)),
       key=st.none() | st.text(max_size=6) | _TRICKY, seq=st.integers(1, 10**6))
def test_sealing_finds_the_data_without_parsing(data: object, key: str | None, seq: int) -> None:
    """``payload_chain`` (the hot path's way to the data, by bytes) agrees with ``chain_body``
    (the careful way: parse, encode the members after the data again) and the README's rule."""
    payload = encode_payload("note", 1.5, data, key)
    body = b'{"seq":%d,' % seq + payload[1:]
    assert b'{"seq":%d,' % seq + payload_chain(payload) == chain_body(body)
    prev = genesis("s").digest
    record = seal_one(payload, Head(seq - 1, prev), 1 << 30, 2)
    assert record.line == body[:-1] + b',"h":"%s"}' % record.digest.encode()
    assert record.digest == link(prev, body, 2)
    if key is None:
        assert record.digest == v2_digest(prev, record.line)
    assert seal_one(payload, Head(seq - 1, prev), 1 << 30, 1).digest == v1_digest(
        prev, record.line)
    for version in (1, 2):  # a batch seals each payload as seal_one does
        one = seal_one(payload, Head(seq - 1, prev), 1 << 30, version)
        two = seal_one(payload, Head(seq, one.digest), 1 << 30, version)
        assert seal([payload, payload], Head(seq - 1, prev), 1 << 30, version) == [one, two]


_TOMBSTONE = st.builds(lambda reason, seq: {"redacted": {"reason": reason, "seq": seq,
                                                         "sha256": "ab" * 32}},
                      st.text(max_size=4), st.integers(1, 9))


@settings(max_examples=300, deadline=None)
@given(data=_JSON | _TOMBSTONE, key=st.none() | st.text(max_size=6) | _TRICKY,
       version=st.sampled_from([1, 2]), flip=st.integers(0, 10**6))
def test_line_links_agrees_with_link(data: object, key: str | None, version: int, flip: int) -> None:
    """``line_links`` (its quick way first) says yes exactly for the line ``link`` chains, and
    no once a byte of it changes."""
    payload = encode_payload("note", 1.5, data, key)
    prev = genesis("s").digest
    line = seal_one(payload, Head(6, prev), 1 << 30, version).line
    assert line_links(prev, line, version)
    assert not line_links(genesis("t").digest, line, version)
    at = flip % len(line)
    damaged = line[:at] + bytes([line[at] ^ 1]) + line[at + 1:]
    assert line_links(prev, damaged, version) == (
        link(prev, damaged[:-40] + b"}", version) == damaged[-34:-2].decode("ascii", "replace")
        and damaged[-40:-34] == b',"h":"')


def test_the_file_backends_append_chains_as_seal_one_does(tmp_path: Path) -> None:
    """The file backend's ``append_one`` finds a payload's data by itself (payload_chain,
    inlined for payloads without a key): every record it writes is ``seal_one``'s."""
    with eventlog.open(tmp_path / "store") as log:
        log.create_session("s1")
        head = None  # the head of the session as created, once the first append says it

        @settings(max_examples=300, deadline=None)
        @given(data=_JSON | _TOMBSTONE, key=st.none() | st.text(max_size=6) | _TRICKY)
        def check(data: object, key: str | None) -> None:
            nonlocal head
            payload = encode_payload("note", 1.5, data, key)
            after, before, _ = log.backend.append_one("s1", payload, 1 << 30, None, False)
            if head is not None:
                assert before == head
            assert after == seal_one(payload, before, 1 << 30, 2)[:2]
            head = after

        check()
        # Each record read back checks against the chain (verify would also object to the
        # tombstones of no redaction appended here, which the backend takes as they come).
        assert head is not None and [e.seq for e in log.events("s1")][-1] == head.seq > 1


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = shared_server()
    prefix = f"eventlog-test-redact-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_prefixed(client, prefix)
    client.close()


def test_redis_marks_a_new_store_version_2_and_reads_an_unmarked_one_as_version_1(
        redis_prefix: str) -> None:
    client = shared_server()
    url = f"redis://127.0.0.1:6379/0?prefix={redis_prefix}"
    with eventlog.open(url) as log:
        assert client.get(redis_prefix + "format") is None  # opening writes nothing
        fill(log)
        assert client.get(redis_prefix + "format") == b"2"
        assert log.verify().ok
    # A prefix that holds sessions and no marker was written before markers: version 1.
    client.delete(redis_prefix + "format")
    with eventlog.open(url) as log:
        assert log.backend.record_version == 1
    client.set(redis_prefix + "format", "7")
    with pytest.raises(eventlog.StorageError, match="format version"):
        eventlog.open(url)
    client.set(redis_prefix + "format", "1")
    with eventlog.open(url) as log:
        assert log.backend.record_version == 1
        fill(log, "old")
        assert log.verify("old").ok
    client.close()


def test_new_data_shaped_as_a_tombstone_is_refused() -> None:
    tomb = {"redacted": {"reason": "r", "seq": 3, "sha256": "0" * 64}}
    with eventlog.open("memory://") as log:
        fill(log)
        with pytest.raises(eventlog.InvalidEventError, match="tombstone"):
            log.append("s1", "note", tomb)
        with pytest.raises(eventlog.InvalidEventError, match="tombstone"):
            log.append_many("s1", [("note", 1), ("note", tomb)])
        # Only the exact shape is a tombstone: other data that mentions one is data.
        log.append("s1", "note", {"redacted": {"reason": "r"}})
        log.append("s1", "note", {"redacted": True, "other": 1})
        assert log.verify().ok and log.backend.last_seq("s1") == 5


def test_postgres_marks_a_new_store_version_2_and_reads_an_unmarked_one_as_version_1() -> None:
    """The schema's version (``version``, its tables) and the records' (``records``) are two
    keys of eventlog_meta: a store made before ``records`` existed is version 1, and stays it."""
    from . import _pg_support  # skips (fails under CI=true) without psycopg or a server
    made = _pg_support.Schemas()
    try:
        url = made.url(flush=False)
        schema = url.split("schema=", 1)[1].split("&", 1)[0]
        with eventlog.open(url) as log:
            assert log.backend.record_version == 2
            fill(log)  # the one-statement append, chained in SQL by version 2's rule
            assert log.verify().ok
        meta = {str(k): str(v) for k, v in made.conn.execute(
            f'SELECT key, value FROM "{schema}".eventlog_meta')}
        assert meta["records"] == "2"
        lines = [bytes(row[0]) for row in made.conn.execute(  # type: ignore[call-overload]
            f'SELECT e.line FROM "{schema}".events e JOIN "{schema}".sessions s ON s.gen = '
            "e.session WHERE s.id = 's1' ORDER BY e.seq")]
        assert chained("s1", lines, v2_digest) and not chained("s1", lines, v1_digest)
        # Unmarked: made before the key, version 1 (its digests don't verify as version 2).
        made.conn.execute(f"DELETE FROM \"{schema}\".eventlog_meta WHERE key = 'records'")
        with eventlog.open(url) as log:
            assert log.backend.record_version == 1
            assert not log.verify("s1").ok
            fill(log, "old")
            assert log.verify("old").ok
            with pytest.raises(eventlog.RedactionError, match="version 1"):
                log.redact("old", [2], reason="r")
        made.conn.execute(f"INSERT INTO \"{schema}\".eventlog_meta VALUES ('records', '7')")
        with pytest.raises(eventlog.StorageError, match="format version"):
            eventlog.open(url)
    finally:
        made.drop()
