"""What only the Redis backend has: its key layout, the idempotent append script, the
optimistic retry rules, TTL, the registry, and faults (dropped connections, a server
restarted mid-stream, passwords and TLS)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import eventlog
from eventlog import ChatMessage, Event, EventLog

from . import _redis_support
from ._redis_support import HOST, PORT, OwnServer, redis
from ._tcp_proxy import DroppingProxy

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def run_prefix() -> Iterator[str]:
    yield from _redis_support.run_prefix()


@pytest.fixture
def prefix(run_prefix: str) -> str:
    return f"{run_prefix}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def url(prefix: str) -> str:
    return f"redis://{HOST}:{PORT}/0?prefix={prefix}"


@pytest.fixture
def log(url: str) -> Iterator[EventLog]:
    with eventlog.open(url) as store:
        yield store


@pytest.fixture
def raw() -> Iterator[Any]:
    client = _redis_support.shared_server()
    yield client
    client.close()


def backend(log: EventLog) -> Any:
    from eventlog.backends.redis._backend import RedisBackend
    assert isinstance(log.backend, RedisBackend)
    return log.backend


def msg(sid: str, content: str = "hi") -> ChatMessage:
    return ChatMessage(sender="a", content=content, session_id=sid)


def seqs(log: EventLog, sid: str) -> list[int]:
    return [e.seq for e in log.events(sid)]


# Layout -------------------------------------------------------------------------------------

def test_keys_share_one_hash_tag_and_entry_ids_are_0_seq(log: EventLog, raw: Any, prefix: str) -> None:
    log.create_session("s1")
    log.add_messages([msg("s1", str(i)) for i in range(3)])
    keys = sorted(k.decode() for k in raw.scan_iter(match=prefix + "*"))
    catalog = f"{prefix}{{{prefix}catalog}}:"  # the catalog's order: one slot of its own
    assert keys == sorted([f"{prefix}format", f"{prefix}sessions", f"{prefix}{{s1}}:head",
                           f"{prefix}{{s1}}:log", catalog + "activity", catalog + "created",
                           catalog + "dirty"])  # s1 appended to since its entry was saved
    entries = raw.xrange(f"{prefix}{{s1}}:log")
    assert [e[0] for e in entries] == [b"0-1", b"0-2", b"0-3", b"0-4"]
    head = raw.hgetall(f"{prefix}{{s1}}:head")
    last_line = entries[-1][1][b"r"]
    assert int(head[b"seq"]) == 4 and head[b"h"] == last_line[-34:-2]  # the last record's digest
    assert raw.smembers(f"{prefix}sessions") == {b"s1"}
    # Redis itself refuses a duplicate or a regression of a seq.
    for entry_id in ("0-4", "0-2"):
        with pytest.raises(redis.ResponseError):
            raw.xadd(f"{prefix}{{s1}}:log", {"r": b"x"}, id=entry_id)


def test_records_are_the_file_backends_lines(log: EventLog, raw: Any, prefix: str,
                                             tmp_path: Path) -> None:
    history = [Event(1, "session.created", 1.5, {"participants": ["a"], "metadata": {}}),
               Event(2, "message", 2.5, {"id": "m1", "sender": "a", "recipient": None, "content": "x"}),
               Event(3, "tool.result", 3.5, {"hits": [1, 2]})]
    log.import_events("same", history)
    with eventlog.open(tmp_path / "files") as files:
        files.import_events("same", history)
    file_lines = [line.rstrip(b" ") for line in (tmp_path / "files" / "same").glob("seg-*.jsonl")
                  .__next__().read_bytes().splitlines() if line.startswith(b'{"seq":')]
    redis_lines = [fields[b"r"] for _id, fields in raw.xrange(f"{prefix}{{same}}:log")]
    assert redis_lines == file_lines and len(file_lines) == 3


# The append script ------------------------------------------------------------------------------

def test_resending_an_applied_append_reports_success_without_writing_again(log: EventLog) -> None:
    """The script's token check: the same write sent twice lands once."""
    sid = log.create_session().session_id
    store = backend(log)
    calls: list[Any] = []
    real = store._append

    def twice(keys: list[str], args: list[Any]) -> Any:
        first = real(keys=keys, args=args)
        calls.append(first)
        return real(keys=keys, args=args)  # as if the first reply had been lost

    store._append = twice
    event = log.append(sid, "x", 1)
    store._append = real
    assert [int(c[0]) for c in calls] == [0]
    assert event.seq == 2 and seqs(log, sid) == [1, 2]


