"""Fork, rewind and retried POSTs over HTTP (issue 17), against a real server process."""

from __future__ import annotations

import httpx

from .support import AUTH


def test_a_repeated_message_post_answers_200_and_stores_nothing(client: httpx.Client,
                                                                  sid: str) -> None:
    body = {"id": "retry-1", "sender": "Ann", "content": "hello"}
    first = client.post(f"/api/sessions/{sid}/messages", json=body, headers=AUTH)
    assert first.status_code == 201, first.text
    again = client.post(f"/api/sessions/{sid}/messages", json=body, headers=AUTH)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 2
    other = client.post(f"/api/sessions/{sid}/messages", headers=AUTH,
                        json={**body, "content": "changed"})
    assert other.status_code == 409 and "retry-1" in other.json()["message"]
    assert client.get(f"/api/sessions/{sid}").json()["last_seq"] == 2


def test_fork_and_rewind(client: httpx.Client, sid: str) -> None:
    for word in ("one", "two", "three"):
        r = client.post(f"/api/sessions/{sid}/messages", headers=AUTH,
                        json={"sender": "Ann", "content": word})
        assert r.status_code == 201
    r = client.post(f"/api/sessions/{sid}/rewind", headers=AUTH,
                    json={"to_seq": 3, "reason": "undo"})
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "session.rewound" and r.json()["seq"] == 5
    messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
    assert [m["content"] for m in messages] == ["one", "two"]
    r = client.post(f"/api/sessions/{sid}/fork", headers=AUTH,
                    json={"new_session_id": f"{sid}-f", "at_seq": 2})
    assert r.status_code == 201, r.text
    assert r.json()["forked_from"] == {"session_id": sid, "seq": 2}
    assert r.headers["location"] == f"/api/sessions/{sid}-f"
    assert client.get(f"/api/sessions/{sid}").json()["forked_from"] is None
    bad = client.post(f"/api/sessions/{sid}/rewind", headers=AUTH, json={"to_seq": 99})
    assert bad.status_code in (400, 422), bad.text
    taken = client.post(f"/api/sessions/{sid}/fork", headers=AUTH,
                        json={"new_session_id": f"{sid}-f"})
    assert taken.status_code == 409
    unauthorised = client.post(f"/api/sessions/{sid}/rewind", json={"to_seq": 1})
    assert unauthorised.status_code == 401
