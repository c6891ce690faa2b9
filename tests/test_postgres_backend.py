"""The PostgreSQL backend's own guarantees, beyond the store contract: the records are
byte for byte those of the other backends, opening creates nothing it was not asked to,
and an append lands exactly once whatever happens to its connection (its server process
ended before, during or after the commit; its reply lost; the server unreachable while it
retries), with other writers and compaction getting in between. Followers wake on NOTIFY.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage

from ._tcp_proxy import DroppingProxy

pg = pytest.importorskip("tests._pg_support", reason="psycopg is not installed")


@pytest.fixture(scope="module")
def schemas() -> Iterator[Any]:
    yield from pg.schemas()


@pytest.fixture
def proxy() -> Iterator[DroppingProxy]:
    proxy = DroppingProxy((pg.HOST, pg.PORT))
    yield proxy
    proxy.close()


def _lines(conn: Any, schema: str, sid: str) -> list[bytes]:
    return [bytes(r[0]) for r in conn.execute(
        f'SELECT e.line FROM "{schema}".events e JOIN "{schema}".sessions s ON e.session = s.gen '
        "WHERE s.id = %s ORDER BY e.seq", (sid,))]


def _tags(log: eventlog.EventLog, sid: str) -> list[Any]:
    events = list(log.events(sid))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert log.verify(sid).ok
    return [e.data.get("tag") if isinstance(e.data, dict) else None for e in events[1:]]


def test_records_are_byte_for_byte_those_of_the_other_backends(schemas: Any, tmp_path: Path) -> None:
    """The server chains the records (sha256() in SQL): the lines it stores are the very
    bytes the SQLite backend stores for the same calls, odd characters and all."""
    url = schemas.url()
    texts = ["plain", "é ü 中文 🙂", 'quotes " and \\ backslashes \\u0000', "\t\n\r", "x" * 3000]
    stored = []
    for where in (url, f"sqlite:///{tmp_path / 'same.db'}"):
        with eventlog.open(where) as log:
            log.create_session("s", participants=["a"], metadata={"ü": [1, 2.5, None]}, created_at=1e9)
            for i, text in enumerate(texts):
                log.add_message(ChatMessage(sender="a", content=text, session_id="s", id=f"m{i}",
                                            timestamp=1e9 + i, metadata={"n": i}))
            log.add_messages([ChatMessage(sender="b", content=t, session_id="s", id=f"b{i}",
                                          timestamp=2e9) for i, t in enumerate(texts)])
            stored.append([e for e in log.events("s")])
    assert stored[0] == stored[1]
    schema = url.split("schema=")[1]
    import sqlite3
    lite = [bytes(r[0]) for r in sqlite3.connect(tmp_path / "same.db").execute(
        "SELECT line FROM events ORDER BY seq")]
    assert _lines(schemas.conn, schema, "s") == lite and len(lite) == 1 + 2 * len(texts)


def test_open_without_create_makes_nothing_and_a_foreign_schema_needs_adopt(schemas: Any) -> None:
    schema = schemas.fresh()
    url = f"{pg.SERVER}?schema={schema}"
    found = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
    for _ in range(2):
        with pytest.raises(eventlog.StoreNotFoundError, match="no schema"):
            eventlog.open(url, create=False)
    assert schemas.conn.execute(found, (schema,)).fetchone()[0] == 0
    schemas.conn.execute(f'CREATE SCHEMA "{schema}"')
    schemas.conn.execute(f'CREATE TABLE "{schema}".theirs (x int)')
    with pytest.raises(eventlog.StoreNotFoundError, match="no eventlog tables"):
        eventlog.open(url, create=False)
    with pytest.raises(eventlog.StorageError, match="adopt=True"):
        eventlog.open(url)
    with eventlog.open(url, adopt=True) as log:
        log.create_session("s")
    with eventlog.open(url, create=False) as log:
        assert log.session_ids() == ["s"]
    clash = schemas.fresh()
    schemas.conn.execute(f'CREATE SCHEMA "{clash}"')
    schemas.conn.execute(f'CREATE TABLE "{clash}".events (x int)')
    with pytest.raises(eventlog.StorageError, match="already has tables named events"):
        eventlog.open(f"{pg.SERVER}?schema={clash}", adopt=True)


def test_many_processes_opening_a_new_store_at_once_make_it_once(schemas: Any) -> None:
    url = schemas.url()
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            with eventlog.open(url) as log:
                log.session_ids()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _backend_pids(conn: Any, schema: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE %s",
        (f'%"{schema}".%',))]


def test_a_server_process_ended_while_the_append_waits_for_the_lock(schemas: Any) -> None:
    """Ended before its commit: the append is sent again and lands once."""
    url = schemas.url()
    schema = url.split("schema=")[1]
    with eventlog.open(url) as log:
        log.create_session("s")
        log.append("s", "x", {"tag": "first"})
        holder = pg.psycopg.connect(pg.SERVER)  # not autocommit: holds the row lock
        holder.execute(f'SELECT 1 FROM "{schema}".sessions WHERE id = %s FOR UPDATE', ("s",))
        result: list[Any] = []
        writer = threading.Thread(target=lambda: result.append(log.append("s", "x", {"tag": "t"})))
        writer.start()
        deadline = time.monotonic() + 10
        waiting: list[Any] = []
        while not waiting and time.monotonic() < deadline:
            waiting = schemas.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (f'%"{schema}".sessions%',)).fetchall()
        assert waiting, "the append never queued on the session's row"
        schemas.conn.execute("SELECT pg_terminate_backend(%s, 5000)", (waiting[0][0],))
        holder.commit()
        holder.close()
        writer.join(30)
        assert [e.seq for e in result] == [3]
        assert _tags(log, "s") == ["first", "t"]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("keyed", [False, True])
def test_a_lost_request_or_reply_lands_once_with_others_between(
        schemas: Any, proxy: DroppingProxy, when: str, compact: bool, keyed: bool) -> None:
    """The connection drops before the append reaches the server, or after it committed
    (its reply lost); meanwhile another writer appends, and maybe compacts the session so
    that the append's record moves to the archive. The retry lands it, or finds it, once;
    with an idempotency key too (the guarded append: its check and append one step)."""
    schema = schemas.fresh()
    direct = f"{pg.SERVER}?schema={schema}"
    other = eventlog.open(direct)
    other.create_session("s")
    other.append("s", "pad", {"pad": "p" * 5000})  # over 4 KiB, so compaction works on it

    def meanwhile() -> None:
        for i in range(3):
            other.append("s", "x", {"tag": f"other-{i}"})
        if compact:
            other.compact("s")

    with eventlog.open(f"{pg.server_url(port=proxy.port)}?schema={schema}") as log:
        proxy.arm(b"the-tag", when, on_drop=meanwhile)
        log.append("s", "x", {"tag": "own"})  # the writer's own head, checked, before the others
        event = log.append("s", "x", {"tag": "the-tag"}, idempotency_key="the-tag" if keyed else None)
        assert proxy.dropped == 1
    tags = _tags(other, "s")
    assert tags.count("the-tag") == 1
    assert tags[event.seq - 2] == "the-tag"
    assert tags == ([None, "own", "the-tag", "other-0", "other-1", "other-2"] if when == "after" else
                    [None, "own", "other-0", "other-1", "other-2", "the-tag"])
    other.close()


def test_a_guarded_append_finds_what_other_writers_stored_after_its_checked_head(schemas: Any) -> None:
    """The guarded append looks through the events after the head its writer checked: an
    id or key another writer stored there is found (nothing written, the stored one
    returned), and a rewind among them, a compaction past them or more of them than it
    reads send the check back to the store, which sees what they change."""
    url = schemas.url(flush=False)
    with eventlog.open(url) as a, eventlog.open(url) as b:
        a.create_session("s")

        def message(mid: str, content: str = "same") -> ChatMessage:
            return ChatMessage(sender="u", content=content, session_id="s", id=mid)

        assert b.add_message(message("b0")).seq == 2  # b's window, at its own head
        assert a.add_message(message("m1")).seq == 3
        first = a.append("s", "x", {"tag": 1}, idempotency_key="k1")
        assert b.add_message(message("m1")).seq == 3
        assert b.append("s", "x", {"tag": 1}, idempotency_key="k1") == first
        # A rewind to a seq before an earlier rewind's brings back what that one hid: m2,
        # hidden at b's head, is visible again after a's second rewind (which b must not miss).
        assert a.add_message(message("m2")).seq == 5
        a.rewind("s", 4)
        assert b.add_message(message("b1")).seq == 7
        assert b.add_message(message("b1")).seq == 7  # b's window now at 7, m2 hidden there
        a.rewind("s", 5)
        assert b.add_message(message("m2")).seq == 5
        # Compacted away after b's head (the message long enough to be worth compacting).
        assert a.add_message(message("m3", "same" * 2000)).seq == 9
        assert a.compact("s").segments_archived
        assert b.add_message(message("m3", "same" * 2000)).seq == 9
        # Past what the statement reads through.
        assert a.add_message(message("m4")).seq == 10
        for _ in range(300):
            a.append("s", "pad")
        assert b.add_message(message("m4")).seq == 10
        assert b.add_message(message("m5")).seq == 311
        ids = [m.id for m in a.get_messages("s")]
        assert ids == ["b0", "m1", "m2", "m3", "m4", "m5"]
        assert len(list(a.events("s"))) == 311
        assert a.verify("s").ok


def test_a_batch_whose_reply_is_lost_lands_once(schemas: Any, proxy: DroppingProxy) -> None:
    schema = schemas.fresh()
    with eventlog.open(f"{pg.SERVER}?schema={schema}") as other:
        other.create_session("s")
        with eventlog.open(f"{pg.server_url(port=proxy.port)}?schema={schema}") as log:
            def meanwhile() -> None:
                other.append("s", "x", {"tag": "o"})

            proxy.arm(b"COMMIT", "after", on_drop=meanwhile)
            events = log.append_many("s", [("x", {"tag": "b0"}), ("x", {"tag": "b1"})])
            assert proxy.dropped == 1
        assert [e.seq for e in events] == [2, 3]
        assert _tags(other, "s") == ["b0", "b1", "o"]


def test_an_append_whose_fate_cant_be_learnt_says_so(schemas: Any, proxy: DroppingProxy) -> None:
    """The reply is lost and the server stays unreachable for longer than retry_for: a
    StorageError saying the append may or may not be stored; it is there once."""
    schema = schemas.fresh()
    with eventlog.open(f"{pg.SERVER}?schema={schema}") as other:
        other.create_session("s")
        with eventlog.open(f"{pg.server_url(port=proxy.port)}?schema={schema}", retry_for=0.5) as log:
            proxy.arm(b"lost", "after", on_drop=proxy.down)
            with pytest.raises(eventlog.StorageError, match="may or may not have been stored"):
                log.append("s", "x", {"tag": "lost"})
            proxy.up()
            log.append("s", "x", {"tag": "next"})  # the store works again once the server answers
        assert _tags(other, "s") == ["lost", "next"]


def test_server_processes_ended_at_random_during_appends(schemas: Any) -> None:
    """Every server process of the store is ended again and again while two threads append:
    before, during or after commits. Acknowledged appends are there once, at their seq;
    an append that raised is there at most once."""
    url = schemas.url()
    schema = url.split("schema=")[1]
    stop = threading.Event()
    ended = [0]

    def killer() -> None:
        killer_conn = pg.psycopg.connect(pg.SERVER, autocommit=True)
        while not stop.is_set():
            for pid in _backend_pids(killer_conn, schema):
                killer_conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                ended[0] += 1
            time.sleep(0.15)
        killer_conn.close()

    acked: dict[str, int] = {}
    unsure: set[str] = set()
    with eventlog.open(url) as log:
        log.create_session("s")

        def write(w: int) -> None:
            for i in range(40):
                tag = f"{w}-{i}"
                try:
                    acked[tag] = log.append("s", "x", {"tag": tag}).seq
                except eventlog.StorageError as exc:
                    assert "may or may not" in str(exc) or "nothing was written" in str(exc), exc
                    unsure.add(tag)

        thread = threading.Thread(target=killer)
        thread.start()
        writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        thread.join()
    with eventlog.open(url) as log:
        tags = _tags(log, "s")
    assert ended[0] > 0
    print(f"ended {ended[0]} server processes; {len(acked)} appends acknowledged, {len(unsure)} unsure")
    assert len(tags) == len(set(tags)), "an append was stored twice"
    for tag, seq in acked.items():
        assert tags[seq - 2] == tag
    assert set(tags) - set(acked) <= unsure


def test_follow_wakes_on_notify_not_by_polling(schemas: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the follower's periodic look stretched to a minute, it still gets an append
    from another store (another process's pool) at once: NOTIFY woke it."""
    from eventlog.backends.postgres import _backend
    monkeypatch.setattr(_backend, "_FOLLOW_SLICE", 60.0)
    url = schemas.url()
    with eventlog.open(url) as log, eventlog.open(url) as writer:
        log.create_session("s")
        got: list[Any] = []
        follower = threading.Thread(target=lambda: got.extend(
            e.seq for _, e in zip(range(2), log.follow("s", timeout=30), strict=False)))
        follower.start()
        time.sleep(0.5)  # the follower is waiting
        writer.append("s", "x", 1)
        time.sleep(0.2)
        writer.append("s", "x", 2)
        follower.join(10)
        assert not follower.is_alive(), "the follower was not woken"
        assert got == [2, 3]
        writer.delete_session("s")


