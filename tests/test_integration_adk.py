"""EventLogSessionService against Google ADK: ADK's own Runner with a fake model, side by side
with ADK's InMemorySessionService, state scopes, paging config, stale copies, processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="needs eventlog[adk]")

from google.adk.agents import LlmAgent
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.genai import types

import eventlog
from eventlog.integrations.adk import EVENT_EVENT, EventLogSessionService, adk_names


class FakeLlm(BaseLlm):
    """Answers ``answer N (saw K contents)``, offline."""

    calls: int = 0

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        self.calls += 1
        text = f"answer {self.calls} (saw {len(llm_request.contents)} contents)"
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def script(service: BaseSessionService) -> dict[str, Any]:
    """The same conversation on any session service; what it leaves, in plain values."""
    agent = LlmAgent(name="assistant", model=FakeLlm(model="fake"), output_key="last_answer")
    runner = Runner(agent=agent, app_name="app/1", session_service=service)
    created = await service.create_session(app_name="app/1", user_id="alice@example.com",
                                           state={"topic": "maths", "user:lang": "en", "app:v": 1,
                                                  "temp:scratch": "gone"}, session_id="s:1")
    await service.create_session(app_name="app/1", user_id="bob", session_id="s:2")
    texts = []
    for n in range(3):
        async for event in runner.run_async(
                user_id="alice@example.com", session_id="s:1", new_message=user(f"question {n}"),
                state_delta={"turns": n, "user:seen": n, "app:hits": n, "temp:t": n}):
            if event.content and event.content.parts:
                texts.append(f"{event.author}:{event.content.parts[0].text}")
    session = await service.get_session(app_name="app/1", user_id="alice@example.com", session_id="s:1")
    assert session is not None
    recent = await service.get_session(app_name="app/1", user_id="alice@example.com", session_id="s:1",
                                       config=GetSessionConfig(num_recent_events=2))
    after = await service.get_session(app_name="app/1", user_id="alice@example.com", session_id="s:1",
                                      config=GetSessionConfig(after_timestamp=session.events[3].timestamp))
    none = await service.get_session(app_name="app/1", user_id="alice@example.com", session_id="s:1",
                                     config=GetSessionConfig(num_recent_events=0))
    assert recent is not None and after is not None and none is not None
    listed = await service.list_sessions(app_name="app/1")
    mine = await service.list_sessions(app_name="app/1", user_id="alice@example.com")
    return {
        "created_state": created.state, "texts": texts, "state": session.state,
        "events": [(e.author, e.invocation_id == session.events[0].invocation_id,
                    [p.text for p in (e.content.parts or [])] if e.content else None,
                    e.actions.state_delta) for e in session.events],
        "event_ids": [e.id for e in session.events],
        "recent": [e.id for e in recent.events], "after": [e.id for e in after.events],
        "none": none.events,
        "listed": [(s.user_id, s.id, s.state, s.events) for s in listed.sessions],
        "mine": [s.id for s in mine.sessions],
        "user_state": await service.get_user_state(app_name="app/1", user_id="alice@example.com"),
        "missing": await service.get_session(app_name="app/1", user_id="alice@example.com",
                                             session_id="nope"),
    }


def test_a_runner_conversation_matches_adks_in_memory_service(tmp_path: Path) -> None:
    ours = asyncio.run(script(EventLogSessionService(tmp_path / "store")))
    theirs = asyncio.run(script(InMemorySessionService()))
    for key in ours:
        if key not in ("event_ids", "recent", "after"):
            assert ours[key] == theirs[key], key
    # Same shapes for the paging configs (ids are random per run).
    assert ours["recent"] == ours["event_ids"][-2:]
    assert ours["after"] == ours["event_ids"][3:]
    assert len(theirs["recent"]) == 2 and len(theirs["after"]) == len(theirs["event_ids"]) - 3
    assert ours["state"] == {"topic": "maths", "turns": 2, "last_answer": ours["texts"][-1].split(":", 1)[1],
                             "user:lang": "en", "user:seen": 2, "app:v": 1, "app:hits": 2}
    assert "temp:scratch" not in ours["created_state"]


def test_events_round_trip_exactly_and_a_fresh_handle_sees_everything(tmp_path: Path) -> None:
    service = EventLogSessionService(tmp_path / "store")

    async def scenario() -> None:
        session = await service.create_session(app_name="a", user_id="u", session_id="s")
        event = Event(author="user", invocation_id="inv-1", content=user("héllo 😊"),
                      actions=EventActions(state_delta={"k": [1, {"x": None}], "user:u": True}),
                      custom_metadata={"trace": "t-1"})
        await service.append_event(session, event)
        with eventlog.open(tmp_path / "store") as fresh:
            again = await EventLogSessionService(fresh).get_session(app_name="a", user_id="u", session_id="s")
            assert again is not None
            assert again.events == [event]
            assert again.state == {"k": [1, {"x": None}], "user:u": True}
            assert [e.type for e in fresh.events(next(iter(fresh.session_ids())))] or True
        names = [adk_names(sid) for sid in service.log.session_ids()]
        assert ("a", "u", "s") in names

    asyncio.run(scenario())


def test_two_runners_with_stale_copies_never_interleave(tmp_path: Path) -> None:
    service = EventLogSessionService(tmp_path / "store")

    async def scenario() -> None:
        await service.create_session(app_name="a", user_id="u", session_id="s")
        first = await service.get_session(app_name="a", user_id="u", session_id="s")
        second = await service.get_session(app_name="a", user_id="u", session_id="s")
        assert first is not None and second is not None
        await service.append_event(first, Event(author="user", invocation_id="1", content=user("one")))
        with pytest.raises(StaleSessionError):
            await service.append_event(second, Event(author="user", invocation_id="2",
                                                     content=user("two"),
                                                     actions=EventActions(state_delta={"user:x": 1})))
        # Nothing of the stale append was written: no event, no user state.
        assert await service.get_user_state(app_name="a", user_id="u") == {}
        await service.append_event(first, Event(author="user", invocation_id="3", content=user("three")))
        again = await service.get_session(app_name="a", user_id="u", session_id="s")
        assert again is not None
        assert [e.invocation_id for e in again.events] == ["1", "3"]
        with pytest.raises(AlreadyExistsError):
            await service.create_session(app_name="a", user_id="u", session_id="s")
        await service.delete_session(app_name="a", user_id="u", session_id="s")
        assert await service.get_session(app_name="a", user_id="u", session_id="s") is None
        await service.delete_session(app_name="a", user_id="u", session_id="s")  # again: fine
        from google.adk.errors.session_not_found_error import SessionNotFoundError
        with pytest.raises(SessionNotFoundError):
            await service.append_event(first, Event(author="user", invocation_id="4"))
        generated = await service.create_session(app_name="a", user_id="u")
        assert generated.id and (await service.list_sessions(app_name="a")).sessions[0].id == generated.id

    asyncio.run(scenario())


def test_concurrent_appenders_to_one_session_each_either_land_or_are_told(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = EventLogSessionService(tmp_path / "store")
        await service.create_session(app_name="a", user_id="u", session_id="s")

        async def appender(name: str) -> list[str]:
            landed = []
            for n in range(20):
                while True:
                    copy = await service.get_session(app_name="a", user_id="u", session_id="s")
                    assert copy is not None
                    try:
                        await service.append_event(copy, Event(author=name, invocation_id=f"{name}-{n}"))
                        landed.append(f"{name}-{n}")
                        break
                    except StaleSessionError:
                        continue
            return landed

        results = await asyncio.gather(*(appender(f"r{k}") for k in range(3)))
        final = await service.get_session(app_name="a", user_id="u", session_id="s")
        assert final is not None
        stored = [e.invocation_id for e in final.events]
        assert sorted(stored) == sorted(i for r in results for i in r)
        for name in ("r0", "r1", "r2"):
            assert [i for i in stored if i.startswith(name)] == [f"{name}-{n}" for n in range(20)]
        assert [e.type for e in service.log.events(next(
            sid for sid in service.log.session_ids() if adk_names(sid)))][1:] == [EVENT_EVENT] * 60

    asyncio.run(scenario())
