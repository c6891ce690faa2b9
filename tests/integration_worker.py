"""Child processes for the framework integration tests: ``python integration_worker.py CMD STORE ...``.

Each command drives a real framework (or a bare adapter) against the store at STORE and
prints one JSON document on stdout for the parent test to check.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any, cast


def _wait_for_go() -> None:
    # All workers of a stress run begin together, past their (slow) framework imports, so
    # their writes really overlap: each says it is ready, and the parent answers when all are.
    print("ready", flush=True)
    sys.stdin.readline()


# LangChain ------------------------------------------------------------------------------

def langchain_turns(store: str, session_id: str, mode: str, first: int, turns: int) -> dict[str, Any]:
    """Chat ``turns`` turns through RunnableWithMessageHistory around a fake chat model;
    report what the model was shown on each turn."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables.history import RunnableWithMessageHistory

    from eventlog.integrations.langchain import EventLogChatMessageHistory

    seen: list[list[str]] = []

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: list[list[BaseMessage]],
                                **kwargs: Any) -> None:
            seen.append([f"{m.type}:{m.content}" for m in messages[0]])

    replies = iter([AIMessage(content=f"answer {n}", id=f"ai-{n}") for n in range(first, first + turns)])
    model = GenericFakeChatModel(messages=replies)
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{question}")])
    chain = RunnableWithMessageHistory(
        prompt | model,
        lambda sid: EventLogChatMessageHistory(sid, store),
        input_messages_key="question",
        history_messages_key="history",
    )
    config: Any = {"configurable": {"session_id": session_id}, "callbacks": [Recorder()]}
    answers = []
    for n in range(first, first + turns):
        question = {"question": f"question {n}"}
        if mode == "async":
            result = asyncio.run(chain.ainvoke(question, config=config))
        else:
            result = chain.invoke(question, config=config)
        answers.append(result.content)
    return {"seen": seen, "answers": answers}


def langchain_writer(store: str, session_id: str, worker: int, batches: int) -> dict[str, Any]:
    """Add ``batches`` (human, ai) pairs, each pair one add_messages call."""
    from langchain_core.messages import AIMessage, HumanMessage

    from eventlog.integrations.langchain import EventLogChatMessageHistory

    history = EventLogChatMessageHistory(session_id, store)
    _wait_for_go()
    for n in range(batches):
        history.add_messages([HumanMessage(f"w{worker} q{n}", id=f"w{worker}-q{n}"),
                              AIMessage(f"w{worker} a{n}", id=f"w{worker}-a{n}")])
    return {"added": 2 * batches}


# OpenAI Agents SDK ----------------------------------------------------------------------

