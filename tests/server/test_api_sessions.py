"""Sessions, messages and events over HTTP, against a real server process on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import orjson
import pytest

from .support import AUTH, TOKEN


def _post(client: httpx.Client, path: str, body: object, **params: int) -> httpx.Response:
    return client.post(path, json=body, headers=AUTH, params=params)


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in r.text
    return dict(body)


# Creating and reading sessions -------------------------------------------------------------

def test_create_get_and_location(client: httpx.Client) -> None:
    r = _post(client, "/api/sessions", {"session_id": "create-1", "participants": ["A", "B"],
                                        "metadata": {"topic": "x"}, "created_at": 1000.5})
    assert r.status_code == 201
    assert r.headers["location"] == "/api/sessions/create-1"
    body = r.json()
    assert body["participants"] == ["A", "B"] and body["metadata"] == {"topic": "x"}
    assert body["created_at"] == 1000.5 and body["last_seq"] == 1 and body["message_count"] == 0
    assert body["size_bytes"] > 0 and body["verify"] is None
    got = client.get("/api/sessions/create-1").json()
    assert got["session_id"] == "create-1" and got["last_seq"] == 1


def test_create_without_id_makes_one(client: httpx.Client) -> None:
    r = _post(client, "/api/sessions", {})
    assert r.status_code == 201
    assert len(r.json()["session_id"]) == 32


def test_create_existing(client: httpx.Client, sid: str) -> None:
    _error(_post(client, "/api/sessions", {"session_id": sid}), 409, "session_exists")
    r = _post(client, "/api/sessions", {"session_id": sid, "exist_ok": True, "participants": ["Zed"]})
    assert r.status_code == 200
    assert r.json()["participants"] == ["Ann", "Bob"]  # the existing session, unchanged


@pytest.mark.parametrize("body", [
    {"session_id": "a\nb"}, {"session_id": "\x1b[2J"}, {"session_id": ""}, {"session_id": "a\tb"},
    {"session_id": "\u0085"}, {"session_id": "x" * 256}, {"session_id": "nul\u0000"},
    {"session_id": 5}, {"participants": "Ann"}, {"participants": {"Ann": 1}}, {"participants": 5},
    {"participants": ["Ann", "Ann"]}, {"participants": [""]}, {"participants": [1]},
    {"metadata": []}, {"metadata": {"big": 2**70}}, {"created_at": "yesterday"},
    {"created_at": True}, {"exist_ok": "yes"}, {"unknown": 1}, [], "text",
])
def test_create_refuses_bad_input(client: httpx.Client, body: object) -> None:
    before = client.get("/api/sessions", params={"limit": 1000}).json()["total"]
    _error(_post(client, "/api/sessions", body), 422, "invalid_input")
    assert client.get("/api/sessions", params={"limit": 1000}).json()["total"] == before


def test_get_missing_and_invalid(client: httpx.Client) -> None:
    _error(client.get("/api/sessions/no-such-session"), 404, "session_not_found")
    _error(client.get("/api/sessions/bad%20id"), 404, "session_not_found")  # valid (issue 15)
    _error(client.get("/api/sessions/.hidden"), 404, "session_not_found")
    _error(client.get("/api/sessions/bad%09id"), 422, "invalid_input")
    _error(client.get("/api/sessions/" + "x" * 256), 422, "invalid_input")


def test_list_paging_sorting_and_filter(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    for n, who in enumerate(["Alice", "Bert", "Carla"]):
        _post(client, "/api/sessions", {"session_id": f"list-{tag}-{n}", "participants": [who],
                                        "created_at": 1_000_000.0 + n})
    page = client.get("/api/sessions", params={"q": tag}).json()
    assert page["total"] == 3 and page["offset"] == 0 and page["limit"] == 100
    assert [s["session_id"] for s in page["sessions"]] == [f"list-{tag}-{n}" for n in (2, 1, 0)]
    by_id = client.get("/api/sessions", params={"q": tag, "sort": "session_id"}).json()
    assert [s["session_id"] for s in by_id["sessions"]] == [f"list-{tag}-{n}" for n in (0, 1, 2)]
    second = client.get("/api/sessions", params={"q": tag, "limit": 1, "offset": 1}).json()
    assert second["total"] == 3 and [s["session_id"] for s in second["sessions"]] == [f"list-{tag}-1"]
    # q matches participants too, in any case
    _post(client, f"/api/sessions/list-{tag}-0/messages", {"sender": f"Zora-{tag}", "content": "hi"})
    found = client.get("/api/sessions", params={"q": f"zora-{tag.upper()}"}).json()
    assert [s["session_id"] for s in found["sessions"]] == [f"list-{tag}-0"]
    assert found["sessions"][0]["size_bytes"] > 0


@pytest.mark.parametrize(("params", "status"), [
    ({"limit": "0"}, 400), ({"limit": "1001"}, 400), ({"limit": "x"}, 400), ({"limit": "-1"}, 400),
    ({"offset": "-3"}, 400), ({"limit": "1.5"}, 400), ({"sort": "size"}, 422), ({"q": "x" * 201}, 422),
])
def test_list_refuses_bad_query(client: httpx.Client, params: dict[str, str], status: int) -> None:
    r = client.get("/api/sessions", params=params)
    _error(r, status, "bad_request" if status == 400 else "invalid_input")


def test_delete(client: httpx.Client, sid: str) -> None:
    _error(client.delete(f"/api/sessions/{sid}"), 401, "unauthorized")
    r = client.delete(f"/api/sessions/{sid}", headers=AUTH)
    assert r.status_code == 204 and r.content == b""
    _error(client.get(f"/api/sessions/{sid}"), 404, "session_not_found")
    _error(client.delete(f"/api/sessions/{sid}", headers=AUTH), 404, "session_not_found")
    # the id can be used again
    assert _post(client, "/api/sessions", {"session_id": sid}).status_code == 201


# Auth and body handling -------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer",
                                    f"Bearer {TOKEN}x"])
def test_writes_need_the_token(client: httpx.Client, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/sessions", "/api/sessions/x/messages", "/api/sessions/x/events"):
        r = client.post(path, json={}, headers=headers)
        _error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_body_must_be_json(client: httpx.Client, sid: str) -> None:
    path = f"/api/sessions/{sid}/messages"
    _error(client.post(path, content=b"sender=x", headers={**AUTH, "Content-Type": "text/plain"}),
           415, "unsupported_media_type")
    _error(client.post(path, content=b"sender=x", headers=AUTH), 415, "unsupported_media_type")
    json_headers = {**AUTH, "Content-Type": "application/json"}
    for raw in (b"{", b'{"sender": "a", "content": NaN}', b'{"sender": "a", "content": "x", "sender": "b"}',
                b'{"sender": "a", "content": "x", "timestamp": 1e999}', b"[" * 100_000 + b"]" * 100_000,
                b"\xff\xfe"):
        _error(client.post(path, content=raw, headers=json_headers), 400, "bad_request")
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 1


def test_body_over_the_limit(client: httpx.Client, sid: str) -> None:
    big = b'{"sender": "a", "content": "' + b"x" * (16 << 20) + b'"}'
    headers = {**AUTH, "Content-Type": "application/json"}
    _error(client.post(f"/api/sessions/{sid}/messages", content=big, headers=headers), 413,
           "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for start in range(0, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]

    _error(client.post(f"/api/sessions/{sid}/messages", content=chunks(), headers=headers), 413,
           "body_too_large")
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 1


# Messages -------------------------------------------------------------------------------

def test_post_and_get_messages(client: httpx.Client, sid: str) -> None:
    r = _post(client, f"/api/sessions/{sid}/messages",
              {"sender": "Ann", "recipient": "Bob", "content": "hello", "id": "m-1", "timestamp": 1234.5,
               "message_type": "note", "metadata": {"k": [1, 2]}})
    assert r.status_code == 201
    body = r.json()
    assert body["last_seq"] == 2
    assert body["messages"] == [{"seq": 2, "id": "m-1", "sender": "Ann", "recipient": "Bob",
                                 "content": "hello", "timestamp": 1234.5, "message_type": "note",
                                 "metadata": {"k": [1, 2]}}]
    batch = _post(client, f"/api/sessions/{sid}/messages",
                  {"messages": [{"sender": "Bob", "content": f"m{n}"} for n in range(5)]}).json()
    assert [m["seq"] for m in batch["messages"]] == [3, 4, 5, 6, 7] and batch["last_seq"] == 7
    assert all(m["recipient"] is None and m["message_type"] == "text" for m in batch["messages"])

    def contents(**params: int) -> list[str]:
        r = client.get(f"/api/sessions/{sid}/messages", params=params)
        assert r.status_code == 200
        return [m["content"] for m in r.json()["messages"]]

    assert contents() == ["hello", "m0", "m1", "m2", "m3", "m4"]
    assert contents(limit=2) == ["m3", "m4"]
    assert contents(limit=2, before_seq=5) == ["m0", "m1"]
    assert contents(after_seq=5) == ["m3", "m4"]
    assert contents(after_seq=3, before_seq=6) == ["m1", "m2"]
    assert contents(limit=0) == []
    session = client.get(f"/api/sessions/{sid}").json()
    assert session["message_count"] == 6 and session["last_seq"] == 7


def test_expected_seq(client: httpx.Client, sid: str) -> None:
    path = f"/api/sessions/{sid}/messages"
    assert _post(client, path, {"sender": "Ann", "content": "a"}, expected_seq=1).status_code == 201
    body = _error(_post(client, path, {"sender": "Ann", "content": "b"}, expected_seq=1), 409, "conflict")
    assert body["current_seq"] == 2 and body["expected_seq"] == 1
    r = _post(client, path, {"messages": [{"sender": "Ann", "content": "c"}]}, expected_seq=2)
    assert r.status_code == 201 and r.json()["last_seq"] == 3
    _error(client.post(path, json={"sender": "A", "content": "x"}, headers=AUTH,
                       params={"expected_seq": "two"}), 400, "bad_request")


@pytest.mark.parametrize("body", [
    {"content": "no sender"}, {"sender": "Ann"}, {"sender": "", "content": "x"},
    {"sender": "Ann", "content": 5}, {"sender": "Ann", "content": "x", "recipient": ""},
    {"sender": "Ann", "content": "x", "timestamp": "now"}, {"sender": "Ann", "content": "x", "id": ""},
    {"sender": "Ann", "content": "x", "metadata": [1]}, {"sender": "Ann", "content": "x", "seq": 9},
    {"sender": "Ann", "content": "x", "session_id": "other"},
    {"sender": "Ann", "content": "x", "metadata": {"n": 2**64}}, {"messages": []},
    {"messages": [{"sender": "Ann", "content": "ok"}, {"sender": "Ann"}]},
    {"messages": {"sender": "Ann", "content": "x"}}, {"messages": [], "extra": 1}, [1], 7,
])
def test_bad_messages_change_nothing(client: httpx.Client, sid: str, body: object) -> None:
    _error(_post(client, f"/api/sessions/{sid}/messages", body), 422, "invalid_input")
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 1


def test_lone_surrogate_is_refused(client: httpx.Client, sid: str) -> None:
    raw = b'{"sender": "Ann", "content": "\\ud800"}'
    r = client.post(f"/api/sessions/{sid}/messages", content=raw,
                    headers={**AUTH, "Content-Type": "application/json"})
    _error(r, 422, "invalid_input")
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 1


def test_messages_of_missing_session(client: httpx.Client) -> None:
    _error(_post(client, "/api/sessions/nobody-here/messages", {"sender": "a", "content": "b"}), 404,
           "session_not_found")
    _error(client.get("/api/sessions/nobody-here/messages"), 404, "session_not_found")
    _error(client.get("/api/sessions/nobody-here/messages", params={"limit": 0}), 404,
           "session_not_found")


@pytest.mark.parametrize("params", [{"limit": "1001"}, {"limit": "-1"}, {"before_seq": "x"},
                                    {"after_seq": "1e3"}, {"after_seq": str(2**63)}])
def test_get_messages_refuses_bad_query(client: httpx.Client, sid: str, params: dict[str, str]) -> None:
    _error(client.get(f"/api/sessions/{sid}/messages", params=params), 400, "bad_request")


# Custom events and the NDJSON replay ------------------------------------------------------

def test_events_post_and_replay(client: httpx.Client, sid: str) -> None:
    one = _post(client, f"/api/sessions/{sid}/events", {"type": "tool.result", "data": {"hits": 3}})
    assert one.status_code == 201
    assert one.json()["events"][0]["seq"] == 2 and one.json()["events"][0]["data"] == {"hits": 3}
    many = _post(client, f"/api/sessions/{sid}/events",
                 {"events": [{"type": "a"}, {"type": "b:c/d", "data": [1, "x", None]}]}, expected_seq=2)
    assert [e["seq"] for e in many.json()["events"]] == [3, 4] and many.json()["last_seq"] == 4
    _post(client, f"/api/sessions/{sid}/messages", {"sender": "Ann", "content": "line\nbreak"})

    r = client.get(f"/api/sessions/{sid}/events")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in lines] == ["session.created", "tool.result", "a", "b:c/d", "message"]
    assert lines[3]["data"] == [1, "x", None] and lines[2]["data"] is None
    assert lines[4]["data"]["content"] == "line\nbreak"
    after = client.get(f"/api/sessions/{sid}/events", params={"after_seq": 3, "limit": 1}).content
    assert [orjson.loads(x)["seq"] for x in after.splitlines()] == [4]
    assert client.get(f"/api/sessions/{sid}/events", params={"after_seq": 99}).content == b""


@pytest.mark.parametrize("body", [
    {"type": "session.created"}, {"type": "message"}, {"type": "messages.x"}, {"type": ""},
    {"type": "has space"}, {"type": 5}, {"data": 1},
    {"type": "x", "data": {"deep": 2**64}}, {"type": "x", "extra": 1}, {"events": []},
    {"events": [{"type": "ok"}, {"type": "session.x"}]},
])
def test_bad_events_change_nothing(client: httpx.Client, sid: str, body: object) -> None:
    _error(_post(client, f"/api/sessions/{sid}/events", body), 422, "invalid_input")
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 1


def test_event_conflict_and_missing(client: httpx.Client, sid: str) -> None:
    _error(_post(client, f"/api/sessions/{sid}/events", {"type": "x"}, expected_seq=5), 409, "conflict")
    _error(_post(client, "/api/sessions/gone-x/events", {"type": "x"}), 404, "session_not_found")
    _error(client.get("/api/sessions/gone-x/events"), 404, "session_not_found")
    _error(client.get(f"/api/sessions/{sid}/events", params={"limit": "0"}), 400, "bad_request")


# Session ids as users write them (issue 15) ------------------------------------------------

ODD_IDS = ["user:42", "alice@example.com", "thread/123", "tenant 1", "é", "日本語", ".hidden", "..",
           "../x", "a\\b", "CON", "%2e%2e", "a?b#c", "x" * 255, "Team", "team", "\u202eevil"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_every_valid_id_works_percent_encoded_in_paths(client: httpx.Client, odd: str) -> None:
    sid = f"{odd}{uuid.uuid4().hex[:4]}" if len(odd) < 250 else odd[:-4] + uuid.uuid4().hex[:4]
    path = "/api/sessions/" + quote(sid, safe="")
    r = _post(client, "/api/sessions", {"session_id": sid, "participants": ["A"]})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == path and r.json()["session_id"] == sid
    assert client.get(path).json()["session_id"] == sid
    posted = _post(client, path + "/messages", {"sender": "A", "content": sid})
    assert posted.status_code == 201, posted.text
    assert [m["content"] for m in client.get(path + "/messages").json()["messages"]] == [sid]
    assert client.get(path + "/verify").json()["ok"] is True
    export = client.get(path + "/export", params={"format": "jsonl"})
    assert export.status_code == 200
    assert export.headers["content-disposition"].endswith(f"filename*=UTF-8''{quote(sid, safe='')}.jsonl")
    assert "/" not in export.headers["content-disposition"].split('"')[1]
    listed = client.get("/api/sessions", params={"prefix": sid, "limit": 5}).json()["sessions"]
    assert [s["session_id"] for s in listed] == [sid]


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_ids_work_in_the_query_form(client: httpx.Client, dots: str) -> None:
    """``.`` and ``..`` are dot segments: a browser resolves them (``%2E%2E`` too, per the URL
    standard), so ``/api/sessions/../graph`` reached ``/api/graph`` and the viewer could not
    open such a session. ``/api/session/{route}?session_id=`` is every route with the id in
    the query, and it is where ``Location`` points for these two ids."""
    created = _post(client, "/api/sessions", {"session_id": dots, "participants": ["A"]})
    assert created.status_code == 201, created.text
    where = f"/api/session?session_id={quote(dots, safe='')}"
    assert created.headers["location"] == where
    assert client.get(where).json()["session_id"] == dots
    one = {"session_id": dots}
    posted = client.post("/api/session/messages", params=one, json={"sender": "A", "content": "hi"},
                         headers=AUTH)
    assert posted.status_code == 201, posted.text
    page = client.get("/api/session/messages", params={**one, "limit": 5}).json()
    assert [m["content"] for m in page["messages"]] == ["hi"]
    assert client.get("/api/session/graph", params=one).json()["pairs"][0]["sender"] == "A"
    assert client.get("/api/session/events/2", params=one).json()["seq"] == 2
    assert client.get("/api/session/verify", params=one).json()["ok"] is True
    # The path form still serves a client that sends the segment as it is (httpx does).
    encoded = "/api/sessions/" + "%2E" * len(dots)
    assert client.get(encoded).json()["session_id"] == dots
    # Every other id works in the query form too, spaces written as + or %20.
    _post(client, "/api/sessions", {"session_id": "query form/1 2", "participants": ["A"]})
    for raw in ("query+form%2F1+2", "query%20form/1%202"):
        assert client.get(f"/api/session?session_id={raw}").json()["session_id"] == "query form/1 2"
    _error(client.get("/api/session/messages"), 400, "bad_request")
    _error(client.get("/api/session?session_id=a&session_id=b"), 400, "bad_request")
    _error(client.get("/api/session?session_id="), 400, "bad_request")
    _error(client.get("/api/session/nothing", params=one), 404, "not_found")
    said = str(_error(client.get("/api/session?session_id=%FF"), 422, "invalid_input")["message"])
    assert "not UTF-8" in said, said


def test_a_fork_points_to_the_new_session_encoded(client: httpx.Client) -> None:
    """The fork's ``Location`` was the new id unencoded: ``thread/2`` named no route, and an id
    beyond Latin-1 could not be a header at all (a 500)."""
    _post(client, "/api/sessions", {"session_id": "fork-src", "participants": ["A"]})
    for new in ("fork/2", "fork-日本"):
        forked = _post(client, "/api/sessions/fork-src/fork", {"new_session_id": new})
        assert forked.status_code == 201, forked.text
        assert forked.headers["location"] == "/api/sessions/" + quote(new, safe="")
        assert client.get(forked.headers["location"]).json()["session_id"] == new


def test_a_slash_in_an_id_is_one_segment_only_when_encoded(client: httpx.Client) -> None:
    _post(client, "/api/sessions", {"session_id": "thread"})
    _post(client, "/api/sessions", {"session_id": "thread/messages"})
    assert client.get("/api/sessions/thread%2Fmessages").json()["session_id"] == "thread/messages"
    assert "messages" in client.get("/api/sessions/thread/messages").json()  # thread's messages
    for not_utf8 in ("%FF%FE", "%ED%A0%80"):  # a byte no UTF-8 holds; an encoded surrogate
        said = str(_error(client.get(f"/api/sessions/{not_utf8}/messages"), 422, "invalid_input")["message"])
        # It named a NUL (the id it was mapped to), a character the client never sent.
        assert "not UTF-8" in said and not_utf8 in said, said
        assert "U+0000" not in said and "\\x00" not in said, said
    _error(client.get("/api/sessions/a%00b"), 422, "invalid_input")
