"""EventLogSession against the OpenAI Agents SDK: the behaviour the SDK's own session tests ask
of a store, append-only pop and clear, a real Runner run in two processes, and four processes
adding and popping at once."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("agents", reason="needs eventlog[openai-agents]")

from agents import Agent, RunConfig, Runner, TResponseInputItem, set_tracing_disabled
from agents.memory import Session, SessionSettings

import eventlog
from eventlog.integrations.openai_agents import (
    CLEARED_EVENT,
    ITEM_EVENT,
    POPPED_EVENT,
    EventLogSession,
)

WORKER = str(Path(__file__).with_name("integration_worker.py"))
SOURCE_ROOT = str(Path(eventlog.__file__).resolve().parent.parent)
T = TypeVar("T")
REWOUND = "session.rewound"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


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


def start_together_again(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def load_worker() -> Any:
    """The worker module, loaded by path (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("integration_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


def said(items: list[TResponseInputItem]) -> list[object]:
    return [item.get("content") for item in items]


# The protocol ------------------------------------------------------------------------------

def test_it_satisfies_the_session_protocol(store: str) -> None:
    session: Session = EventLogSession("s", store)  # mypy checks the structure
    assert isinstance(session, Session)               # and the SDK's runtime check agrees
    for name in ("get_items", "add_items", "pop_item", "clear_session"):
        assert asyncio.iscoroutinefunction(getattr(session, name))
    assert session.session_id == "s"


# What the SDK's own session tests ask of a store ---------------------------------------------

def test_add_get_and_clear(store: str) -> None:
    session = EventLogSession("direct_test", store)
    items: list[TResponseInputItem] = [{"role": "user", "content": "Hello"},
                                       {"role": "assistant", "content": "Hi there!"}]
    run(session.add_items(items))
    assert run(session.get_items()) == items
    run(session.clear_session())
    assert run(session.get_items()) == []


def test_pop_item(store: str) -> None:
    session = EventLogSession("pop_test", store)
    assert run(session.pop_item()) is None
    items: list[TResponseInputItem] = [{"role": "user", "content": "Hello"},
                                       {"role": "assistant", "content": "Hi there!"},
                                       {"role": "user", "content": "How are you?"}]
    run(session.add_items(items))
    assert len(run(session.get_items())) == 3
    assert run(session.pop_item()) == items[2]
    assert run(session.get_items()) == items[:2]
    assert run(session.pop_item()) == items[1]
    assert run(session.pop_item()) == items[0]
    assert run(session.pop_item()) is None
    assert run(session.get_items()) == []


def test_pop_touches_only_its_own_session(store: str) -> None:
    one, two = EventLogSession("session_1", store), EventLogSession("session_2", store)
    run(one.add_items([{"role": "user", "content": "Session 1 message"}]))
    run(two.add_items([{"role": "user", "content": "Session 2 message 1"},
                       {"role": "user", "content": "Session 2 message 2"}]))
    assert said([run(two.pop_item())]) == ["Session 2 message 2"]  # type: ignore[list-item]
    assert said(run(one.get_items())) == ["Session 1 message"]
    assert said(run(two.get_items())) == ["Session 2 message 1"]


def test_get_items_with_limit(store: str) -> None:
    session = EventLogSession("count_test", store)
    items: list[Any] = [{"role": role, "content": f"{word} {n}"}
                        for n in (1, 2, 3)
                        for role, word in (("user", "Message"), ("assistant", "Response"))]
    run(session.add_items(items))
    assert len(run(session.get_items())) == 6
    assert said(run(session.get_items(limit=2))) == ["Message 3", "Response 3"]
    assert said(run(session.get_items(limit=4))) == ["Message 2", "Response 2", "Message 3", "Response 3"]
    assert len(run(session.get_items(limit=10))) == 6
    assert run(session.get_items(limit=0)) == []
    assert len(run(session.get_items(limit=-1))) == 6  # as SQLiteSession: negative is no limit


@pytest.mark.parametrize(("limit", "expected"), [
    (0, []), (1, ["third"]), (2, ["second", "third"]), (5, ["first", "second", "third"]),
    (None, ["first", "second", "third"])])
def test_limit_on_a_resumed_session_leaves_the_history_alone(store: str, limit: int | None,
                                                            expected: list[str]) -> None:
    items: list[TResponseInputItem] = [{"role": "user", "content": "first"},
                                       {"role": "assistant", "content": "second"},
                                       {"role": "user", "content": "third"}]
    run(EventLogSession("history", store).add_items(items))
    with eventlog.open(store) as fresh:
        resumed = EventLogSession("history", fresh)
        assert said(run(resumed.get_items(limit=limit))) == expected
        assert run(resumed.get_items()) == items


def test_session_settings(store: str) -> None:
    default = EventLogSession("a", store)
    assert isinstance(default.session_settings, SessionSettings)
    assert default.session_settings.limit is None
    assert EventLogSession("b", store, SessionSettings(limit=5)).session_settings == SessionSettings(limit=5)
    assert EventLogSession("c", store, {"limit": 5}).session_settings == SessionSettings(limit=5)

    session = EventLogSession("limited", store, session_settings=SessionSettings(limit=3))
    run(session.add_items([{"role": "user", "content": f"Message {n}"} for n in range(10)]))
    assert said(run(session.get_items())) == ["Message 7", "Message 8", "Message 9"]
    assert said(run(session.get_items(limit=2))) == ["Message 8", "Message 9"]  # explicit wins


def test_unicode_and_special_characters(store: str) -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "こんにちは"}, {"role": "assistant", "content": "😊👍"},
        {"role": "user", "content": "Привет"}, {"role": "user", "content": "O'Reilly"},
        {"role": "assistant", "content": "Robert'); DROP TABLE students;--"},
        {"role": "user", "content": "\"quoted\" \\ \u2028 \x00 nul"}]
    run(EventLogSession("u", store).add_items(items))
    with eventlog.open(store) as fresh:
        assert run(EventLogSession("u", fresh).get_items()) == items


