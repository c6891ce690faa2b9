"""Connections of the PostgreSQL backend: a pool per process, and the one error edge.

Reads are sent again when the connection breaks (for up to ``retry_for`` seconds). A write
whose connection broke may have committed with its reply lost, so it is not simply sent
again: its server process is first ended (``pg_terminate_backend``, waiting until it is
gone), after which its transaction has either committed or never will, and only then does
the write's ``again`` step run, which looks for the write's own token before writing. A
write whose fate can't be learnt within ``retry_for`` raises ``StorageError`` saying so.

A forked child must not use, nor close, the connections it inherited (closing one sends
the server a goodbye on the parent's socket): it leaves them be and opens its own pool.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from ...core._errors import EventLogError, LockTimeoutError, StorageError

T = TypeVar("T")
_inherited: list[object] = []  # pools a forked child must keep (unclosed) for its lifetime

# A server shutting down, starting up, or out of connections: worth trying again.
_TRANSIENT = (errors.AdminShutdown, errors.CrashShutdown, errors.CannotConnectNow,
              errors.TooManyConnections, psycopg_pool.PoolTimeout)


class Conn(psycopg.Connection[tuple[Any, ...]]):
    """A connection that knows its server process, so that it can be ended if a reply is lost."""

    server: tuple[int, Any] | None = None  # (pid, backend_start)


def _configure(conn: Conn) -> None:
    row = conn.execute("SELECT pg_backend_pid(), backend_start FROM pg_stat_activity "
                       "WHERE pid = pg_backend_pid()").fetchone()
    conn.server = None if row is None else (row[0], row[1])


class Connections:
    """A process's pool of autocommit connections to one server, with the retry rules."""

    def __init__(self, conninfo: str, where: str, *, size: int, retry_for: float,
                 lock_timeout: float) -> None:
        self.conninfo = conninfo
        self.where = where
        self.size = size
        self.retry_for = retry_for
        self.lock_timeout = lock_timeout
        self._pid = os.getpid()
        self._pool: psycopg_pool.ConnectionPool[Conn] | None = None
        self._local = threading.local()

    def _open(self) -> psycopg_pool.ConnectionPool[Conn]:
        # lock_timeout: a writer queued behind a session's row lock gives up, rather than
        # wait for ever behind a stuck one.
        return psycopg_pool.ConnectionPool(
            self.conninfo, connection_class=Conn, min_size=1, max_size=self.size,
            kwargs=self._kwargs(),
            # A wait for a connection is a fraction of retry_for, so that the retry loops get
            # to look again (and renew a pool stuck in its reconnect backoff: ``_unstick``).
            configure=_configure, timeout=max(0.05, self.retry_for / 4), num_workers=1, open=True,
            name=f"eventlog {self.where}")

    def _kwargs(self) -> dict[str, Any]:
        """Connection options beside the URL's: autocommit, and a lock_timeout added to the
        URL's own ``options`` (so that a writer queued behind a session's row lock gives up,
        rather than wait for ever behind a stuck one)."""
        given = conninfo_to_dict(self.conninfo).get("options") or ""
        options = f"{given} -c lock_timeout={max(1, round(self.lock_timeout * 1000))}".strip()
        return {"autocommit": True, "options": options,
                "connect_timeout": max(2, round(self.retry_for))}

    def _current(self) -> psycopg_pool.ConnectionPool[Conn]:
        if os.getpid() != self._pid:
            _inherited.append(self._pool)  # never closed: see the module notes
            self._pool, self._pid = None, os.getpid()
        if self._pool is None:
            self._pool = self._open()
        return self._pool

    def connect(self) -> Conn:
        """A connection of the caller's own (not pooled), e.g. for LISTEN."""
        conn = Conn.connect(self.conninfo, **self._kwargs())
        _configure(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled connection; inside another ``connection()`` of the same thread, that one.
        So a read made while a write holds its session's lock (the store's check of message
        ids runs under it) neither waits for a second connection (threads holding all of
        them, each waiting for the lock, would never give one back) nor misses the write's
        own transaction."""
        held: Conn | None = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self._current().connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def _unstick(self) -> None:
        """After an outage the pool reconnects on a backoff timer (1 s, 2 s, 4 s...), so it
        may have no connection for seconds after the server answers again, and every call
        with a shorter ``retry_for`` would fail. When a wait for a connection times out, the
        pool has failed to connect before, and a direct connection works, start a fresh
        pool (the old one is closed in the background; a connection in use elsewhere is
        closed when it is given back)."""
        pool = self._pool
        if pool is None or not pool.get_stats().get("connections_errors", 0):
            return  # this pool never failed to connect: busy, not stuck; the wait goes on
        try:
            self.connect().close()
        except psycopg.Error:
            return  # the server is still away
        if self._pool is pool:
            self._pool = None
            threading.Thread(target=pool.close, kwargs={"timeout": 0}, daemon=True).start()

    @contextlib.contextmanager
    def opening(self) -> Iterator[Conn]:
        """The connection a store is opened on: the pool's first, which then serves the
        calls after it (an open and its first read made two connections before: the
        better part of a cold read's time, issue 16), or, if the pool has none within its
        wait, one of its own, so that a server refusing us says why at once."""
        pool = self._current()
        try:
            # Waiting for its first connection (not asking for one, which would start a second).
            pool.wait(timeout=max(0.05, self.retry_for / 4))
        except psycopg_pool.PoolTimeout:  # wait() closed the pool: the next call opens one
            self._pool = None
            with self.connect() as conn:
                yield conn
            return
        with self.connection() as conn:
            yield conn

    def abandon(self) -> None:
        """Close the pool without waiting for a connection attempt in progress (opening
        failed: the server may be away)."""
        pool, self._pool = self._pool, None
        if pool is not None and os.getpid() == self._pid:
            threading.Thread(target=pool.close, kwargs={"timeout": 0}, daemon=True).start()

    def close(self) -> None:
        if os.getpid() == self._pid and self._pool is not None:
            self._pool.close()

    def _why(self, exc: BaseException) -> str:
        """What went wrong; for a pool that could not connect, why it could not."""
        if not isinstance(exc, psycopg_pool.PoolTimeout):
            return str(exc).strip()
        try:
            self.connect().close()
        except psycopg.Error as cause:
            return f"can't connect: {str(cause).strip()}"
        return str(exc).strip()

    # The error edge ----------------------------------------------------------------------

    def fail(self, what: str, exc: BaseException) -> EventLogError:
        """The typed error for a database error that is final."""
        if isinstance(exc, errors.LockNotAvailable):
            return LockTimeoutError(f"{self.where}: {what}: the session stayed locked by another "
                                    f"writer for {self.lock_timeout:g} s; nothing was written")
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return StorageError(f"{self.where}: {what}: no connection to the server within "
                                f"{self.retry_for:g} s ({exc})")
        return StorageError(f"{self.where}: {what}: {exc}")

    def _retrying(self, what: str) -> Iterator[float]:
        """Yields once per attempt, sleeping (with jitter) between them, until ``retry_for``
        has passed; the caller breaks out when an attempt succeeds."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.01
        yield delay
        while time.monotonic() + delay <= deadline:
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5)
            yield delay

    def run(self, what: str, call: Callable[[Conn], T]) -> T:
        """Run ``call``, again on a broken connection, for up to ``retry_for``: for reads, and
        for writes that may run twice (a second run finds the first done and changes nothing)."""
        last: BaseException | None = None
        for _ in self._retrying(what):
            try:
                with self.connection() as conn:
                    try:
                        return call(conn)
                    except psycopg.Error as exc:
                        if not (conn.broken or conn.closed or isinstance(exc, _TRANSIENT)):
                            raise self.fail(what, exc) from exc
                        last = exc
            except psycopg_pool.PoolTimeout as exc:
                last = exc
                self._unstick()
            except psycopg.OperationalError as exc:  # the pool's own connect failed
                last = exc
        assert last is not None
        raise StorageError(f"{self.where}: {what}: {self._why(last)} (still failing after "
                           f"{self.retry_for:g} s)") from last

    def write(self, what: str, first: Callable[[Conn], T], again: Callable[[Conn], T], *,
              unknown: str) -> T:
        """Run ``first``; if its connection broke before the reply, end its server process
        and run ``again`` (which must find the first's effect, if any, before writing)
        until one attempt's fate is known, for up to ``retry_for``. If none is known by
        then, raise ``StorageError`` ending with ``unknown`` (what the caller can do)."""
        server: tuple[int, Any] | None = None  # the process of an attempt of unknown fate
        sent = False
        last: BaseException | None = None
        for _ in self._retrying(what):
            try:
                with self.connection() as conn:
                    if server is not None:
                        if not self._end(conn, server):
                            continue
                        server = None  # gone: its transaction is over, one way or the other
                    try:
                        return (again if sent else first)(conn)
                    except psycopg.Error as exc:
                        if conn.broken or conn.closed:
                            if conn.server is None:  # can't happen: _configure names it
                                raise StorageError(f"{self.where}: {what}: the connection broke "
                                                   f"before the reply came; {unknown}") from exc
                            server, sent, last = conn.server, True, exc
                        elif isinstance(exc, _TRANSIENT):  # refused before it ran
                            last = exc
                        else:
                            raise self.fail(what, exc) from exc
            except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
                last = exc  # no connection: this attempt sent nothing
                if isinstance(exc, psycopg_pool.PoolTimeout):
                    self._unstick()
            except psycopg.Error as exc:  # ending the lost attempt's process failed
                raise StorageError(f"{self.where}: {what}: the connection broke before the reply "
                                   f"came, and ending its server process failed ({exc}); "
                                   f"{unknown}") from exc
        assert last is not None
        if not sent:
            raise StorageError(f"{self.where}: {what}: {self._why(last)} (still failing after "
                               f"{self.retry_for:g} s; nothing was written)") from last
        raise StorageError(f"{self.where}: {what}: the connection broke before the reply came "
                           f"({str(last).strip()}), and the server could not be asked within "
                           f"{self.retry_for:g} s; {unknown}") from last

    @staticmethod
    def _end(conn: Conn, server: tuple[int, Any]) -> bool:
        """End the server process of a broken connection; whether it is gone now."""
        pid, started = server
        row = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE pid = %s AND backend_start = %s", (pid, started)).fetchone()
        return row is None or bool(row[0])
