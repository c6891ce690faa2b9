"""EventLogChatMessageHistory against langchain-core: the behaviour LangChain's own history
tests ask of a store, exact round trips, append-only clearing, a real RunnableWithMessageHistory
run in two processes, and four processes writing at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="needs eventlog[langchain]")

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

import eventlog
from eventlog.integrations.langchain import (
    CLEARED_EVENT,
    MESSAGE_EVENT,
    EventLogChatMessageHistory,
)

WORKER = str(Path(__file__).with_name("integration_worker.py"))
SOURCE_ROOT = str(Path(eventlog.__file__).resolve().parent.parent)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def spawn(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def start_together(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every worker is ready (its imports done), then let them all go at once."""
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", line + (proc.stderr.read() if proc.stderr else "")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def collect(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


# What LangChain's own tests ask of a history ----------------------------------------------

def test_add_message_and_add_messages_keep_order(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)
    history.add_message(HumanMessage(content="Hello"))
    history.add_message(HumanMessage(content="World"))
    assert history.messages == [HumanMessage(content="Hello"), HumanMessage(content="World")]
    history.add_messages([HumanMessage(content="Hello"), HumanMessage(content="World")])
    assert history.messages == [HumanMessage(content="Hello"), HumanMessage(content="World")] * 2


def test_async_interface(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)

    async def scenario() -> None:
        await history.aadd_messages([HumanMessage(content="Hello"), HumanMessage(content="World")])
        assert await history.aget_messages() == [HumanMessage(content="Hello"),
                                                 HumanMessage(content="World")]
        await history.aadd_messages([HumanMessage(content="!")])
        assert await history.aget_messages() == [HumanMessage(content="Hello"),
                                                 HumanMessage(content="World"),
                                                 HumanMessage(content="!")]
        await history.aclear()
        assert await history.aget_messages() == []

    asyncio.run(scenario())


def test_user_and_ai_messages_then_clear(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)
    history.add_user_message("Hello!")
    history.add_ai_message("Hi there!")
    messages = history.messages
    assert [type(m) for m in messages] == [HumanMessage, AIMessage]
    assert [m.content for m in messages] == ["Hello!", "Hi there!"]
    history.clear()
    assert history.messages == []
    assert str(history) == ""


def test_a_new_instance_sees_the_history_and_sessions_stay_apart(store: str) -> None:
    first = EventLogChatMessageHistory("first", store)
    first.add_user_message("Hello, AI!")
    first.add_ai_message("Hello, how can I help you?")
    first.add_user_message("Tell me a joke.")
    first.add_ai_message("Why did the chicken cross the road? To get to the other side!")
    EventLogChatMessageHistory("second", store).add_user_message("another conversation")

    with eventlog.open(store) as fresh:  # another handle, as another process would have
        again = EventLogChatMessageHistory("first", fresh)
        assert [m.content for m in again.messages] == [
            "Hello, AI!", "Hello, how can I help you?", "Tell me a joke.",
            "Why did the chicken cross the road? To get to the other side!"]
        assert [m.content for m in EventLogChatMessageHistory("second", fresh).messages] == [
            "another conversation"]


# Exact round trips, atomic batches, append-only clearing ------------------------------------