def test_concurrent_threads_add_everything(store: str) -> None:
    session = EventLogSession("concurrent_test", store)

    def add(n: int) -> None:
        run(session.add_items([{"role": "user", "content": f"Message {n}"}]))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(said(run(session.get_items()))) == sorted(f"Message {n}" for n in range(10))  # type: ignore[type-var]


def test_close_as_sqlite_session_has_it(store: str) -> None:
    session = EventLogSession("s", store)
    run(session.add_items([{"role": "user", "content": "kept"}]))
    session.close()
    session.close()  # idempotent
    for call in (session.get_items(), session.add_items([]), session.pop_item(), session.clear_session()):
        with pytest.raises(eventlog.StoreClosedError):
            run(call)
    assert said(run(EventLogSession("s", store).get_items())) == ["kept"]  # the store is not closed


def test_a_mistyped_setting_is_refused_like_sqlite_session() -> None:
    with pytest.raises(TypeError, match="limt"):
        EventLogSession("s", "memory://", {"limt": 3})


def test_get_items_true_is_one_item_like_sqlite_session(store: str) -> None:
    session = EventLogSession("s", store)
    run(session.add_items([{"role": "user", "content": str(n)} for n in range(3)]))
    assert said(run(session.get_items(True))) == ["2"]
    assert run(session.get_items(False)) == []


@pytest.mark.parametrize("framework_id", ["user:42", "thread/123", "alice@example.com", "日本語"])
def test_session_ids_as_frameworks_write_them(store: str, framework_id: str) -> None:
    run(EventLogSession(framework_id, store).add_items([{"role": "user", "content": framework_id}]))
    with eventlog.open(store) as fresh:
        assert said(run(EventLogSession(framework_id, fresh).get_items())) == [framework_id]
    assert EventLogSession(framework_id, store).session_id == framework_id


# Append-only pop and clear, exact items, atomic batches ----------------------------------------

RICH_ITEMS: list[Any] = [
    {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                 {"type": "input_image", "image_url": "data:image/png;base64,AA==",
                                  "detail": "auto"}]},
    {"id": "msg-1", "type": "message", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
    {"type": "function_call", "id": "fc-1", "call_id": "call-1", "name": "get_weather",
     "arguments": "{\"city\": \"Paris\"}"},
    {"type": "function_call_output", "call_id": "call-1", "output": "sunny"},
    {"type": "reasoning", "id": "rs-1", "summary": [{"type": "summary_text", "text": "thinking"}]},
    {"role": "user", "content": "numbers", "extra": {"int": 2**63 - 1, "float": 0.1, "none": None,
                                                     "bool": False, "empty": {}, "list": []}},
]


def test_items_round_trip_exactly(store: str) -> None:
    run(EventLogSession("s", store).add_items(RICH_ITEMS))
    with eventlog.open(store) as fresh:
        back = run(EventLogSession("s", fresh).get_items())
    assert back == RICH_ITEMS
    assert json.dumps(back) == json.dumps(RICH_ITEMS)  # key order too


def test_add_items_is_one_atomic_batch(store: str) -> None:
    session = EventLogSession("s", store)
    with pytest.raises(eventlog.InvalidEventError, match="not plain JSON"):
        unstorable: list[Any] = [{"role": "user", "content": "ok"}, {"role": "user", "content": object()}]
        run(session.add_items(unstorable))
    assert not session.log.session_exists("s")
    run(session.add_items(RICH_ITEMS[:3]))
    events = list(session.log.events("s"))
    assert [e.type for e in events] == ["session.created"] + [ITEM_EVENT] * 3
    assert len({e.ts for e in events[1:]}) == 1
    run(session.add_items([]))  # nothing to add: nothing written
    assert session.log.get_session("s").last_seq == 4