@pytest.mark.parametrize("pinned", [False, True])
def test_an_append_whose_reply_is_lost_lands_once(url: str, prefix: str, pinned: bool) -> None:
    proxy = DroppingProxy((HOST, PORT))
    try:
        with eventlog.open(f"redis://{HOST}:{proxy.port}/0?prefix={prefix}") as log:
            sid = log.create_session().session_id
            log.append(sid, "x", 0)
            proxy.arm(b"EVALSHA", "after")  # the script runs; its reply never arrives
            event = log.append(sid, "x", 1, expected_seq=2 if pinned else None)
            assert proxy.dropped == 1
            assert event.seq == 3
            assert [(e.seq, e.data) for e in log.events(sid)][1:] == [(2, 0), (3, 1)]
            assert log.verify(sid).ok
    finally:
        proxy.close()


def test_an_append_whose_request_is_dropped_is_sent_again(prefix: str) -> None:
    proxy = DroppingProxy((HOST, PORT))
    try:
        with eventlog.open(f"redis://{HOST}:{proxy.port}/0?prefix={prefix}") as log:
            sid = log.create_session().session_id
            proxy.arm(b"EVALSHA", "before")  # the server never sees it
            assert log.add_message(msg(sid)).seq == 2
            assert proxy.dropped == 1
            assert seqs(log, sid) == [1, 2] and log.verify(sid).ok
    finally:
        proxy.close()


def test_a_connection_killed_during_an_append(prefix: str, raw: Any) -> None:
    """CLIENT KILL of this store's connections after it read the head, before it writes."""
    name = f"victim-{uuid.uuid4().hex[:8]}"
    with eventlog.open(f"redis://{HOST}:{PORT}/0?prefix={prefix}&client_name={name}") as log:
        sid = log.create_session().session_id
        store = backend(log)
        real = store._send_append
        killed: list[int] = []

        def kill_then_send(*args: Any) -> Any:
            for client in raw.client_list():
                if client.get("name") == name:
                    raw.client_kill_filter(_id=client["id"])
                    killed.append(int(client["id"]))
            return real(*args)

        store._send_append = kill_then_send
        log.append(sid, "x", 1)
        store._send_append = real
        assert killed
        assert seqs(log, sid) == [1, 2] and log.verify(sid).ok


def test_expected_seq_never_retries_but_plain_appends_rebuild(url: str) -> None:
    with eventlog.open(url) as log, eventlog.open(url) as other:
        sid = log.create_session().session_id
        log.append(sid, "x", 0)  # log now remembers the head (seq 2)
        store = backend(log)
        real = store._send_append
        sent: list[int] = []

        def racing(session_id: str, token: str, head: Any, records: Any) -> Any:
            sent.append(head.seq)
            if len(sent) == 1:
                other.append(sid, "other", len(sent))  # another writer gets in first
            return real(session_id, token, head, records)

        store._send_append = racing
        with pytest.raises(eventlog.ConflictError) as info:
            log.append(sid, "pinned", 1, expected_seq=2)
        assert (info.value.expected_seq, info.value.actual_seq) == (2, 3)
        assert sent == [2]  # one attempt, no second
        sent.clear()
        event = log.append(sid, "plain", 2)
        assert sent == [3, 4] and event.seq == 5  # rebuilt once on the moved head
        store._send_append = real
        assert [e.type for e in log.events(sid)] == ["session.created", "x", "other", "other", "plain"]


