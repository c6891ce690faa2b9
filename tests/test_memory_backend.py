"""What only the memory backend has: private and named stores, a condition instead of
polling, and what a fork() does to it."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import pytest

import eventlog
from eventlog import EventLog


def name() -> str:
    return f"memory://t-{uuid.uuid4().hex[:12]}"


def test_memory_url_is_a_private_store_every_time() -> None:
    with eventlog.open("memory://") as a, eventlog.open("memory://") as b:
        a.create_session("s")
        assert not b.session_exists("s")
    with eventlog.open("memory://") as c:
        assert c.list_sessions() == []


def test_a_named_store_is_shared_by_every_open_and_outlives_closing() -> None:
    url = name()
    with eventlog.open(url) as a, eventlog.open(url) as b:
        a.create_session("s")
        b.append("s", "x", 1)
        assert a.get_session("s").last_seq == 2
    with eventlog.open(url) as again:
        assert [e.data for e in again.events("s")][1:] == [1]
    with eventlog.open(name()) as other:
        assert not other.session_exists("s")


def test_wait_sleeps_on_the_condition_until_an_append() -> None:
    with eventlog.open(name()) as log:
        sid = log.create_session().session_id
        backend = log.backend
        assert backend.wait(sid, 1, 0.01) is False
        timer = threading.Timer(0.1, lambda: log.append(sid, "x", 1))
        timer.start()
        assert backend.wait(sid, 1, 10) is True
        timer.join()


def test_a_waiting_follower_learns_its_session_was_deleted() -> None:
    with eventlog.open(name()) as log:
        sid = log.create_session().session_id
        follower = log.follow(sid, timeout=None)
        threading.Timer(0.1, lambda: log.delete_session(sid)).start()
        with pytest.raises(eventlog.SessionNotFoundError):
            next(follower)


def _in_child(log: EventLog, sid: str) -> int:  # pragma: no cover - runs in the child
    signal.alarm(5)  # a lock inherited as held would hang here
    log.append(sid, "child", 1)
    return 0 if [e.type for e in log.events(sid)][-1] == "child" else 1


def test_a_forked_child_gets_a_copy_with_working_locks() -> None:
    with eventlog.open(name()) as log:
        sid = log.create_session().session_id
        data = log.backend._data  # type: ignore[attr-defined]
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with data.changed:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = _in_child(log, sid)
            finally:
                os._exit(code)
        release.set()
        holder.join()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert [e.type for e in log.events(sid)] == ["session.created"]  # process-local
