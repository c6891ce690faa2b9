"""``eventlog.open`` URLs for every backend, and ``SessionPersistence``'s storage types."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import eventlog
from eventlog.integrations._persistence import store_url


def kind(log: eventlog.EventLog) -> str:
    return type(log.backend).__name__


def test_paths_and_file_urls(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "a") as log:
        assert kind(log) == "FileBackend"
    with eventlog.open(f"file://{tmp_path}/b") as log:
        assert kind(log) == "FileBackend" and (tmp_path / "b").is_dir()
    with pytest.raises(eventlog.InvalidInputError, match="absolute"):
        eventlog.open("file://relative/x")


def test_sqlite_urls_follow_sqlalchemys_slashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with eventlog.open("sqlite:///relative.db") as log:
        assert kind(log) == "SQLiteBackend"
    assert (tmp_path / "relative.db").is_file()
    with eventlog.open(f"sqlite:///{tmp_path}/abs.db") as log:  # sqlite:////tmp/...: four slashes
        assert kind(log) == "SQLiteBackend"
    assert (tmp_path / "abs.db").is_file()
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///x.db?timeout=3"):
        with pytest.raises(eventlog.InvalidInputError):
            eventlog.open(bad)


def test_memory_urls() -> None:
    with eventlog.open("memory://") as log:
        assert kind(log) == "MemoryBackend"
    for bad in ("memory://a/b", "memory://.x", "memory://" + "x" * 200, "memory://a b"):
        with pytest.raises(eventlog.InvalidInputError):
            eventlog.open(bad)


@pytest.mark.parametrize("bad", [
    "redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/zero", "redis://127.0.0.1:6379/0/1",
    "redis://127.0.0.1:6379/0?nosuch=1", "redis://127.0.0.1:6379/0?prefix=a{b}",
    "redis://127.0.0.1:6379/0?ttl=soon", "redis://127.0.0.1:6379/0?ttl=-1",
    "redis://127.0.0.1:6379/0?replicas=one", "redis://127.0.0.1:6379/0?replicas=-1",
    "redis+cluster://127.0.0.1:6379/3", "redis+cluster://127.0.0.1:6379/0/1",
    "rediss+cluster://127.0.0.1:6379/0?nosuch=1", "redis+cluster://127.0.0.1:6379/0?prefix={x}",
])
def test_bad_redis_urls_are_refused_before_connecting(bad: str) -> None:
    pytest.importorskip("redis")
    with pytest.raises(eventlog.InvalidInputError):
        eventlog.open(bad)


def test_unknown_schemes_and_options() -> None:
    for bad in ("ftp://x/y", "mysql://db/x", ""):
        with pytest.raises(eventlog.InvalidInputError):
            eventlog.open(bad)
    with pytest.raises(eventlog.InvalidInputError, match="option"):
        eventlog.open("memory://", lock_timeout=1)


def test_session_persistence_storage_types(tmp_path: Path) -> None:
    assert store_url("json", "chat") == "chat"
    assert store_url("sqlite", "/var/lib/multichat/sessions") == \
        "sqlite:////var/lib/multichat/sessions/sessions.db"
    assert store_url("sqlite", "sessions") == "sqlite:///sessions/sessions.db"
    for name in ("x.db", "x.sqlite", "x.SQLITE3"):
        assert store_url("sqlite", f"/d/{name}") == f"sqlite:////d/{name}"
    assert store_url("sqlite", "sqlite:///given.db") == "sqlite:///given.db"
    assert store_url("memory") == store_url("memory", "/anything") == "memory://"
    assert store_url("memory", "memory://shared") == "memory://shared"
    assert store_url("redis") == "redis://127.0.0.1:6379/0"
    assert store_url("redis", "rediss://:pw@h:6380/2") == "rediss://:pw@h:6380/2"
    with pytest.raises(eventlog.InvalidInputError, match="URL"):
        store_url("redis", "/some/dir")
    url = "postgresql://u:pw@h:5433/db?schema=chat"
    assert store_url("postgresql", url) == url
    assert store_url("postgresql", "postgres://h/db") == "postgres://h/db"
    for bad in ("sessions", "/some/dir", "redis://h/0"):  # no default server: a URL is needed
        with pytest.raises(eventlog.InvalidInputError, match="URL"):
            store_url("postgresql", bad)
    with pytest.raises(eventlog.InvalidInputError, match="storage_type"):
        store_url("mongo")
    directory = tmp_path / "sessions"
    with eventlog.SessionPersistence(storage_type="sqlite", storage_path=str(directory)) as p:
        p.create_session("s")
    assert (directory / "sessions.db").is_file()
    with eventlog.SessionPersistence(storage_type="sqlite", storage_path=str(directory)) as p:
        assert [s.session_id for s in p.list_sessions()] == ["s"]
    with eventlog.SessionPersistence(storage_type="memory") as a, \
            eventlog.SessionPersistence(storage_type="memory") as b:
        a.create_session("s")
        assert b.list_sessions() == []
    assert os.path.exists(directory)


OUT_OF_RANGE = [10**400, float("inf"), float("nan"), -1, 2**31 + 1, "10", None, True]


def test_duration_and_mode_options_out_of_range_are_refused(tmp_path: Path) -> None:
    """lock_timeout, retry_for, ttl and mode took anything: ``ttl=inf`` and ``10**400`` raised
    OverflowError, NaN and negative timeouts were accepted (a NaN deadline never passes)."""
    stores = {"file": lambda: str(tmp_path / "files"),
              "sqlite": lambda: f"sqlite:///{tmp_path}/x.db"}
    options = {"file": ["lock_timeout", "mode"], "sqlite": ["lock_timeout", "mode"]}
    try:
        import redis  # noqa: F401
        stores["redis"] = lambda: "redis://127.0.0.1:1/0"  # refused before connecting
        options["redis"] = ["lock_timeout", "retry_for", "ttl"]
    except ImportError:  # pragma: no cover - the extra is not installed
        pass
    tried = 0
    for name, location in stores.items():
        for option in options[name]:
            for bad in OUT_OF_RANGE:
                if option == "mode" and bad == -1:
                    bad = 0o1000
                if option == "ttl" and bad is None:
                    continue  # no expiry: the default
                with pytest.raises(eventlog.InvalidInputError, match=option):
                    eventlog.open(location(), **{option: bad})
                tried += 1
    assert tried >= 2 * 2 * len(OUT_OF_RANGE)
    with eventlog.open(tmp_path / "ok", lock_timeout=0, mode=0o640) as log:  # the edges are fine
        log.create_session("s")


def test_postgresql_urls_are_checked_before_connecting() -> None:
    """Bad PostgreSQL URLs and options are refused at once, naming what is wrong, without
    a server (none answers on port 1)."""
    pytest.importorskip("psycopg")
    cases = [
        ("postgresql://127.0.0.1:1/db?schema=Bad-Name", "schema name"),
        ("postgresql://127.0.0.1:1/db?schema=", "schema name"),
        ("postgres://127.0.0.1:1/db?nosuch=1", "nosuch"),
        ("postgresql://127.0.0.1:99999/db", "[Pp]ort"),
    ]
    for url, why in cases:
        with pytest.raises(eventlog.InvalidInputError, match=why):
            eventlog.open(url)
    with pytest.raises(eventlog.InvalidInputError, match="pool_size"):
        eventlog.open("postgresql://127.0.0.1:1/db", pool_size=0)
    with pytest.raises(eventlog.InvalidInputError, match="option"):
        eventlog.open("postgresql://127.0.0.1:1/db", no_such_option=1)
    # A server that does not answer: a StorageError saying so, soon (not a hang).
    with pytest.raises(eventlog.StorageError, match=r"127\.0\.0\.1:1"):
        eventlog.open("postgresql://127.0.0.1:1/db", retry_for=0.5)
