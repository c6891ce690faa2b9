"""EventLogSaver against LangGraph: its own conformance suite, real graphs, several processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="needs eventlog[langgraph]")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

import eventlog
from eventlog.integrations.langgraph import EventLogSaver


@pytest.mark.parametrize("url", ["files", "memory", "sqlite"])
def test_langgraph_conformance_suite_passes_in_full(tmp_path: Path, url: str) -> None:
    stores = {"files": str(tmp_path / "store"), "memory": f"memory://conformance-{tmp_path.name}",
              "sqlite": f"sqlite:///{tmp_path / 'store.db'}"}
    logs: list[eventlog.EventLog] = []

    @checkpointer_test(name=f"EventLogSaver-{url}")
    async def factory() -> AsyncIterator[EventLogSaver]:
        log = eventlog.open(stores[url])
        logs.append(log)
        yield EventLogSaver(log)
        log.close()

    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}/{test}: {error}")

    report = asyncio.run(validate(factory, progress=ProgressCallbacks(on_test_result=on_result)))
    assert not failures, "\n".join(failures)
    assert report.passed_all()
    # Every capability the suite knows was detected and run, none skipped.
    assert all(r.detected and r.passed for r in report.results.values()), report.results
    assert report.conformance_level() == "FULL"


# Real graphs ---------------------------------------------------------------------------------

from langchain_core.messages import HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from tests.test_integration_langchain import collect, spawn, start_together  # noqa: E402

from . import integration_worker as worker  # noqa: E402


def transcript(turns: int, first: int = 0) -> list[str]:
    lines = []
    for n in range(first, first + turns):
        lines += [f"human:question {n}", f"ai:answer {n}"]
    return lines


def plain(values: dict[str, Any]) -> list[str]:
    """The messages of a state, without the random ids LangGraph gives human messages."""
    return [f"{m.type}:{m.content}" for m in values.get("messages", [])]


def run_turns(graph: Any, config: Any, first: int, turns: int) -> None:
    for n in range(first, first + turns):
        graph.invoke({"messages": [("human", f"question {n}")]}, config)


def test_a_graph_runs_like_it_does_on_langgraphs_own_saver(tmp_path: Path) -> None:
    ours, seen = worker.langgraph_graph(EventLogSaver(tmp_path / "store"))
    theirs, seen_there = worker.langgraph_graph(InMemorySaver())
    config: Any = {"configurable": {"thread_id": "user:42"}}
    run_turns(ours, config, 0, 3)
    run_turns(theirs, config, 0, 3)
    assert seen == seen_there == [[*transcript(n), f"human:question {n}"] for n in range(3)]
    state, state_there = ours.get_state(config), theirs.get_state(config)
    assert plain(state.values) == plain(state_there.values) == transcript(3)
    assert state.next == state_there.next == ()
    history = list(ours.get_state_history(config))
    history_there = list(theirs.get_state_history(config))
    assert [(h.metadata["source"], h.metadata["step"], h.next) for h in history] == [
        (h.metadata["source"], h.metadata["step"], h.next) for h in history_there]
    assert [plain(h.values) for h in history] == [plain(h.values) for h in history_there]


def time_travel(saver: Any) -> dict[str, Any]:
    """Three turns, then a fork from the checkpoint where turn 1's question arrived, run on."""
    graph, seen = worker.langgraph_graph(saver)
    config: Any = {"configurable": {"thread_id": "thread/123"}}
    run_turns(graph, config, 0, 3)
    history = list(graph.get_state_history(config))
    past = next(h for h in reversed(history)
                if len(h.values.get("messages", [])) == 3 and h.next == ("chat",))
    forked = graph.update_state(past.config, {"messages": [HumanMessage("a different question")]},
                                as_node="__start__")
    graph.invoke(None, forked)  # no new input: runs on from the fork
    return {"seen": seen[-1], "now": plain(graph.get_state(config).values),
            "past": plain(graph.get_state(past.config).values),
            "history": [(h.metadata["step"], h.metadata["source"], h.next, plain(h.values))
                        for h in graph.get_state_history(config)],
            "before": len(history), "ids": {h.config["configurable"]["checkpoint_id"] for h in history},
            "after_ids": {h.config["configurable"]["checkpoint_id"]
                          for h in saver.list({"configurable": {"thread_id": "thread/123"}})}}


