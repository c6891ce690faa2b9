"""``eventlog.open``: a path or URL to a store."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..backends._base import Backend
from ..core._errors import InvalidInputError
from ._log import EventLog

_STORE_OPTIONS = ("durability", "max_event_bytes", "snapshot_every")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_MEMORY_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_REDIS_OWN_QUERY = {"prefix": str, "ttl": float, "archive": str, "replicas": int}
FORMS = ("a path, file:///abs/path, sqlite:///relative.db, sqlite:////abs/path.db, memory://, "
         "memory://NAME, redis://[:password@]host:port/db, rediss://..., or "
         "redis+cluster://host:port (a Redis Cluster), "
         "postgresql://[user[:password]@]host[:port]/dbname[?schema=NAME]")


def open(url: str | os.PathLike[str], **options: Any) -> EventLog:
    """Open the store at ``url``, creating it if missing (unless ``create=False``).

    - a filesystem path, or ``file:///abs/path``: JSONL files (the default backend)
    - ``sqlite:///relative.db``, ``sqlite:////abs/path.db``: one SQLite database file
    - ``memory://``: a fresh private store in this process; ``memory://NAME``: the store of
      that name, shared by every open of it in this process
    - ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS): Redis Streams;
      query options ``prefix`` (key prefix, default ``eventlog:``) and ``ttl`` (seconds a
      session lives after its last write), ``archive`` (a directory: compacted records go
      to a file store there instead of staying in Redis), ``replicas`` (how many replicas must
      hold an append before it is acknowledged), besides redis-py's own (``socket_timeout``,
      ``ssl_ca_certs``...)
    - ``redis+cluster://[[user]:password@]host:port`` (``rediss+cluster://`` for TLS): the
      same on a Redis Cluster, reached through any of its nodes; ``replicas`` defaults to 1
    - ``postgresql://[user[:password]@]host[:port]/dbname`` (or ``postgres://``): tables in one
      schema, query option ``schema`` (default ``eventlog``), besides libpq's own (``sslmode``...)

    Store options: ``durability`` ("os" or "fsync"), ``max_event_bytes``,
    ``snapshot_every``; the rest go to the backend (files: ``mode``, ``lock_timeout``,
    ``segment_max_bytes``, ``segment_max_events``; SQLite: ``mode``, ``lock_timeout``,
    ``wal_max_bytes``;
    Redis: ``prefix``, ``ttl``, ``archive``, ``replicas``, ``lock_timeout``, ``retry_for``,
    ``client``; PostgreSQL: ``schema``, ``lock_timeout``, ``retry_for``, ``pool_size``, ``adopt``).
    A file store also takes ``adopt=True``, to make a store of a non-empty directory that
    holds none (without it, that is refused), and SQLite to add its tables to a database
    that holds other tables.

    ``create`` (default True): with ``create=False``, open only a store that exists: nothing
    is created, and a location holding no store raises ``StoreNotFoundError`` naming it
    (every backend honours it: see ``eventlog.backends._base``).
    """
    # ``create`` rides in ``options`` (not a typed keyword) so that callers passing a dict of
    # options (``**opts``) type-check as before.
    create = options.pop("create", True)
    store = {k: options.pop(k) for k in _STORE_OPTIONS if k in options}
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"store location must be a non-empty path or URL, not {url!r}")
    if type(create) is not bool:
        raise InvalidInputError(f"create must be True or False, not {create!r}")
    options["create"] = create
    backend = open_backend(url, options)
    try:
        return EventLog(backend, **store)
    except BaseException:
        backend.close()  # a bad store option: release what the backend holds (a pool)
        raise


def open_backend(url: str, options: dict[str, Any]) -> Backend:
    """The backend a store location names (see ``open``); ``options`` holds ``create``."""
    scheme, sep, rest = url.partition("://")
    windows_drive = len(scheme) < 2 and os.sep == "\\"
    if not sep or windows_drive or not _SCHEME_RE.fullmatch(scheme):
        return _build("file", _files_backend(url), url, **options)
    opener = _OPENERS.get(scheme.lower())
    if opener is None:
        raise InvalidInputError(f"{url!r}: unknown store scheme {scheme!r}; use {FORMS}")
    return opener(url, rest, options)


def _build(kind: str, factory: Callable[..., Backend], *args: Any, **kwargs: Any) -> Backend:
    try:
        return factory(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"unknown option for the {kind} store: {exc}") from None


def _files_backend(url: str) -> Callable[..., Backend]:
    # The file backend locks with POSIX flock (Linux, macOS, the BSDs): where the platform
    # has no fcntl module (Windows), say so here, before anything is touched, and name
    # the backends that work there, rather than fail with an ImportError deep inside.
    try:
        import fcntl  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            f"{url!r}: the file backend needs POSIX file locks (flock), which this platform "
            f"({sys.platform}) lacks; use sqlite:///path.db, memory:// or redis://") from None
    from ..backends.files._backend import FileBackend
    return FileBackend


def _no_query(url: str, rest: str) -> None:
    if "?" in rest or "#" in rest:
        raise InvalidInputError(f"{url!r}: this kind of store takes no URL query; pass options "
                                "as keyword arguments")


def _open_file(url: str, rest: str, options: dict[str, Any]) -> Backend:
    if not rest.startswith("/"):
        raise InvalidInputError(f"{url!r}: a file URL needs an absolute path (file:///abs/path)")
    return _build("file", _files_backend(url), rest, **options)


def _open_sqlite(url: str, rest: str, options: dict[str, Any]) -> Backend:
    # SQLAlchemy's convention: sqlite:/// + the path, so four slashes for an absolute one.
    if not rest.startswith("/") or len(rest) < 2:
        raise InvalidInputError(
            f"{url!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db (no host; for a "
            "store in memory use memory://)")
    _no_query(url, rest)
    from ..backends._sqlite import SQLiteBackend
    return _build("SQLite", SQLiteBackend, rest[1:], **options)


def _open_memory(url: str, rest: str, options: dict[str, Any]) -> Backend:
    if rest and not _MEMORY_NAME_RE.fullmatch(rest):
        raise InvalidInputError(f"{url!r}: a memory store's name is 1 to 128 ASCII letters, "
                                "digits, '.', '_' or '-' (memory://NAME), or nothing (memory://)")
    from ..backends._memory import MemoryBackend
    return _build("memory", MemoryBackend, rest or None, **options)


def _open_redis(url: str, rest: str, options: dict[str, Any]) -> Backend:
    try:
        from redis.connection import URL_QUERY_ARGUMENT_PARSERS

        from ..backends.redis._backend import RedisBackend
    except ImportError as exc:
        raise InvalidInputError(f"{url!r}: Redis stores need the redis package: "
                                "pip install 'eventlog[redis]'") from exc
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as exc:
        raise InvalidInputError(f"{url!r}: {exc}") from None
    cluster = parts.scheme.lower().endswith("+cluster")
    if cluster:  # redis-py's RedisCluster takes the plain scheme
        parts = parts._replace(scheme=parts.scheme.lower().removesuffix("+cluster"))
        options["cluster"] = True
        if parts.path not in ("", "/", "/0"):
            raise InvalidInputError(f"{url!r}: a Redis Cluster has only database 0 (no path, or /0)")
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        raise InvalidInputError(f"{url!r}: the path of a Redis URL is the database number (/0)")
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _REDIS_OWN_QUERY:
            try:
                options.setdefault(name, _REDIS_OWN_QUERY[name](value))
            except ValueError:
                raise InvalidInputError(f"{url!r}: bad value for {name}: {value!r}") from None
        elif name in URL_QUERY_ARGUMENT_PARSERS or name.startswith("ssl_") or name == "client_name":
            query.append((name, value))
        else:
            raise InvalidInputError(f"{url!r}: unknown Redis URL option {name!r}")
    server = urlunsplit(parts._replace(query=urlencode(query), fragment=""))
    return _build("Redis", RedisBackend, server, **options)


def _open_postgres(url: str, rest: str, options: dict[str, Any]) -> Backend:
    try:
        from ..backends.postgres._backend import PostgresBackend
    except ImportError as exc:
        raise InvalidInputError(f"{url!r}: PostgreSQL stores need psycopg 3 and its pool: "
                                "pip install 'eventlog[postgres]'") from exc
    parts = urlsplit(url)
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            options.setdefault("schema", value)
        else:
            query.append((name, value))  # libpq's own (sslmode...): libpq checks them
    # quote, not quote_plus: libpq reads no '+' as a space
    server = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote), fragment=""))
    return _build("PostgreSQL", PostgresBackend, server, **options)


_OPENERS: dict[str, Callable[[str, str, dict[str, Any]], Backend]] = {
    "file": _open_file,
    "sqlite": _open_sqlite,
    "memory": _open_memory,
    "redis": _open_redis,
    "rediss": _open_redis,
    "redis+cluster": _open_redis,
    "rediss+cluster": _open_redis,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}