EVERY_KIND: list[BaseMessage] = [
    SystemMessage("be brief", id="sys-1", additional_kwargs={"lang": "en"}),
    HumanMessage(content=[{"type": "text", "text": "look"},
                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
                 name="bob", id="h-1"),
    AIMessage("", id="ai-1", name="assistant",
              tool_calls=[{"name": "search", "args": {"q": "weather", "n": 3}, "id": "call-1"}],
              invalid_tool_calls=[{"name": "bad", "args": "{not json", "id": "call-2",
                                   "error": "unparsable", "type": "invalid_tool_call"}],
              additional_kwargs={"refusal": None, "nested": {"a": [1, 2.5, True]}},
              response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
              usage_metadata={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14}),
    ToolMessage("22 degrees", tool_call_id="call-1", id="t-1", status="success",
                artifact={"raw": [22, "C"]}),
    AIMessageChunk(content="partial ", id="chunk-1"),
    ChatMessage(role="critic", content="too long", id="c-1"),
    FunctionMessage(name="legacy", content="result", id="f-1"),
    HumanMessage("unicode: こんにちは 😊 \u2028 \"quotes\" \\ backslash", id="h-2"),
    RemoveMessage(id="ai-1"),
]


def test_every_message_kind_round_trips_exactly(store: str) -> None:
    EventLogChatMessageHistory("s", store).add_messages(EVERY_KIND)
    with eventlog.open(store) as fresh:
        back = EventLogChatMessageHistory("s", fresh).messages
    assert back == EVERY_KIND
    assert [type(m) for m in back] == [type(m) for m in EVERY_KIND]
    assert back[2].tool_calls == EVERY_KIND[2].tool_calls  # type: ignore[attr-defined]
    assert back[2].usage_metadata == EVERY_KIND[2].usage_metadata  # type: ignore[attr-defined]
    assert [m.id for m in back] == [m.id for m in EVERY_KIND]


def test_add_messages_is_one_atomic_batch(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)
    history.add_messages([HumanMessage("one"), AIMessage("two"), HumanMessage("three")])
    events = list(history.log.events("s"))
    assert [(e.seq, e.type) for e in events] == [
        (1, "session.created"), (2, MESSAGE_EVENT), (3, MESSAGE_EVENT), (4, MESSAGE_EVENT)]
    assert len({e.ts for e in events[1:]}) == 1  # written together, as one append


def test_a_batch_with_one_unstorable_message_stores_none(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)
    bad = AIMessage("x", additional_kwargs={"when": object()})
    with pytest.raises(eventlog.InvalidEventError, match="not plain JSON"):
        history.add_messages([HumanMessage("fine"), bad])
    assert not history.log.session_exists("s")  # not even created
    history.add_message(HumanMessage("first"))
    with pytest.raises(eventlog.InvalidEventError):
        history.add_messages([HumanMessage("fine"), AIMessage("nan", additional_kwargs={"x": float("nan")})])
    assert history.messages == [HumanMessage("first")]


def test_a_clear_marker_of_an_earlier_release_still_hides(store: str) -> None:
    """Histories written before clear became a rewind hold langchain.cleared markers."""
    history = EventLogChatMessageHistory("old", store)
    history.add_messages([HumanMessage("before")])
    history.log.append("old", CLEARED_EVENT, {})
    history.add_messages([HumanMessage("after")])
    assert history.messages == [HumanMessage("after")]
    history.clear()
    history.add_messages([HumanMessage("last")])
    assert history.messages == [HumanMessage("last")]


def test_clear_hides_but_erases_nothing(store: str) -> None:
    history = EventLogChatMessageHistory("s", store)
    history.add_messages([HumanMessage("old 1"), AIMessage("old 2")])
    history.clear()
    assert history.messages == []
    history.clear()  # clearing an empty history is fine, and recorded too
    history.add_message(HumanMessage("new"))
    assert history.messages == [HumanMessage("new")]
    audit = [(e.type, e.data["data"]["content"] if e.type == MESSAGE_EVENT else None)
             for e in history.log.events("s")]
    assert audit == [("session.created", None), (MESSAGE_EVENT, "old 1"), (MESSAGE_EVENT, "old 2"),
                     ("session.rewound", None), ("session.rewound", None), (MESSAGE_EVENT, "new")]
    assert history.log.verify("s").ok


def test_reading_or_clearing_a_new_session_creates_nothing(store: str) -> None:
    history = EventLogChatMessageHistory("never-written", store)
    assert history.messages == []
    history.clear()
    assert not history.log.session_exists("never-written")


def test_store_can_be_a_path_a_url_or_an_eventlog(tmp_path: Path) -> None:
    root = tmp_path / "store"
    EventLogChatMessageHistory("s", root).add_message(HumanMessage("via PathLike"))
    EventLogChatMessageHistory("s", f"file://{root}").add_message(HumanMessage("via URL"))
    with eventlog.open(root) as log:
        history = EventLogChatMessageHistory("s", log)
        assert history.log is log
        assert [m.content for m in history.messages] == ["via PathLike", "via URL"]
    assert EventLogChatMessageHistory("t", str(root)).log is EventLogChatMessageHistory("u", root).log


@pytest.mark.parametrize("bad", ["", "a\x00b", "a\nb", "x" * 256, 42])
def test_a_bad_session_id_is_refused_up_front(store: str, bad: Any) -> None:
    with pytest.raises(eventlog.InvalidSessionIdError):
        EventLogChatMessageHistory(bad, store)


@pytest.mark.parametrize("framework_id", ["user:42", "thread/123", "alice@example.com", "tenant 1",
                                          "é", "../escape", ".hidden", "_.user_3a42"])
def test_session_ids_as_frameworks_write_them(store: str, framework_id: str) -> None:
    EventLogChatMessageHistory(framework_id, store).add_message(HumanMessage(framework_id))
    with eventlog.open(store) as fresh:
        assert EventLogChatMessageHistory(framework_id, fresh).messages == [HumanMessage(framework_id)]
    assert EventLogChatMessageHistory("user-42", store).messages == []  # no two ids share a session


# Real clients, several processes -----------------------------------------------------------

def test_runnable_with_message_history_across_two_processes(store: str) -> None:
    first = collect(spawn("langchain-turns", store, "conv", "sync", 0, 3))
    second = collect(spawn("langchain-turns", store, "conv", "async", 3, 3))

    def transcript(turns: int) -> list[str]:
        lines = []
        for n in range(turns):
            lines += [f"human:question {n}", f"ai:answer {n}"]
        return lines

    # Each turn the model was shown the whole conversation so far, across the process change.
    seen = first["seen"] + second["seen"]
    assert seen == [[*transcript(n), f"human:question {n}"] for n in range(6)]
    assert first["answers"] + second["answers"] == [f"answer {n}" for n in range(6)]
    history = EventLogChatMessageHistory("conv", store)
    assert [f"{m.type}:{m.content}" for m in history.messages] == transcript(6)
    assert [m.id for m in history.messages if m.type == "ai"] == [f"ai-{n}" for n in range(6)]


def test_four_processes_writing_one_history_lose_nothing(store: str) -> None:
    workers, batches = 4, 60
    procs = [spawn("langchain-writer", store, "busy", w, batches) for w in range(workers)]
    start_together(procs)
    for proc in procs:
        collect(proc)
    messages = EventLogChatMessageHistory("busy", store).messages
    assert len(messages) == workers * batches * 2
    for worker in range(workers):
        mine = [m.content for m in messages if m.id.startswith(f"w{worker}-")]  # type: ignore[union-attr]
        expected = []
        for n in range(batches):
            expected += [f"w{worker} q{n}", f"w{worker} a{n}"]
        assert mine == expected  # each process's order kept
    # Each add_messages call landed whole: the answer right after its question.
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert answer.id == question.id.replace("-q", "-a")  # type: ignore[union-attr]
    log = EventLogChatMessageHistory("busy", store).log
    assert log.verify("busy").ok
    assert log.get_session("busy").last_seq == 1 + workers * batches * 2