def test_pop_and_clear_hide_but_erase_nothing(store: str) -> None:
    session = EventLogSession("s", store)
    run(session.add_items([{"role": "user", "content": str(n)} for n in range(5)]))
    assert said([run(session.pop_item()), run(session.pop_item())]) == ["4", "3"]  # type: ignore[list-item]
    assert said(run(session.get_items(limit=2))) == ["1", "2"]  # the limit counts live items only
    run(session.add_items([{"role": "user", "content": "5"}]))
    assert said(run(session.get_items())) == ["0", "1", "2", "5"]
    assert said([run(session.pop_item())]) == ["5"]  # type: ignore[list-item]
    run(session.clear_session())
    assert run(session.get_items()) == [] and run(session.pop_item()) is None
    run(session.add_items([{"role": "user", "content": "after"}]))
    with eventlog.open(store) as fresh:
        assert said(run(EventLogSession("s", fresh).get_items())) == ["after"]
        audit = [(e.type, e.data) for e in fresh.events("s")][1:]
    assert audit == ([(ITEM_EVENT, {"role": "user", "content": str(n)}) for n in range(5)]
                     + [(REWOUND, {"to_seq": 5, "reason": "pop_item"}),
                        (REWOUND, {"to_seq": 4, "reason": "pop_item"}),
                        (ITEM_EVENT, {"role": "user", "content": "5"}),
                        (REWOUND, {"to_seq": 8, "reason": "pop_item"}),
                        (REWOUND, {"to_seq": 1, "reason": "clear_session"}),
                        (ITEM_EVENT, {"role": "user", "content": "after"})])
    assert session.log.verify("s").ok


def test_markers_of_earlier_releases_still_hide_what_they_hid(store: str) -> None:
    """Sessions written before pop_item and clear_session became rewinds hold agents.popped
    and agents.cleared markers; they read as they did, beside rewinds written since."""
    with eventlog.open(store) as log:
        log.create_session("old")
        log.append_many("old", [(ITEM_EVENT, {"role": "user", "content": str(n)}) for n in range(3)])
        log.append("old", CLEARED_EVENT, {})
        log.append_many("old", [(ITEM_EVENT, {"role": "user", "content": c}) for c in "abc"])
        log.append("old", POPPED_EVENT, {"seq": 8})
    session = EventLogSession("old", store)
    assert said(run(session.get_items())) == ["a", "b"]
    assert said([run(session.pop_item())]) == ["b"]  # type: ignore[list-item]
    assert said(run(session.get_items())) == ["a"]
    run(session.add_items([{"role": "user", "content": "d"}]))
    assert said(run(session.get_items())) == ["a", "d"]


def test_a_never_written_session_reads_empty_and_is_not_created(store: str) -> None:
    session = EventLogSession("nothing", store)
    assert run(session.get_items()) == [] and run(session.get_items(limit=3)) == []
    assert run(session.pop_item()) is None
    run(session.clear_session())
    assert not session.log.session_exists(session._sid)


def test_a_bad_limit_or_session_id_is_refused(store: str) -> None:
    with pytest.raises(eventlog.InvalidSessionIdError):
        EventLogSession("a\x00b", store)
    with pytest.raises(eventlog.InvalidInputError):
        run(EventLogSession("s", store).get_items(limit="3"))  # type: ignore[arg-type]


# Real Runner runs ---------------------------------------------------------------------------

@pytest.fixture
def runner_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")  # never sent: the model is local
    set_tracing_disabled(True)


def test_runner_with_the_session_across_two_processes(store: str) -> None:
    first = collect(spawn("agents-turns", store, "conv", 0, 3))
    with eventlog.open(store) as log:
        after_first = run(EventLogSession("conv", log).get_items())
    second = collect(spawn("agents-turns", store, "conv", 3, 3))

    # Turn 1 of the second process showed the model everything the first one stored.
    assert second["inputs"][0] == [*after_first, {"content": "what is the weather?", "role": "user"}]
    # Every model call saw the one before it whole, plus what happened since.
    calls = first["inputs"] + second["inputs"]
    for before, after in itertools.pairwise(calls):
        assert after[:len(before)] == before
    final = run(EventLogSession("conv", store).get_items())
    assert final[:len(calls[-1])] == calls[-1]
    assert [item.get("type") for item in final].count("function_call_output") == 3  # turns 1, 3, 5
    # 3 plain turns (question, answer) and 3 tool turns (question, call, output, answer), each once.
    assert said(final).count("question 0") == 1 and len(final) == 3 * 2 + 3 * 4
    assert second["outputs"][-1] == f"seen {len(calls[-1])} items"