def _fake_model() -> Any:
    """A local ``agents.Model``: calls the ``get_weather`` tool when asked about weather,
    else answers with how many input items it was given; records every input."""
    from agents import Model, ModelResponse, Usage
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    class FakeModel(Model):
        def __init__(self) -> None:
            self.inputs: list[Any] = []

        async def get_response(self, system_instructions: Any, input: Any, model_settings: Any,
                               tools: Any, output_schema: Any, handoffs: Any, tracing: Any,
                               **kwargs: Any) -> ModelResponse:
            items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
            self.inputs.append(json.loads(json.dumps(items)))
            last = items[-1]
            calls = len(self.inputs)
            if last.get("role") == "user" and "weather" in str(last.get("content")):
                output: list[Any] = [ResponseFunctionToolCall(
                    id=f"fc-{calls}", call_id=f"call-{calls}", type="function_call",
                    name="get_weather", arguments=json.dumps({"city": "Paris"}))]
            else:
                output = [ResponseOutputMessage(
                    id=f"msg-{calls}", type="message", role="assistant", status="completed",
                    content=[ResponseOutputText(type="output_text", annotations=[],
                                                text=f"seen {len(items)} items")])]
            return ModelResponse(output=output, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            raise NotImplementedError("this fake model answers only non-streamed runs")

    return FakeModel()


def agents_turns(store: str, session_id: str, first: int, turns: int) -> dict[str, Any]:
    """Run ``turns`` Runner.run turns with the session; report the model's inputs."""
    os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")  # never sent: no network here
    from agents import Agent, Runner, function_tool, set_tracing_disabled

    from eventlog.integrations.openai_agents import EventLogSession

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    model = _fake_model()
    agent = Agent(name="assistant", model=model, tools=[get_weather])
    session = EventLogSession(session_id, store)

    async def run() -> list[str]:
        outputs = []
        for n in range(first, first + turns):
            question = "what is the weather?" if n % 2 else f"question {n}"
            result = await Runner.run(agent, question, session=session)
            outputs.append(str(result.final_output))
        return outputs

    outputs = asyncio.run(run())
    return {"inputs": model.inputs, "outputs": outputs}


def agents_add_then_pop(store: str, session_id: str, worker: int, batches: int) -> dict[str, Any]:
    """Add ``batches`` (user, assistant) pairs, each pair one add_items call; say "added" and
    wait again; then pop until the session is empty and report what this process popped."""
    from eventlog.integrations.openai_agents import EventLogSession

    session = EventLogSession(session_id, store)

    async def add() -> None:
        for n in range(batches):
            await session.add_items([{"role": "user", "content": f"w{worker} q{n}"},
                                     {"role": "assistant", "content": f"w{worker} a{n}"}])

    async def pop() -> list[Any]:
        popped = []
        while (item := await session.pop_item()) is not None:
            popped.append(item)
        return popped

    _wait_for_go()
    asyncio.run(add())
    print("added", flush=True)
    sys.stdin.readline()
    return {"popped": asyncio.run(pop())}


# LangGraph ------------------------------------------------------------------------------

def langgraph_graph(checkpointer: Any, first: int = 0) -> tuple[Any, list[list[str]]]:
    """A one-node chat graph whose fake model answers ``answer N`` and records what it saw."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    seen: list[list[str]] = []
    model = GenericFakeChatModel(messages=iter([AIMessage(f"answer {n}", id=f"ai-{n}")
                                                for n in range(first, first + 1000)]))

    def chat(state: MessagesState) -> dict[str, Any]:
        seen.append([f"{m.type}:{m.content}" for m in state["messages"]])
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer), seen


def langgraph_turns(store: str, thread_id: str, first: int, turns: int) -> dict[str, Any]:
    """Run ``turns`` turns of the chat graph on one thread; report what the model saw."""
    from eventlog.integrations.langgraph import EventLogSaver

    graph, seen = langgraph_graph(EventLogSaver(store), first)
    config: Any = {"configurable": {"thread_id": thread_id}}
    for n in range(first, first + turns):
        graph.invoke({"messages": [("human", f"question {n}")]}, config)
    return {"seen": seen}


def langgraph_threads(store: str, worker: int, threads: int, turns: int) -> dict[str, Any]:
    """Run ``turns`` turns on each of ``threads`` threads of this worker, interleaved, and
    put ``turns`` raw checkpoints into the thread all workers share."""
    from langgraph.checkpoint.base import empty_checkpoint

    from eventlog.integrations.langgraph import EventLogSaver

    saver = EventLogSaver(store)
    graph, _ = langgraph_graph(saver)
    _wait_for_go()
    for n in range(turns):
        for t in range(threads):
            config: Any = {"configurable": {"thread_id": f"user:{worker}/thread {t}"}}
            graph.invoke({"messages": [("human", f"w{worker} t{t} q{n}")]}, config)
            shared = empty_checkpoint()
            saver.put({"configurable": {"thread_id": "shared/thread", "checkpoint_ns": ""}},
                      shared, cast(Any, {"source": "input", "step": n, "worker": worker}), {})
    return {"done": True}


COMMANDS = {
    "langchain-turns": lambda a: langchain_turns(a[0], a[1], a[2], int(a[3]), int(a[4])),
    "langchain-writer": lambda a: langchain_writer(a[0], a[1], int(a[2]), int(a[3])),
    "agents-turns": lambda a: agents_turns(a[0], a[1], int(a[2]), int(a[3])),
    "agents-add-then-pop": lambda a: agents_add_then_pop(a[0], a[1], int(a[2]), int(a[3])),
    "langgraph-turns": lambda a: langgraph_turns(a[0], a[1], int(a[2]), int(a[3])),
    "langgraph-threads": lambda a: langgraph_threads(a[0], int(a[1]), int(a[2]), int(a[3])),
}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](sys.argv[2:])))