def test_a_forked_child_uses_its_own_connections(schemas: Any) -> None:
    url = schemas.url()
    with eventlog.open(url) as log:
        log.create_session("s")
        log.append("s", "x", 1)
        pid = os.fork()
        if pid == 0:  # the child: its own pool; the parent's connections left alone
            code = 1
            try:
                log.append("s", "x", 2)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        log.append("s", "x", 3)  # the parent's connections still work
        assert [e.data for e in log.events("s")][1:] == [1, 2, 3]


def _record_lines(root: Path) -> list[bytes]:
    """Every record line of a file store, sessions by name, records in order (without the
    spaces the file backend may pad a line with: readers strip them, they are no record's)."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        lines += [line.rstrip(b" ") for line in path.read_bytes().split(b"\n")
                  if line.startswith(b'{"seq":')]
    return lines


def test_copy_file_to_postgresql_to_sqlite_to_file_is_byte_for_byte(schemas: Any, tmp_path: Path) -> None:
    from eventlog.cli._main import run
    source, back = tmp_path / "source", tmp_path / "back"
    with eventlog.open(source) as log:
        log.create_session("a", participants=["x"], metadata={"ü": "中文"})
        log.add_messages([ChatMessage(sender="x", content=f"m{i} 🙂", session_id="a") for i in range(30)])
        log.append("a", "custom.event", {"nested": [1, {"k": None}], "f": 2.5})
        log.create_session("b")
        log.append_many("b", [("x", i) for i in range(5)])
    url = schemas.url()
    for src, dst in ((source, url), (url, f"sqlite:///{tmp_path / 'mid.db'}"),
                     (f"sqlite:///{tmp_path / 'mid.db'}", back)):
        assert run(["copy", str(src), str(dst)]) == 0, (src, dst)
    assert _record_lines(back) == _record_lines(source) and len(_record_lines(source)) == 38


def _load_v1(schemas: Any) -> str:
    """A fresh schema holding ``fixtures/pg-v1.sql``: a store written by the eventlog of
    schema version 1 (see ``fixtures/make_pg_v1.py``)."""
    schema = schemas.fresh()
    text = (Path(__file__).parent / "fixtures" / "pg-v1.sql").read_text(encoding="utf-8")
    with schemas.conn.transaction():
        schemas.conn.execute(text.replace("@SCHEMA@", schema))
    return str(schema)


def test_a_version_1_store_is_migrated_on_open_and_works(schemas: Any) -> None:
    """A store made by the code of schema version 1 opens (migrated, in one transaction),
    reads, verifies, lists and appends, guarded appends included; without create=True it
    is refused, untouched."""
    schema = _load_v1(schemas)
    url = f"{pg.SERVER}?schema={schema}"
    version = f'SELECT value FROM "{schema}".eventlog_meta WHERE key = %s'
    with pytest.raises(eventlog.StoreNotFoundError, match="needs migrating"):
        eventlog.open(url, create=False)
    assert schemas.conn.execute(version, ("version",)).fetchone() == ("1",)
    with eventlog.open(url) as log:
        from eventlog.backends.postgres._schema import VERSION
        assert schemas.conn.execute(version, ("version",)).fetchone() == (str(VERSION),)
        assert log.session_ids() == ["alpha", "beta", "compacted", "user:42"]
        for sid in log.session_ids():
            assert log.verify(sid).ok
            assert [m.id for m in log.get_messages(sid)] == [f"{sid}-{i}" for i in range(6)]
        assert [s.session_id for s in log.list_sessions()] == ["alpha", "beta", "compacted", "user:42"]
        # The ids and keys stored by the old code still guard appends.
        with pytest.raises(eventlog.DuplicateMessageError, match="stored at seq 5"):
            log.add_message(ChatMessage(sender="Ann", content="again", session_id="beta", id="beta-3"))
        before = log.get_session("beta").last_seq
        assert log.append("beta", "note.added", {"i": 9}, idempotency_key="key-beta").seq == 8
        assert log.add_message(ChatMessage(sender="Ann", content="new", session_id="beta",
                                           id="beta-new")).seq == before + 1
        assert log.verify("beta").ok and log.verify("compacted").ok
        page = log.page_sessions(3, order="last_activity", descending=True)
        assert [s.session_id for s in page.sessions] == ["beta", "compacted", "user:42"]
        assert [s.session_id for s in log.page_sessions(3, page.next_cursor, order="last_activity",
                                                        descending=True).sessions] == ["alpha"]
    with eventlog.open(url, create=False) as log:
        assert log.get_messages("beta")[-1].id == "beta-new"


def test_a_page_by_activity_or_creation_reads_the_index(schemas: Any) -> None:
    """Over many sessions, every page of an ordered walk (the first, from a bound, after a
    cursor; either way round) is an index scan of the catalog's keys, not a scan and sort
    of every session: EXPLAIN says so, on tables of 20,000 sessions."""
    from eventlog.backends.postgres._catalog import page_statement

    url = schemas.url(flush=False)
    with eventlog.open(url) as log:
        backend = log.backend
        s = backend.quoted_schema  # type: ignore[attr-defined]
        conn = schemas.conn
        conn.execute(f"INSERT INTO {s}.sessions (id, seq, h, ctok) SELECT 's' || n, 1, 'h', 0 "
                     "FROM generate_series(1, 20000) AS n")
        conn.execute(f"INSERT INTO {s}.catalog SELECT gen, 1, '\\x00', id, gen * 1.5, gen * 2.5 "
                     f"FROM {s}.sessions")
        conn.execute(f"ANALYZE {s}.sessions")
        conn.execute(f"ANALYZE {s}.catalog")
        for order in ("last_activity", "created_at"):
            for descending in (False, True):
                for where in (None, "start", "after"):
                    text = page_statement(backend, order, descending, where)  # type: ignore[arg-type]
                    plan = "\n".join(r[0] for r in conn.execute(
                        f"EXPLAIN {text}", {"k": 100.0, "i": "s7", "n": 256}))
                    index = "catalog_by_activity" if order == "last_activity" else "catalog_by_created"
                    assert f"Index Scan{' Backward' if descending else ''} using {index}" in plan, plan
                    assert "Sort" not in plan, plan


def test_a_session_appended_to_elsewhere_takes_its_place_before_any_entry_is_saved(
        schemas: Any) -> None:
    """Every statement that moves a head marks the session, so a page by last_activity
    places it by its fold while its writer (here, still open: it saves entries at close)
    has saved none; an entry saved at its head clears the mark."""
    url = schemas.url(flush=False)
    schema = url.split("schema=")[1].split("&")[0]
    marked = f'SELECT count(*) FROM "{schema}".touched'
    with eventlog.open(url) as log:
        for k in range(5):
            log.create_session(f"s{k}", created_at=100.0 + k)
            log.add_message(ChatMessage(sender="a", content="x", session_id=f"s{k}", timestamp=200.0 + k))
    assert schemas.conn.execute(marked).fetchone() == (0,)
    with eventlog.open(url) as writer, eventlog.open(url) as reader:
        writer.add_message(ChatMessage(sender="a", content="y", session_id="s0", timestamp=300.0))
        writer.append_many("s1", [("x.y", {"i": 1})])
        assert schemas.conn.execute(marked).fetchone() == (2,)
        page = reader.page_sessions(2, order="last_activity", descending=True)
        assert [s.session_id for s in page.sessions] == ["s1", "s0"]  # s1's event is of now
        assert [s.session_id for s in reader.list_sessions(order="last_activity")] == [
            "s2", "s3", "s4", "s0", "s1"]
    assert schemas.conn.execute(marked).fetchone() == (0,)


def test_opening_makes_one_connection_and_the_first_read_uses_it(schemas: Any) -> None:
    """The store is checked on the pool's first connection, which then serves the first
    read: a fresh handle's first get_session waits for no connection (two were made
    before, the second by that read: most of its cold time)."""
    name = f"eventlog_open_{os.getpid()}_{time.monotonic_ns()}"
    url = f"{schemas.url(flush=False)}&application_name={name}"
    ours = "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s"
    with eventlog.open(url) as log:
        log.create_session("s")
    with eventlog.open(url) as log:
        after_open = schemas.conn.execute(ours, (name,)).fetchall()
        log.get_session("s")
        assert schemas.conn.execute(ours, (name,)).fetchall() == after_open
        assert len(after_open) == 1  # not two: the open waited for the pool's first