def test_time_travel_forks_from_a_past_checkpoint(tmp_path: Path) -> None:
    ours = time_travel(EventLogSaver(tmp_path / "store"))
    theirs = time_travel(InMemorySaver())
    assert ours["seen"] == ["human:question 0", "ai:answer 0", "human:question 1",
                            "human:a different question"]
    assert ours["now"] == [*transcript(1), "human:question 1", "human:a different question",
                           "ai:answer 3"]
    assert ours["past"] == [*transcript(1), "human:question 1"]  # the old branch is still whole
    assert ours["ids"] < ours["after_ids"]  # nothing of the first timeline is gone
    for key in ("seen", "now", "past", "history", "before"):
        assert ours[key] == theirs[key], key


def test_an_async_graph_uses_the_async_methods(tmp_path: Path) -> None:
    graph, seen = worker.langgraph_graph(EventLogSaver(f"sqlite:///{tmp_path / 'store.db'}"))
    config: Any = {"configurable": {"thread_id": "alice@example.com"}}

    async def scenario() -> list[Any]:
        for n in range(3):
            await graph.ainvoke({"messages": [("human", f"question {n}")]}, config)
        return [h async for h in graph.aget_state_history(config)]

    history = asyncio.run(scenario())
    assert seen[-1] == [*transcript(2), "human:question 2"]
    assert len(history) == 3 * 3  # each turn: the input, the chat step, ... and the loop's first
    assert [m.content for m in history[0].values["messages"]] == [
        line.split(":", 1)[1] for line in transcript(3)]


def test_a_fresh_process_resumes_the_thread(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = collect(spawn("langgraph-turns", store, "user:7", 0, 2))
    second = collect(spawn("langgraph-turns", store, "user:7", 2, 2))
    assert first["seen"] + second["seen"] == [[*transcript(n), f"human:question {n}"] for n in range(4)]
    graph, _ = worker.langgraph_graph(EventLogSaver(store))
    state = graph.get_state({"configurable": {"thread_id": "user:7"}})
    assert [f"{m.type}:{m.content}" for m in state.values["messages"]] == transcript(4)


def test_threads_from_several_processes_at_once_lose_nothing(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    workers, threads, turns = 3, 3, 3
    procs = [spawn("langgraph-threads", store, w, threads, turns) for w in range(workers)]
    start_together(procs)
    for proc in procs:
        collect(proc)
    saver = EventLogSaver(store)
    graph, _ = worker.langgraph_graph(saver)
    for w in range(workers):
        for t in range(threads):
            config: Any = {"configurable": {"thread_id": f"user:{w}/thread {t}"}}
            messages = graph.get_state(config).values["messages"]
            expected = []
            for n in range(turns):
                expected += [f"w{w} t{t} q{n}", f"answer {n * threads + t}"]  # one model per worker
            assert [m.content for m in messages] == expected
            assert len(list(saver.list(config))) == 3 * turns
    shared = list(saver.list({"configurable": {"thread_id": "shared/thread"}}))
    assert sorted((cast(Any, c.metadata)["worker"], c.metadata["step"]) for c in shared) == sorted(
        (w, n) for w in range(workers) for n in range(turns) for _ in range(threads))
    # Every thread of the store is listed, under the ids the workers used.
    every = {c.config["configurable"]["thread_id"] for c in saver.list(None)}
    assert every == {f"user:{w}/thread {t}" for w in range(workers) for t in range(threads)} | {
        "shared/thread"}
    assert saver.log.verify().ok