def test_a_moved_head_brings_what_the_id_check_reads_on(url: str) -> None:
    """Issue 16: a writer whose head moved sent again only after reading the log for its
    id check (under contention that read cost more than the retry); the script's answer
    now carries the lines since its base, so it reads nothing first, and still finds an
    id another writer stored in between."""
    with eventlog.open(url) as log, eventlog.open(url) as other:
        sid = log.create_session(participants=["A"]).session_id
        log.add_message(ChatMessage(sender="A", content="one", session_id=sid))  # log: head 2
        other.add_message(ChatMessage(sender="A", content="two", session_id=sid))
        other.add_message(ChatMessage(sender="A", content="three", session_id=sid))
        store = backend(log)
        reads: list[int] = []
        sends: list[int] = []
        real_send, real_read = store._send_append, store.read_rows

        def send(*args: Any) -> Any:
            sends.append(len(reads))
            return real_send(*args)

        def read(*args: Any, **options: Any) -> Any:
            reads.append(args[2])
            return real_read(*args, **options)

        with mock.patch.object(store, "_send_append", send), mock.patch.object(store, "read_rows", read):
            mine = log.add_message(ChatMessage(sender="A", content="four", session_id=sid))
            assert mine.seq == 5 and sends == [0, 0]  # sent again with nothing read first
            sends.clear()
            # Another writer stores a message (seq 6) that log then sends again on its
            # stale head (5): the answer's lines hold it, and nothing is written twice.
            theirs = other.add_message(ChatMessage(sender="A", content="five", session_id=sid))
            again = log.add_message(theirs)
            assert sends == [0]
        assert again.seq == theirs.seq == 6
        assert [m.content for m in log.get_messages(sid)] == ["one", "two", "three", "four", "five"]
        assert log.verify(sid).ok


def test_a_stale_remembered_head_is_not_a_conflict(url: str) -> None:
    with eventlog.open(url) as log, eventlog.open(url) as other:
        sid = log.create_session().session_id
        log.append(sid, "x", 0)  # remembers seq 2
        other.append(sid, "x", 1)  # seq 3, behind log's back
        assert log.append(sid, "x", 2, expected_seq=3).seq == 4
        with pytest.raises(eventlog.ConflictError):
            log.append(sid, "x", 3, expected_seq=3)
        assert seqs(log, sid) == [1, 2, 3, 4]


def test_endless_contention_is_bounded(url: str) -> None:
    with eventlog.open(url, lock_timeout=0.2) as log, eventlog.open(url) as other:
        sid = log.create_session().session_id
        store = backend(log)
        real = store._send_append

        def always_beaten(*args: Any) -> Any:
            other.append(sid, "other", None)
            return real(*args)

        store._send_append = always_beaten
        with pytest.raises(eventlog.LockTimeoutError) as info:
            log.append(sid, "mine", None)
        assert isinstance(info.value, TimeoutError) and "other writers" in str(info.value)
        store._send_append = real
        assert "mine" not in [e.type for e in log.events(sid)]


def test_head_and_log_disagreeing_is_corruption_and_nothing_is_written(log: EventLog, raw: Any,
                                                                        prefix: str) -> None:
    sid = log.create_session().session_id
    log.append(sid, "x", 1)
    raw.hset(f"{prefix}{{{sid}}}:head", "seq", 7)  # a head that claims more than the log holds
    backend(log)._heads.clear()
    with pytest.raises(eventlog.CorruptLogError):
        log.append(sid, "x", 2)
    assert raw.xlen(f"{prefix}{{{sid}}}:log") == 2
    assert not log.verify(sid).ok


# Sessions: registry, deletion, TTL, prefixes ------------------------------------------------------

def test_listing_skips_and_tidies_registered_ids_without_a_session(log: EventLog, raw: Any,
                                                                    prefix: str) -> None:
    log.create_session("real")
    raw.sadd(f"{prefix}sessions", "ghost")  # a creator that died before its script ran
    assert [s.session_id for s in log.list_sessions()] == ["real"]
    assert raw.smembers(f"{prefix}sessions") == {b"real"}


def test_verify_reports_a_session_missing_from_the_registry(log: EventLog, raw: Any,
                                                             prefix: str) -> None:
    log.create_session("s")
    raw.srem(f"{prefix}sessions", "s")
    report = log.verify("s")
    assert not report.ok and "registry" in report.problems[0]


def test_delete_removes_every_key_and_the_registry_entry(log: EventLog, raw: Any, prefix: str) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(5)])
    log.delete_session(sid)
    assert list(raw.scan_iter(match=f"{prefix}*")) == [f"{prefix}format".encode()]  # the store's marker
    assert log.create_session(sid).last_seq == 1


