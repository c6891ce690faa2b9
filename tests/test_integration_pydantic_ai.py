"""EventLogMessageHistory against pydantic-ai: exact round trips through ModelMessagesTypeAdapter
and real agent runs with TestModel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("pydantic_ai", reason="needs eventlog[pydantic-ai]")

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.test import TestModel

import eventlog
from eventlog.integrations.pydantic_ai import CLEARED_EVENT, MESSAGE_EVENT, EventLogMessageHistory


def weather_agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent(TestModel(), system_prompt="be brief")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


def test_runs_keep_their_history_and_it_round_trips_exactly(tmp_path: Path) -> None:
    agent = weather_agent()
    history = EventLogMessageHistory("user:42", tmp_path / "store")
    assert history.load() == []
    kept: list[ModelMessage] = []
    for question in ("weather in Paris?", "and tomorrow?"):
        result = agent.run_sync(question, message_history=history.load())
        history.append(result.new_messages())
        kept += result.new_messages()
        assert result.all_messages()[:len(kept) - len(result.new_messages())] == kept[:len(kept) - len(
            result.new_messages())]
    with eventlog.open(tmp_path / "store") as fresh:
        back = EventLogMessageHistory("user:42", fresh).load()
    assert back == kept  # every part, timestamp, tool call and usage, as pydantic-ai made them
    assert ModelMessagesTypeAdapter.dump_json(back) == ModelMessagesTypeAdapter.dump_json(kept)
    kinds = {type(part).__name__ for message in back for part in message.parts}
    assert {"UserPromptPart", "ToolCallPart", "ToolReturnPart", "TextPart"} <= kinds
    # The next run sees the whole conversation.
    third = agent.run_sync("thanks", message_history=history.load())
    assert third.all_messages()[:len(kept)] == kept


def test_limit_clear_and_the_audit_trail(tmp_path: Path) -> None:
    history = EventLogMessageHistory("thread/1", tmp_path / "store")
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content="hi")]),
        ModelResponse(parts=[ToolCallPart(tool_name="t", args={"a": 1}, tool_call_id="c1")]),
        ModelRequest(parts=[ToolReturnPart(tool_name="t", content={"ok": True}, tool_call_id="c1")]),
        ModelResponse(parts=[TextPart(content="done")]),
    ]
    history.append(messages)
    assert history.load(limit=2) == messages[2:]
    history.clear()
    assert history.load() == []
    history.append(messages[:1])
    assert history.load() == messages[:1]
    types = [e.type for e in history.log.events(history._sid)]
    assert types == ["session.created", *[MESSAGE_EVENT] * 4, CLEARED_EVENT, MESSAGE_EVENT]


def test_append_with_expected_seq_refuses_a_stale_history(tmp_path: Path) -> None:
    store = tmp_path / "store"
    one, two = EventLogMessageHistory("s", store), EventLogMessageHistory("s", store)
    _, seq = one.load_with_seq()
    _, seq_two = two.load_with_seq()
    assert seq == seq_two == 0
    one.append([ModelRequest(parts=[UserPromptPart(content="first")])], expected_seq=seq)
    with pytest.raises(eventlog.ConflictError):
        two.append([ModelRequest(parts=[UserPromptPart(content="second")])], expected_seq=seq_two)
    _, seq = two.load_with_seq()
    two.append([ModelRequest(parts=[UserPromptPart(content="second")])], expected_seq=seq)
    assert [m.parts[0].content for m in one.load()] == ["first", "second"]  # type: ignore[union-attr]


def test_the_async_methods(tmp_path: Path) -> None:
    agent = weather_agent()
    history = EventLogMessageHistory("alice@example.com", f"sqlite:///{tmp_path / 's.db'}")

    async def scenario() -> None:
        result = await agent.run("weather in Rome?", message_history=await history.aload())
        await history.aappend(result.new_messages())
        assert await history.aload() == result.new_messages()
        await history.aclear()
        assert await history.aload() == []

    asyncio.run(scenario())
