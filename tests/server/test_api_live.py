"""The live SSE stream: order, resume from Last-Event-ID, errors, and that follower threads stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

import eventlog
from eventlog.server import create_app

from .support import AUTH, TOKEN, iter_sse, running, sse_events


def _post_messages(client: httpx.Client, sid: str, *contents: str) -> None:
    r = client.post(f"/api/sessions/{sid}/messages", headers=AUTH,
                    json={"messages": [{"sender": "Ann", "content": c} for c in contents]})
    assert r.status_code == 201, r.text


def _stream(client: httpx.Client, sid: str, *, headers: dict[str, str] | None = None,
            **params: int) -> httpx.Response:
    request = client.build_request("GET", f"/api/sessions/{sid}/stream", params=params, headers=headers)
    return client.send(request, stream=True)


def _seqs(events: list[dict[str, str]]) -> list[int]:
    seqs = [orjson.loads(e["data"])["seq"] for e in events]
    assert seqs == [int(e["id"]) for e in events]  # the SSE id is the seq
    return seqs


def test_history_then_live(client: httpx.Client, sid: str) -> None:
    _post_messages(client, sid, "before")
    response = _stream(client, sid, after_seq=0)
    try:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        _post_messages(client, sid, "live 1", "live 2")
        events = sse_events(response, 4)
    finally:
        response.close()
    assert _seqs(events) == [1, 2, 3, 4]
    data = [orjson.loads(e["data"]) for e in events]
    assert data[0]["type"] == "session.created"
    assert [d["data"]["content"] for d in data[1:]] == ["before", "live 1", "live 2"]


def test_default_starts_from_now(client: httpx.Client, sid: str) -> None:
    _post_messages(client, sid, "old")
    response = _stream(client, sid)
    try:
        _post_messages(client, sid, "new")
        events = sse_events(response, 1)
    finally:
        response.close()
    assert _seqs(events) == [3]


def test_resume_from_last_event_id(client: httpx.Client, sid: str) -> None:
    _post_messages(client, sid, "a", "b")
    first = _stream(client, sid, after_seq=0)
    try:
        seen = _seqs(sse_events(first, 2))
    finally:
        first.close()
    _post_messages(client, sid, "c", "d")  # while nobody listens
    # The header wins over after_seq, as when EventSource reconnects to the same URL.
    again = _stream(client, sid, headers={"Last-Event-ID": str(seen[-1])}, after_seq=0)
    try:
        _post_messages(client, sid, "e")
        rest = _seqs(sse_events(again, 4))
    finally:
        again.close()
    assert seen + rest == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("headers", "params", "status"), [
    ({"Last-Event-ID": "abc"}, {}, 400), ({"Last-Event-ID": "-1"}, {}, 400), ({}, {"after_seq": "x"}, 400),
])
def test_bad_resume_points(client: httpx.Client, sid: str, headers: dict[str, str],
                           params: dict[str, str], status: int) -> None:
    r = client.get(f"/api/sessions/{sid}/stream", headers=headers, params=params)
    assert r.status_code == status and r.json()["error"] == "bad_request"


def test_head_of_a_stream_returns(client: httpx.Client, sid: str) -> None:
    r = client.head(f"/api/sessions/{sid}/stream")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")


def test_missing_session_is_404_not_a_stream(client: httpx.Client) -> None:
    r = client.get("/api/sessions/never-made/stream")
    assert r.status_code == 404 and r.json()["error"] == "session_not_found"
    r = client.get("/api/sessions/bad%09id/stream")  # a tab: no id holds one
    assert r.status_code == 422


def test_deleted_session_ends_the_stream(client: httpx.Client, sid: str) -> None:
    response = _stream(client, sid, after_seq=1)
    try:
        assert client.delete(f"/api/sessions/{sid}", headers=AUTH).status_code == 204
        events = sse_events(response, 1)
        assert events[0]["event"] == "eventlog-error"
        assert orjson.loads(events[0]["data"])["status"] == 404
        assert sse_events(response, 1) == []  # and then the stream ends
    finally:
        response.close()


# In-process servers, to look at the follower threads and to change the stream settings -------

def _followers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventlog-follow-")]


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[eventlog.EventLog]:
    with eventlog.open(tmp_path / "store") as log:
        log.create_session("live", participants=["Ann"])
        yield log


def _wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_disconnect_stops_the_follower_thread(app_log: eventlog.EventLog) -> None:
    app = create_app(app_log, token=TOKEN)
    app.state.eventlog.settings.follow_idle = 0.2
    before = len(_followers())
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        streams = [_stream(client, "live", after_seq=0) for _ in range(3)]
        for s in streams:
            assert len(sse_events(s, 1)) == 1
        assert len(_followers()) == before + 3
        assert app.state.streams.active and len(app.state.streams.active) == 3
        for s in streams:
            s.close()
        assert _wait_for(lambda: len(_followers()) == before), _followers()
        assert _wait_for(lambda: not app.state.streams.active)
        metrics = client.get("/metrics").text
        assert "eventlog_sse_streams 0" in metrics


def test_shutdown_ends_open_streams(app_log: eventlog.EventLog) -> None:
    app = create_app(app_log, token=TOKEN)
    before = len(_followers())
    with httpx.Client(timeout=10) as client:
        with running(app) as url:
            request = client.build_request("GET", f"{url}/api/sessions/live/stream",
                                           params={"after_seq": 0})
            response = client.send(request, stream=True)
            assert len(sse_events(response, 1)) == 1
            started = time.monotonic()
        # running() has stopped the server: the stream ended rather than holding shutdown up
        assert time.monotonic() - started < 5
        assert sse_events(response, 1) == []
        response.close()
    assert _wait_for(lambda: len(_followers()) == before)


def test_stream_limit_and_keepalive(app_log: eventlog.EventLog) -> None:
    app = create_app(app_log, token=TOKEN)
    settings = app.state.eventlog.settings
    settings.max_streams = 2
    settings.heartbeat = 0.2
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        one, two = _stream(client, "live"), _stream(client, "live")
        try:
            r = client.get("/api/sessions/live/stream")
            assert r.status_code == 503 and r.json()["error"] == "busy" and r.headers["retry-after"]
            lines = []
            for line in one.iter_lines():
                lines.append(line)
                if line.startswith(": keep-alive"):
                    break
            assert lines[0] == "retry: 2000"
        finally:
            one.close()
            two.close()


def test_slow_reader_gets_everything_in_order(app_log: eventlog.EventLog) -> None:
    """A client slower than the writers: the bounded queue holds the follower back, nothing is lost."""
    app = create_app(app_log, token=TOKEN)
    app.state.eventlog.settings.stream_queue = 3
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        response = _stream(client, "live", after_seq=1)
        try:
            for n in range(10):
                _post_messages(client, "live", *(f"{n}-{k}" for k in range(10)))
            seqs = []
            for event in iter_sse(response):
                seqs.append(orjson.loads(event["data"])["seq"])
                if len(seqs) == 100:
                    break
                if len(seqs) % 25 == 0:
                    time.sleep(0.1)
        finally:
            response.close()
    assert seqs == list(range(2, 102))


def test_follow_sees_a_delete_by_the_same_log(tmp_path: Path) -> None:
    """The server's case: one EventLog, a follower thread, and a request thread that deletes.
    The follower must get the not-found error, not a raw error from the handle closed under it."""
    with eventlog.open(tmp_path) as log:
        log.create_session("gone")
        failures: list[BaseException] = []

        def follow() -> None:
            try:
                for _ in range(50):
                    for _event in log.follow("gone", after_seq=1, timeout=0.1):
                        pass
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=follow)
        thread.start()
        time.sleep(0.3)
        log.delete_session("gone")
        thread.join(10)
    assert len(failures) == 1 and isinstance(failures[0], eventlog.SessionNotFoundError), failures


def test_a_stream_ends_when_its_session_is_created_again_between_idle_timeouts(
        app_log: eventlog.EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The follower thread resumes ``follow`` after every idle timeout; it must go on
    following the same life of the session, not pick up a new one made under the same id
    between two of its follows (where no wait of its own is running to notice)."""
    app = create_app(app_log, token=TOKEN)
    app.state.eventlog.settings.follow_idle = 0.1
    waiting, recreated = threading.Event(), threading.Event()
    real_wait = app_log.backend.wait

    def wait(session_id: str, after_seq: int, timeout: float | None, **kwargs: object) -> bool:
        if not recreated.is_set():
            # The idle timeout ends this follow; the session is made anew before the next.
            waiting.set()
            assert recreated.wait(10)
            return False
        return real_wait(session_id, after_seq, timeout, **kwargs)

    monkeypatch.setattr(app_log.backend, "wait", wait)
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        response = _stream(client, "live", after_seq=0)
        try:
            assert [orjson.loads(e["data"])["seq"] for e in sse_events(response, 1)] == [1]
            assert waiting.wait(10)
            app_log.delete_session("live")
            app_log.create_session("live", participants=["Bob"])
            for n in range(3):  # the new life grows past the stream's position
                app_log.append("live", "note", n)
            recreated.set()
            events = sse_events(response, 1)
            assert events[0]["event"] == "eventlog-error", events
            assert orjson.loads(events[0]["data"])["status"] == 404
        finally:
            response.close()
