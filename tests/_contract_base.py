"""What every part of the conformance suite shares: how to get a store, and how to look at one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import eventlog
from eventlog import ChatMessage, ChatSession, Event, EventLog


class ContractBase:
    """A backend's test class fills in ``fresh_url`` and ``shared_between_processes``."""

    shared_between_processes: ClassVar[bool]
    """True if several processes can open the same URL and see one store."""

    missing_store_detectable: ClassVar[bool] = True
    """False where a store can't be told apart from nothing (Redis: a key prefix), so that
    ``open(url, create=False)`` opens an empty store there rather than raise."""

    storage_type: ClassVar[str] = "json"
    """``SessionPersistence(storage_type=...)`` for this backend."""

    def fresh_url(self) -> str:
        """The URL (or path) of a new, empty store; a different one on every call."""
        raise NotImplementedError

    def fresh_storage_path(self) -> str:
        """``SessionPersistence(storage_path=...)`` of a new, empty store of this backend."""
        return self.fresh_url()

    def need_processes(self) -> None:
        if not self.shared_between_processes:
            pytest.skip("this backend keeps its store inside one process")

    @pytest.fixture
    def url(self) -> str:
        return self.fresh_url()

    @pytest.fixture
    def log(self, url: str) -> Iterator[EventLog]:
        with eventlog.open(url) as store:
            yield store


def contents(log: EventLog) -> list[tuple[str, list[Event]]]:
    """Everything a store holds, through the public API: to check that a call changed nothing."""
    return [(s.session_id, list(log.events(s.session_id))) for s in log.list_sessions()]


def message(sid: str, sender: str = "Agent-1", content: str = "hi", **fields: Any) -> ChatMessage:
    return ChatMessage(sender=sender, content=content, session_id=sid, **fields)


def fold(session_id: str, events: list[Event]) -> ChatSession:
    """The session state issue 2 defines, folded from its events by a reference implementation
    written from the spec (not from eventlog's code)."""
    created = events[0]
    assert created.seq == 1 and created.type == "session.created"
    participants = list(created.data["participants"])
    count = 0
    for event in events[1:]:
        if event.type == "message":
            count += 1
            for person in (event.data["sender"], event.data.get("recipient")):
                if person is not None and person not in participants:
                    participants.append(person)
        elif event.type == "session.participant_joined":
            if event.data["participant"] not in participants:
                participants.append(event.data["participant"])
        elif event.type == "session.participant_left" and event.data["participant"] in participants:
            participants.remove(event.data["participant"])
    return ChatSession(session_id=session_id, participants=participants, created_at=created.ts,
                       last_activity=max(e.ts for e in events), message_count=count,
                       last_seq=events[-1].seq, metadata=created.data["metadata"])
