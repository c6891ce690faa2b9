"""HTTP redaction (behind the token, only with allow_redact) and checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import eventlog
from eventlog import ChatMessage, Checkpoint
from eventlog.server import create_app

from .support import AUTH, TOKEN


@pytest.fixture
def log(tmp_path: Path) -> Iterator[eventlog.EventLog]:
    with eventlog.open(tmp_path / "store") as store:
        store.create_session("s", ["A"])
        store.add_messages([ChatMessage(sender="A", content=f"secret {i}", session_id="s")
                            for i in range(3)])
        yield store


def client(log: eventlog.EventLog, *, allow_redact: bool = False) -> TestClient:
    return TestClient(create_app(log, token=TOKEN, allow_redact=allow_redact),
                      base_url="http://127.0.0.1")


def test_redact_needs_allow_redact_and_the_token(log: eventlog.EventLog) -> None:
    body = {"seqs": [2], "reason": "erasure"}
    with client(log) as plain:
        # Without allow_redact the route does not exist at all.
        assert plain.post("/api/sessions/s/redact", json=body, headers=AUTH).status_code == 404
    with client(log, allow_redact=True) as http:
        assert http.post("/api/sessions/s/redact", json=body).status_code == 401
        bad = http.post("/api/sessions/s/redact", json={"seqs": [1], "reason": "x"}, headers=AUTH)
        assert bad.status_code == 422 and "session.created" in bad.json()["message"]
        assert http.post("/api/sessions/s/redact", json={"seqs": [2]},
                         headers=AUTH).status_code == 422
        done = http.post("/api/sessions/s/redact", json=body, headers=AUTH)
        assert done.status_code == 201, done.text
        assert done.json()["event"]["data"] == {"seqs": [2], "reason": "erasure"}
        messages = http.get("/api/sessions/s/messages").json()["messages"]
        assert messages[0]["message_type"] == "redacted" and messages[0]["content"] == ""
        assert http.get("/api/sessions/s/verify").json()["ok"]
    with pytest.raises(eventlog.InvalidInputError):
        create_app(log, token=None, read_only=True, allow_redact=True)


def test_checkpoints_over_http(log: eventlog.EventLog) -> None:
    with client(log) as http:
        one = http.get("/api/sessions/s/checkpoint")
        assert one.status_code == 200 and one.json()["seq"] == 4
        every = Checkpoint.from_json(http.get("/api/checkpoint").text)
        assert every.session_id is None and every.seq == 1
        assert http.get("/api/sessions/nobody/checkpoint").status_code == 404
    assert log.verify(checkpoint=every).ok
    assert log.verify(checkpoint=Checkpoint.from_json(one.text)).ok


def test_the_graph_leaves_a_redacted_message_out_of_its_pairs(log: eventlog.EventLog) -> None:
    """A redacted message has no sender: the graph counted it as sent by "None" (str(None)),
    and a graph read before the redaction kept counting it under its old sender."""
    log.create_session("g", ["A", "B"])
    log.add_message(ChatMessage(sender="A", recipient="B", content="hi", session_id="g"))
    card = log.add_message(ChatMessage(sender="B", content="my card 4111", session_id="g"))
    with client(log) as http:
        before = http.get("/api/sessions/g/graph").json()
        assert {(p["sender"], p["recipient"], p["count"]) for p in before["pairs"]} == {
            ("A", "B", 1), ("B", None, 1)}
        assert card.seq is not None
        log.redact("g", [card.seq], reason="erasure")
        after = http.get("/api/sessions/g/graph").json()
        assert after["pairs"] == [{"sender": "A", "recipient": "B", "count": 1}]
        assert after["participants"] == ["A", "B"]
        assert {t["type"]: t["count"] for t in after["types"]} == {
            "session.created": 1, "message": 2, "session.redacted": 1}