def test_ttl_is_applied_to_every_key_by_each_write(prefix: str, raw: Any) -> None:
    with eventlog.open(f"redis://{HOST}:{PORT}/0?prefix={prefix}&ttl=0.5", snapshot_every=2) as log:
        sid = log.create_session().session_id
        log.append_many(sid, [("x", 1), ("x", 2)])  # crosses a checkpoint: a snapshot too
        keys = [f"{prefix}{{{sid}}}:{k}" for k in ("head", "log", "snap")]
        assert all(0 < raw.pttl(key) <= 500 for key in keys)
        time.sleep(0.3)
        log.append(sid, "x", 3)  # a write renews the lease
        assert all(raw.pttl(key) > 300 for key in keys[:2])
        deadline = time.monotonic() + 5
        while log.session_exists(sid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not log.session_exists(sid)
        assert log.list_sessions() == []
        assert log.create_session(sid).last_seq == 1  # the id is free again


def test_prefixes_keep_stores_apart(prefix: str) -> None:
    with eventlog.open(f"redis://{HOST}:{PORT}/0?prefix={prefix}a:") as a, \
            eventlog.open(f"redis://{HOST}:{PORT}/0?prefix={prefix}b:") as b:
        a.create_session("same")
        assert not b.session_exists("same") and b.list_sessions() == []
        b.create_session("same")
        a.append("same", "x", 1)
        assert (a.get_session("same").last_seq, b.get_session("same").last_seq) == (2, 1)


def test_snapshots_keep_the_newest_three_and_the_oldest_of_each_spacing_and_never_outlive_their_session(
        url: str, raw: Any, prefix: str) -> None:
    with eventlog.open(url, snapshot_every=2) as log:
        sid = log.create_session().session_id
        for i in range(11):
            log.append(sid, "x", i)
        snap = f"{prefix}{{{sid}}}:snap"
        # the newest three, and the oldest of seqs 1..10,000 (see backends/_base.snapshot_seqs_dropped)
        assert sorted(int(k) for k in raw.hkeys(snap)) == [2, 8, 10, 12]
        assert log.get_session(sid).last_seq == 12
        backend(log).delete(sid)
        with pytest.raises(eventlog.SessionNotFoundError):
            backend(log).save_snapshot(sid, 14, b"x", durable=False)
        assert not raw.exists(snap)


# Following -------------------------------------------------------------------------------------

def test_wait_blocks_on_xread_until_another_store_appends(url: str) -> None:
    with eventlog.open(url) as log, eventlog.open(url) as other:
        sid = log.create_session().session_id
        assert backend(log).wait(sid, 1, 0.05) is False
        timer = threading.Timer(0.2, lambda: other.append(sid, "x", 1))
        timer.start()
        assert backend(log).wait(sid, 1, 10) is True
        timer.join()
        assert [e.data for e in log.follow(sid, after_seq=1, timeout=0)] == [1]


def test_a_follower_learns_its_session_was_deleted(url: str) -> None:
    with eventlog.open(url) as log:
        sid = log.create_session().session_id
        follower = log.follow(sid, timeout=None)
        threading.Timer(0.2, lambda: log.delete_session(sid)).start()
        with pytest.raises(eventlog.SessionNotFoundError):
            next(follower)


def test_a_forked_child_uses_the_parents_store(log: EventLog) -> None:
    sid = log.create_session().session_id
    log.append(sid, "parent", 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            log.append(sid, "child", 2)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.append(sid, "parent", 3)
    assert [e.type for e in log.events(sid)][1:] == ["parent", "child", "parent"]


# A server of our own: restarts, passwords, TLS ---------------------------------------------------

@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.stop()


def test_a_server_restart_gives_a_clear_error_and_the_retry_does_not_duplicate(
        aof_server: OwnServer) -> None:
    url = f"redis://{HOST}:{aof_server.port}/0"
    with eventlog.open(url, retry_for=0.3) as log:
        sid = log.create_session().session_id
        for i in range(5):
            log.append(sid, "x", i)
        aof_server.stop(signal.SIGKILL)  # a crash: appendfsync always kept every reply's write
        with pytest.raises(eventlog.StorageError) as info:
            log.append(sid, "x", 5)
        message = str(info.value)
        assert f"127.0.0.1:{aof_server.port}" in message and "appending to session" in message
        aof_server.start()
        log.append(sid, "x", 5)  # the caller's retry
        assert [e.data for e in log.events(sid)][1:] == [0, 1, 2, 3, 4, 5]
        assert seqs(log, sid) == list(range(1, 8)) and log.verify(sid).ok


def test_an_append_in_flight_during_a_restart_lands_once(aof_server: OwnServer) -> None:
    url = f"redis://{HOST}:{aof_server.port}/0"
    with eventlog.open(url, retry_for=20) as log:
        sid = log.create_session().session_id
        log.append(sid, "x", 0)
        aof_server.stop(signal.SIGTERM)
        results: list[Any] = []
        writer = threading.Thread(target=lambda: results.append(log.append(sid, "x", 1)))
        writer.start()
        time.sleep(0.3)  # the append is retrying against a server that is down
        aof_server.start()
        writer.join(30)
        assert [e.seq for e in results] == [3]
        assert [e.data for e in log.events(sid)][1:] == [0, 1] and log.verify(sid).ok


def test_a_follower_rides_out_a_restart(aof_server: OwnServer) -> None:
    url = f"redis://{HOST}:{aof_server.port}/0"
    with eventlog.open(url, retry_for=20) as log, eventlog.open(url, retry_for=20) as writer:
        sid = log.create_session().session_id
        follower = log.follow(sid, after_seq=1, timeout=20)
        writer.append(sid, "x", 0)
        assert next(follower).data == 0
        aof_server.stop(signal.SIGKILL)
        aof_server.start()
        for i in range(1, 4):
            writer.append(sid, "x", i)
        assert [next(follower).data for _ in range(3)] == [1, 2, 3]


def test_passwords_in_the_url(tmp_path: Path) -> None:
    server = OwnServer(tmp_path, "--requirepass", "s3cr/t").start()
    try:
        for url in (f"redis://:s3cr%2Ft@{HOST}:{server.port}/0",
                    f"redis://default:s3cr%2Ft@{HOST}:{server.port}/2"):
            with eventlog.open(url) as log:
                assert log.create_session("s").last_seq == 1
        started = time.monotonic()
        with pytest.raises(eventlog.StorageError) as info:
            eventlog.open(f"redis://:wrong@{HOST}:{server.port}/0")
        assert time.monotonic() - started < 2  # a bad password is not retried
        assert "password" in str(info.value).lower() or "auth" in str(info.value).lower()
    finally:
        server.stop()


def test_rediss_url_with_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = OwnServer(tmp_path, "--requirepass", "pw", "--tls-cert-file", str(cert),
                       "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                       "--tls-auth-clients", "no", tls=True)
    try:
        server.start()
    except AssertionError:
        pytest.skip("this redis-server has no TLS support")
    try:
        with eventlog.open(f"rediss://:pw@{HOST}:{server.port}/0?ssl_ca_certs={cert}") as log:
            assert log.create_session("tls").last_seq == 1
            assert log.session_exists("tls")
        with pytest.raises(eventlog.StorageError):  # plain text to a TLS port
            eventlog.open(f"redis://:pw@{HOST}:{server.port}/0", retry_for=0.2)
    finally:
        server.stop()


# Archive (compaction) ---------------------------------------------------------------------------

def archive(log: EventLog, sid: str) -> None:
    # These sessions are tiny (compaction leaves such sessions alone): archive them all the same.
    with mock.patch("eventlog.store._compaction.COMPACT_MIN_BYTES", 0):
        assert log.compact(sid).ok


def test_archiving_trims_the_log_but_keeps_the_heads_entry(log: EventLog, raw: Any, prefix: str) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(99)])
    archive(log, sid)
    assert [e[0] for e in raw.xrange(f"{prefix}{{{sid}}}:log")] == [b"0-100"]
    assert raw.xlen(f"{prefix}{{{sid}}}:arch") == 1
    assert int(raw.hget(f"{prefix}{{{sid}}}:head", "archived")) == 100
    assert log.append(sid, "x", 99).seq == 101  # the append script still finds the log's end
    assert [e.seq for e in log.events(sid)] == list(range(1, 102)) and log.verify(sid).ok


def test_a_lost_archive_is_reported_not_skipped(log: EventLog, raw: Any, prefix: str) -> None:
    sid = log.create_session().session_id
    log.append_many(sid, [("x", i) for i in range(20)])
    archive(log, sid)
    log.append(sid, "x", 20)
    raw.delete(f"{prefix}{{{sid}}}:arch")
    with pytest.raises(eventlog.CorruptLogError, match="archive"):
        list(log.events(sid))
    report = log.verify(sid)
    assert not report.ok and any("archive" in p for p in report.problems)


def test_a_file_tier_copy_lives_and_dies_with_its_session(prefix: str, tmp_path: Path) -> None:
    cold = tmp_path / "cold"
    with eventlog.open(f"redis://{HOST}:{PORT}/0?prefix={prefix}&archive={cold}") as log:
        sid = log.create_session().session_id
        log.append_many(sid, [("old", i) for i in range(30)])
        archive(log, sid)
        assert (cold / sid).is_dir()
        store = backend(log)
        store.cold.delete = lambda session_id: None  # a crash between the two deletes
        log.delete_session(sid)
        del store.cold.delete
        assert (cold / sid).is_dir()  # the earlier life's copy, left behind
        log.create_session(sid)
        log.append_many(sid, [("new", i) for i in range(10)])
        archive(log, sid)  # replaces it
        assert [e.type for e in log.events(sid)][1:] == ["new"] * 10 and log.verify(sid).ok
        log.delete_session(sid)
        assert not (cold / sid).exists()


@pytest.mark.parametrize("tier", ["stream", "file"])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_lost_reply_then_compaction_before_the_retry_lands_once(prefix: str, tmp_path: Path,
                                                                  tier: str, batch: int) -> None:
    """Issue 13, item 3. An append's reply is lost; before the retry, another writer appends
    and compaction moves the appended entry (and its token) to the archive. The retry's
    own-token check looked only in the log, missed it, and appended again: the same event
    at seq 3 and 5, verify ok. The archive script keeps the tokens of young entries where
    the check looks."""
    cold = f"&archive={tmp_path / 'cold'}" if tier == "file" else ""
    proxy = DroppingProxy((HOST, PORT))
    direct = f"redis://{HOST}:{PORT}/0?prefix={prefix}{cold}"
    try:
        with eventlog.open(f"redis://{HOST}:{proxy.port}/0?prefix={prefix}{cold}") as log, \
                eventlog.open(direct) as other:
            sid = log.create_session().session_id
            log.append(sid, "x", 0)  # seq 2
            store = backend(log)
            real = store._append
            interleaved: list[str] = []

            def reply_lost_then_others(keys: list[str], args: list[Any]) -> Any:
                if interleaved:
                    return real(keys=keys, args=args)  # the retry
                proxy.arm(b"EVALSHA", "after")  # this one runs, its reply never arrives
                try:
                    return real(keys=keys, args=args)
                except redis.ConnectionError:
                    # Between the lost reply and the retry: another writer, then compaction.
                    interleaved.append("other")
                    other.append(sid, "other", 1)
                    assert other.compact(sid).ok
                    raise

            store._append = reply_lost_then_others
            if batch == 1:
                stored = [log.append(sid, "mine", 1)]
            else:
                stored = log.append_many(sid, [("mine", k) for k in range(batch)])
            store._append = real
            assert interleaved and proxy.dropped == 1
            events = list(other.events(sid))
            assert [e.type for e in events] == ["session.created", "x", *["mine"] * batch, "other"]
            assert [e.seq for e in stored] == list(range(3, 3 + batch))
            assert other.verify(sid).ok
            assert log.append(sid, "after", 1).seq == 4 + batch
    finally:
        proxy.close()


def test_kept_tokens_are_bounded_and_go_with_their_session(log: EventLog, raw: Any, prefix: str) -> None:
    """The archive script keeps the tokens of the entries it trims in ``tok``, renames it to
    ``tok0`` once older than the keep time (dropping the one before), and delete removes both."""
    sid = log.create_session().session_id
    tok, tok0 = f"{prefix}{{{sid}}}:tok", f"{prefix}{{{sid}}}:tok0"

    def round_of_appends(tag: str) -> set[bytes]:
        for i in range(3):
            log.append(sid, tag, i)
        log.append(sid, "head", 0)  # the head's entry stays in the log, with its token
        archive(log, sid)
        return {k for k in raw.hkeys(tok) if k != b"~since"}

    first = round_of_appends("a")
    assert len(first) == 4  # seq 1 (created) and three single appends
    assert raw.pttl(tok) > 0
    raw.hset(tok, "~since", 1)  # as if the keep time had passed
    second = round_of_appends("b")
    assert {k for k in raw.hkeys(tok0) if k != b"~since"} == first
    assert second.isdisjoint(first) and len(second) == 4  # the old head, three appends
    raw.hset(tok, "~since", 1)
    round_of_appends("c")
    assert {k for k in raw.hkeys(tok0) if k != b"~since"} == second  # the first window is gone
    assert log.verify(sid).ok
    log.delete_session(sid)
    assert list(raw.scan_iter(match=f"{prefix}*")) == [f"{prefix}format".encode()]  # the store's marker


# The catalog's order (sorted sets, see _catalog) ---------------------------------------------

def _order(log: EventLog, limit: int, **query: Any) -> list[str]:
    found: list[str] = []
    cursor = None
    while True:
        page = log.page_sessions(limit, cursor, **query)
        found += [s.session_id for s in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            return found


def test_a_walk_through_ties_longer_than_its_reads_lists_each_session_once(
        log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventlog.backends.redis import _catalog
    monkeypatch.setattr(_catalog, "_CHUNK", 3)  # many reads, each ending inside a tie
    ids = [f"s{i:02d}" for i in range(23)]
    for i, sid in enumerate(ids):
        log.create_session(sid, created_at=1000.0 + i % 2)  # two scores, eleven and twelve ties
    expected = sorted(ids, key=lambda s: (1000.0 + int(s[1:]) % 2, s))
    for limit in (1, 4, 50):
        assert _order(log, limit, order="created_at") == expected
        assert _order(log, limit, order="created_at", descending=True) == expected[::-1]


def test_a_session_missing_from_the_sorted_sets_is_listed_and_put_back(
        log: EventLog, raw: Any) -> None:
    # A process killed between create's script and its step on the sorted sets.
    for i in range(3):
        log.create_session(f"s{i}", created_at=1000.0 + i)
    catalog = backend(log).catalog
    raw.zrem(catalog.created, "s1")
    raw.zrem(catalog.activity, "s1")
    assert _order(log, 2, order="created_at") == ["s0", "s1", "s2"]
    assert raw.zscore(catalog.created, "s1") == 1001.0  # rebuilt from the listing


def test_a_change_left_half_done_makes_the_next_ordered_read_rebuild(log: EventLog, raw: Any) -> None:
    # Sizes that agree can still hide a swap (one id missing, a dead one left): a create or
    # delete counts itself as pending until its step on the sorted sets is done.
    for i in range(3):
        log.create_session(f"s{i}", created_at=1000.0 + i)
    catalog = backend(log).catalog
    raw.zrem(catalog.created, "s1")
    raw.zrem(catalog.activity, "s1")
    raw.zadd(catalog.created, {"dead": 999.0})
    raw.zadd(catalog.activity, {"dead": 999.0})
    raw.incr(catalog.pending)
    assert _order(log, 2, order="created_at") == ["s0", "s1", "s2"]
    assert raw.zrange(catalog.created, 0, -1) == [b"s0", b"s1", b"s2"]
    assert raw.get(catalog.pending) is None


def test_a_member_whose_session_is_gone_is_skipped_and_removed(log: EventLog, raw: Any) -> None:
    # Expired (ttl), or deleted by a process killed before its step on the sorted sets.
    for i in range(3):
        log.create_session(f"s{i}", created_at=1000.0 + i)
    b = backend(log)
    raw.delete(*b.keys("s1"))
    assert _order(log, 5, order="created_at", descending=True) == ["s2", "s0"]
    assert raw.zrange(b.catalog.created, 0, -1) == [b"s0", b"s2"]
    assert log.count_sessions() == 2


def test_the_order_follows_appends_of_another_process_before_it_saves_its_entries(
        url: str, raw: Any) -> None:
    with eventlog.open(url) as first, eventlog.open(url) as other:
        for i in range(3):
            first.create_session(f"s{i}", created_at=1000.0 + i)
        assert _order(first, 2, order="last_activity", descending=True) == ["s2", "s1", "s0"]
        other.append("s0", "x.y", 1)  # stamped now: the newest activity; other's entry unsaved
        catalog = backend(first).catalog
        assert raw.smembers(catalog.dirty) == {b"s0"}  # marked by the append script's answer
        assert _order(first, 2, order="last_activity", descending=True) == ["s0", "s2", "s1"]
        assert raw.smembers(catalog.dirty) == set()  # the walk refolded it, and saved its place
        assert raw.zscore(catalog.activity, "s0") > 1002.0
        other.append("s0", "x.y", 2)
        assert raw.smembers(catalog.dirty) == {b"s0"}  # saved since: the next append marks again
