"""``EventLog.search`` against a model: any paging (limits, scan budgets, cursors, either
order) walks exactly the hits a plain filter over every event finds, once each, in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import ChatMessage, Event, EventLog, SearchPage

NAMES = ["Ann", "Bob", "Çelik", "dana"]
WORDS = ["disk full", "DISK", "ok", "straße", "STRASSE", "tool", "é", ""]


@pytest.fixture(scope="module", params=["memory", "file"])
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[EventLog]:
    url = "memory://" if request.param == "memory" else str(tmp_path_factory.mktemp("search"))
    with eventlog.open(url, segment_max_events=7) if request.param == "file" else eventlog.open(url) as log:
        for n, sid in enumerate(["alpha", "beta", "gamma"]):
            log.create_session(sid, ["Ann"], {"n": n})
            for i in range(23 + 5 * n):
                sender = NAMES[(i + n) % 4]
                recipient = None if i % 3 == 0 else NAMES[(i + 1) % 4]
                if i % 5 == 4:
                    log.append(sid, "tool.result", {"out": WORDS[i % len(WORDS)], "i": i})
                elif i % 11 == 10:
                    log.add_participant(sid, f"Guest-{i}")
                else:
                    log.add_message(ChatMessage(sender=sender, recipient=recipient, session_id=sid,
                                                content=f"{WORDS[i % len(WORDS)]} #{i}",
                                                message_type="note" if i % 7 == 0 else "text"))
        yield log


def model(log: EventLog, query: str, sid: str | None, filters: dict[str, Any],
          after: int, before: int | None, descending: bool) -> list[tuple[str, int, tuple[str, ...]]]:
    """The expected hits, by a plain reading of the rules in the docstring."""
    needle = query.casefold()
    found = []
    for session in ([sid] if sid else log.session_ids()):
        for event in log.events(session):
            if event.seq <= after or (before is not None and event.seq >= before):
                continue
            fields = _model_match(event, needle, filters)
            if fields is not None:
                found.append((session, event.seq, fields))
    if descending:
        found.sort(key=lambda h: (h[0], h[1]), reverse=True)
    return found


def _model_match(event: Event, needle: str, filters: dict[str, Any]) -> tuple[str, ...] | None:
    data = event.data
    message = event.type == "message"
    if filters.get("types") is not None and event.type not in filters["types"]:
        return None
    wants_message = (filters.get("sender") is not None or filters.get("recipient") is not None
                     or filters.get("to_everyone"))
    if wants_message and (not message or (filters.get("sender") not in (None, data["sender"]))
                          or (filters.get("recipient") not in (None, data.get("recipient")))
                          or (filters.get("to_everyone") and data.get("recipient") is not None)):
        return None
    if not needle:
        return ()
    if message:
        values = [(k, data.get(k)) for k in ("content", "sender", "recipient", "message_type")]
    else:
        values = [("type", event.type), ("data", orjson.dumps(data).decode())]
    fields = tuple(k for k, v in values if isinstance(v, str) and needle in v.casefold())
    return fields or None


def walk(log: EventLog, query: str, *, page: int, budget: int | None, **kwargs: Any
         ) -> list[tuple[str, int, tuple[str, ...]]]:
    found: list[tuple[str, int, tuple[str, ...]]] = []
    cursor = None
    for _ in range(10_000):
        result: SearchPage = log.search(query, limit=page, cursor=cursor, scan_limit=budget, **kwargs)
        assert len(result.hits) <= page
        assert budget is None or result.events_scanned <= budget
        found += [(h.session_id, h.event.seq, h.fields) for h in result.hits]
        cursor = result.next_cursor
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.sampled_from([*WORDS, "#1", "ann", "NOTE", "tool.result", "guest", "zzz"]),
       sid=st.sampled_from([None, "alpha", "gamma"]),
       sender=st.sampled_from([None, *NAMES]), recipient=st.sampled_from([None, "Bob", "dana"]),
       to_everyone=st.booleans(), types=st.sampled_from([None, ["message"], ["tool.result"],
                                                          ["message", "session.participant_joined"]]),
       after=st.integers(0, 12), before=st.sampled_from([None, 5, 20, 100]),
       descending=st.booleans(), page=st.integers(1, 9), budget=st.sampled_from([None, 1, 4, 50]))
def test_any_paging_walks_exactly_the_model_hits(populated: EventLog, query: str, sid: str | None,
                                                  sender: str | None, recipient: str | None,
                                                  to_everyone: bool, types: list[str] | None,
                                                  after: int, before: int | None, descending: bool,
                                                  page: int, budget: int | None) -> None:
    if to_everyone:
        recipient = None
    filters = {"sender": sender, "recipient": recipient, "to_everyone": to_everyone, "types": types}
    ranged = {"after_seq": after, "before_seq": before} if sid else {}
    expected = model(populated, query, sid, filters, after if sid else 0, before if sid else None,
                     descending)
    got = walk(populated, query, page=page, budget=budget, session_id=sid, descending=descending,
               **filters, **ranged)
    assert got == expected


def test_a_hit_carries_the_whole_event(populated: EventLog) -> None:
    page = populated.search("disk full", session_id="beta", limit=1)
    hit = page.hits[0]
    assert hit.session_id == "beta" and hit.fields == ("content",)
    assert hit.event == next(e for e in populated.events("beta") if e.seq == hit.event.seq)
    assert isinstance(hit, eventlog.SearchHit)
    with pytest.raises(AttributeError):
        hit.fields = ()  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"query": 5}, "query"), ({"query": "x" * 1001}, "query"), ({"limit": 0}, "limit"),
    ({"limit": 10_001}, "limit"), ({"limit": True}, "limit"), ({"cursor": "nope"}, "cursor"),
    ({"cursor": 5}, "cursor"), ({"sender": ""}, "sender"), ({"recipient": 3}, "recipient"),
    ({"recipient": "Bob", "to_everyone": True}, "not both"), ({"types": "message"}, "types"),
    ({"types": [""]}, "types"), ({"after_seq": 3}, "session_id"), ({"session_id": "a\tb"}, "session id"),
    ({"session_id": "alpha", "before_seq": -1}, "before_seq"), ({"scan_limit": 0}, "scan_limit"),
    ({"descending": "yes"}, "descending"),
])
def test_bad_arguments_are_refused(populated: EventLog, kwargs: dict[str, Any], message: str) -> None:
    kwargs = dict(kwargs)
    query = kwargs.pop("query", "")
    with pytest.raises(eventlog.InvalidInputError, match=message):
        populated.search(query, **kwargs)


def test_a_cursor_is_for_the_search_that_made_it(populated: EventLog) -> None:
    cursor = populated.search("", session_id="alpha", limit=2).next_cursor
    assert cursor is not None
    with pytest.raises(eventlog.InvalidInputError, match="another order or session"):
        populated.search("", session_id="alpha", limit=2, cursor=cursor, descending=True)
    with pytest.raises(eventlog.InvalidInputError, match="another order or session"):
        populated.search("", session_id="beta", limit=2, cursor=cursor)


def test_a_missing_session_and_a_closed_store(tmp_path: Path) -> None:
    log = eventlog.open(tmp_path)
    with pytest.raises(eventlog.SessionNotFoundError):
        log.search("x", session_id="nope")
    assert log.search("x") == SearchPage((), None, 0)
    log.close()
    with pytest.raises(eventlog.StoreClosedError):
        log.search("x")


def test_a_backward_page_of_a_long_session_reads_one_window(tmp_path: Path) -> None:
    """Unfiltered pages backward from deep in a session are contiguous windows of seqs."""
    with eventlog.open("memory://") as log:
        log.create_session("long")
        log.append_many("long", [("tick", {"i": i}) for i in range(5000)])
        page = log.search("", session_id="long", before_seq=1200, descending=True, limit=100)
        assert [h.event.seq for h in page.hits] == list(range(1199, 1099, -1))
        assert page.events_scanned == 100
