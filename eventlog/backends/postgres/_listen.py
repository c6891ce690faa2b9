"""Followers of a PostgreSQL store wake on ``LISTEN``/``NOTIFY``, not by polling.

One connection per backend (per process) listens on the store's channel, in a thread of
its own, and wakes the followers of a session when a notification names it. Appends
notify only while a follower holds a lease on the session (``sessions.watched``, see
``_statements``): a follower takes the lease before it reads the head, so an append
either sees the lease and notifies, or committed before the follower's read.

Notifications can be missed while the listening connection is down: each (re)connection
bumps an epoch, which wakes every follower to read its head again.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

from ._pool import Conn, Connections, _inherited

_SLICE = 0.25  # how often the listening thread looks whether it should stop


def channel(schema: str) -> str:
    return ("eventlog_" + schema)[:63]  # a longer name would be cut by the server


class Listener:
    """The listening connection and the followers waiting on it."""

    def __init__(self, connections: Connections, schema: str) -> None:
        self._connections = connections
        self.channel = channel(schema)
        self._cond = threading.Condition()
        self._seen: dict[int, int] = {}  # gen -> notifications seen, for gens followed
        self._followers: dict[int, int] = {}  # gen -> followers waiting on it
        self._epoch = 0
        self._ready = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None
        self._pid = os.getpid()
        self._error: BaseException | None = None

    def start(self, timeout: float) -> None:
        """Start listening, if not yet; return once the server listens for us."""
        with self._cond:
            if self._pid != os.getpid():  # forked: the thread is the parent's
                if self._conn is not None:
                    _inherited.append(self._conn)
                self._thread, self._conn, self._ready = None, None, False
                self._pid = os.getpid()
                self._cond = threading.Condition()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="eventlog-listen", daemon=True)
                self._thread.start()
            if not self._cond.wait_for(lambda: self._ready or self._closed, timeout):
                raise psycopg.OperationalError(f"could not LISTEN within {timeout:g} s: {self._error}")

    def follow(self, gen: int) -> tuple[int, int]:
        """Count a follower of ``gen`` in; return the mark to ``wait`` from."""
        with self._cond:
            self._followers[gen] = self._followers.get(gen, 0) + 1
            return self._epoch, self._seen.get(gen, 0)

    def unfollow(self, gen: int) -> None:
        with self._cond:
            left = self._followers.get(gen, 0) - 1
            if left > 0:
                self._followers[gen] = left
            else:
                self._followers.pop(gen, None)
                self._seen.pop(gen, None)

    def mark(self, gen: int) -> tuple[int, int]:
        with self._cond:
            return self._epoch, self._seen.get(gen, 0)

    def wait(self, gen: int, mark: tuple[int, int], timeout: float) -> None:
        """Return once ``gen`` was notified (or the connection was remade) since ``mark``,
        or after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or (self._epoch, self._seen.get(gen, 0)) != mark, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                conn = self._connections.connect()
                with self._cond:
                    self._conn = conn
                try:
                    conn.execute(f'LISTEN "{self.channel}"')
                    with self._cond:
                        self._ready, self._epoch = True, self._epoch + 1
                        self._cond.notify_all()
                    delay = 0.05
                    while not self._closed:
                        for note in conn.notifies(timeout=_SLICE):
                            self._note(note.payload)
                finally:
                    if self._pid == os.getpid():
                        conn.close()
            except psycopg.Error as exc:
                with self._cond:
                    self._error = exc
                    self._ready, self._epoch = False, self._epoch + 1
                    self._cond.notify_all()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _note(self, payload: str) -> None:
        gen_text, _space, _rest = payload.partition(" ")
        try:
            gen = int(gen_text)
        except ValueError:
            return  # not ours: someone else NOTIFYing on the channel
        with self._cond:
            if gen in self._followers:
                self._seen[gen] = self._seen.get(gen, 0) + 1
                self._cond.notify_all()