def test_runner_run_sync_and_a_run_config_limit(store: str, runner_env: None) -> None:
    model = load_worker()._fake_model()
    agent = Agent(name="assistant", model=model)
    session = EventLogSession("limited", store, SessionSettings(limit=100))
    run(session.add_items([{"role": "user", "content": f"Turn {n}"} for n in range(10)]))
    result = Runner.run_sync(agent, "New question", session=session,
                             run_config=RunConfig(session_settings=SessionSettings(limit=2)))
    assert said(model.inputs[-1]) == ["Turn 8", "Turn 9", "New question"]
    assert result.final_output == "seen 3 items"
    stored = run(session.get_items(limit=-1))
    assert said(stored)[-2] == "New question" and len(stored) == 12


# Several processes at once --------------------------------------------------------------------

def test_four_processes_adding_then_popping_lose_nothing_and_never_pop_twice(store: str) -> None:
    workers, batches = 4, 50
    procs = [spawn("agents-add-then-pop", store, "busy", w, batches) for w in range(workers)]
    start_together(procs)
    for proc in procs:  # every process has added everything it will add
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "added\n", line + (proc.stderr.read() if proc.stderr else "")

    items = run(EventLogSession("busy", store).get_items())
    assert len(items) == workers * batches * 2
    for worker in range(workers):
        expected = []
        for n in range(batches):
            expected += [f"w{worker} q{n}", f"w{worker} a{n}"]
        assert [c for c in said(items) if str(c).startswith(f"w{worker} ")] == expected
    for question, answer in zip(items[::2], items[1::2], strict=True):  # each batch whole
        assert str(answer.get("content")) == str(question.get("content")).replace(" q", " a")

    start_together_again(procs)  # now all four pop the same session until it is empty
    popped = [collect(proc)["popped"] for proc in procs]
    everything = [item for mine in popped for item in mine]
    assert len(everything) == len(items)                     # none popped twice, none missed
    assert sorted(map(json.dumps, everything)) == sorted(map(json.dumps, items))
    position = {json.dumps(item): index for index, item in enumerate(items)}
    for mine in popped:                                      # each popper went newest first
        order = [position[json.dumps(item)] for item in mine]
        assert order == sorted(order, reverse=True)
    assert run(EventLogSession("busy", store).get_items()) == []
    with eventlog.open(store) as log:
        pops = [e.data["to_seq"] + 1 for e in log.events("busy") if e.type == REWOUND]
        assert sorted(pops) == list(range(2, 2 + len(items)))  # each item's seq popped once
        assert log.verify("busy").ok


# The SDK's own session test ideas, side by side with its SQLiteSession -------------------------

def _failing_model(fail_on: int) -> Any:
    model = load_worker()._fake_model()
    answer = model.get_response

    async def get_response(*args: Any, **kwargs: Any) -> Any:
        if len(model.inputs) + 1 == fail_on:
            model.inputs.append(None)
            raise RuntimeError("the model failed mid-turn")
        return await answer(*args, **kwargs)

    model.get_response = get_response
    return model


async def _sdk_script(session: Any) -> dict[str, Any]:
    from agents import SQLiteSession  # noqa: F401 - the peer is built by the caller

    agent = Agent(name="assistant", model=_failing_model(fail_on=3))
    outputs: list[object] = []
    outputs.append((await Runner.run(agent, "first", session=session)).final_output)
    outputs.append((await Runner.run(agent, [{"role": "user", "content": "as a list"}], session=session,
                                     run_config=RunConfig(session_input_callback=lambda history, new:
                                                          history[-1:] + new))).final_output)
    try:
        await Runner.run(agent, "this one fails", session=session)
    except RuntimeError as exc:
        outputs.append(str(exc))
    outputs.append((await Runner.run(agent, "after the failure", session=session)).final_output)
    return {"outputs": outputs, "items": await session.get_items()}


def test_sdk_scenarios_leave_what_sqlite_session_leaves(store: str, runner_env: None) -> None:
    from agents import SQLiteSession

    ours = run(_sdk_script(EventLogSession("user:1", store)))
    theirs = run(_sdk_script(SQLiteSession("user:1")))
    assert ours["outputs"] == theirs["outputs"]
    assert "the model failed mid-turn" in ours["outputs"]

    def plain(items: list[Any]) -> list[Any]:
        return [(i.get("role"), i.get("type"), str(i.get("content"))) for i in items]

    assert plain(ours["items"]) == plain(theirs["items"])
