"""How many messages survive when several processes write one conversation at once? And how
fast is the LangGraph checkpointer against LangGraph's own?

    python tools/bench_integrations.py [--workers 4] [--batches 500]
    python tools/bench_integrations.py --langgraph [--checkpoints 1000]

``--langgraph``: one thread of ``--checkpoints`` checkpoints (each with two LangChain messages
and a counter, parented on the one before) into ``EventLogSaver`` (file, SQLite and memory
stores), langgraph-checkpoint-sqlite's ``SqliteSaver`` on a file and LangGraph's
``InMemorySaver``: the mean time of a ``put``; of ``get_tuple`` of the newest (warm: the saver
has read the thread before) and of 200 random ones by id; of the first ``get_tuple`` by a fresh
saver (cold: it reads the thread once); of ``list`` of the whole thread and with ``limit=10``.

Each worker process adds ``batches`` (question, answer) pairs to the same conversation, one
``add_messages``/``add_items`` call per pair, all workers starting together. Afterwards a
fresh process's view of the conversation is counted. Stores measured, when their package
is installed: eventlog's LangChain history and OpenAI Agents session, and the frameworks'
own file stores: langchain-community's ``FileChatMessageHistory`` (one JSON file, rewritten
whole on every message) and the Agents SDK's file-backed ``SQLiteSession``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)


# Children ---------------------------------------------------------------------------------

def _pairs(worker: int, batches: int) -> list[tuple[str, str]]:
    return [(f"w{worker} q{n}", f"w{worker} a{n}") for n in range(batches)]


def _lc_history(kind: str, target: str) -> Any:
    if kind == "eventlog-langchain":
        from eventlog.integrations.langchain import EventLogChatMessageHistory
        return EventLogChatMessageHistory("bench", target)
    from langchain_community.chat_message_histories import FileChatMessageHistory
    return FileChatMessageHistory(target)


def _agents_session(kind: str, target: str) -> Any:
    if kind == "eventlog-agents":
        from eventlog.integrations.openai_agents import EventLogSession
        return EventLogSession("bench", target)
    from agents import SQLiteSession
    return SQLiteSession("bench", target)


def child_write(kind: str, target: str, worker: int, batches: int) -> dict[str, Any]:
    errors: list[str] = []
    if kind in LANGCHAIN_KINDS:
        from langchain_core.messages import AIMessage, HumanMessage
        history = _lc_history(kind, target)
        _wait_for_go()
        started = time.perf_counter()
        for question, answer in _pairs(worker, batches):
            try:
                history.add_messages([HumanMessage(question), AIMessage(answer)])
            except Exception as exc:  # what the store raised is part of the measurement
                errors.append(type(exc).__name__)
    else:
        session = _agents_session(kind, target)

        async def write() -> None:
            for question, answer in _pairs(worker, batches):
                try:
                    await session.add_items([{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}])
                except Exception as exc:
                    errors.append(type(exc).__name__)

        _wait_for_go()
        started = time.perf_counter()
        asyncio.run(write())
    # Timed here, not by the parent: the Agents SDK's exit handlers take seconds of their own.
    return {"errors": errors, "seconds": time.perf_counter() - started}


def child_count(kind: str, target: str) -> dict[str, Any]:
    try:
        if kind in LANGCHAIN_KINDS:
            texts = [str(m.content) for m in _lc_history(kind, target).messages]
        else:
            texts = [str(i.get("content")) for i in asyncio.run(_agents_session(kind, target).get_items())]
    except Exception as exc:  # a store left unreadable counts as nothing kept
        return {"texts": [], "read_error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"texts": texts, "read_error": None}


def _wait_for_go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


# Parent -----------------------------------------------------------------------------------

LANGCHAIN_KINDS = ("eventlog-langchain", "langchain-community-file")
KINDS: dict[str, str] = {  # kind -> the module it needs
    "eventlog-langchain": "langchain_core",
    "langchain-community-file": "langchain_community",
    "eventlog-agents": "agents",
    "agents-sqlite-file": "agents",
}


def _spawn(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
    return subprocess.Popen([sys.executable, __file__, "--child", *map(str, args)], text=True, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{err}")
    return json.loads(out.splitlines()[-1])


def measure(kind: str, workdir: Path, workers: int, batches: int) -> dict[str, Any]:
    target = str(workdir / ("store" if kind.startswith("eventlog") else "conversation.file"))
    procs = [_spawn("write", kind, target, w, batches) for w in range(workers)]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline() != "ready\n":
            raise RuntimeError(f"{kind}: a writer did not start:\n{proc.communicate()[1]}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [_result(proc) for proc in procs]
    errors = [e for result in results for e in result["errors"]]
    seconds = max(result["seconds"] for result in results)
    count = _result(_spawn("count", kind, target))
    texts = count["texts"]
    expected = {text for w in range(workers) for pair in _pairs(w, batches) for text in pair}
    kept = len(expected & set(texts))
    return {"store": kind, "attempted": len(expected), "kept": kept, "lost": len(expected) - kept,
            "duplicates": len(texts) - len(set(texts)), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "read_error": count["read_error"],
            "seconds": round(seconds, 2)}


# LangGraph checkpointers ---------------------------------------------------------------------

def _checkpoints(count: int) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    made = []
    for n in range(count):
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=n))
        checkpoint["channel_values"] = {"messages": [HumanMessage(f"question {n}", id=f"h{n}"),
                                                     AIMessage(f"answer {n} " + "x" * 200, id=f"a{n}")],
                                        "step": n}
        checkpoint["channel_versions"] = {"messages": f"{n + 1:032}.1", "step": f"{n + 1:032}.1"}
        made.append(checkpoint)
    return made


def _savers(workdir: Path) -> dict[str, Callable[[], Any]]:
    import sqlite3

    from eventlog.integrations.langgraph import EventLogSaver
    makers: dict[str, Callable[[], Any]] = {
        "EventLogSaver (file)": lambda: EventLogSaver(eventlog_open(workdir / "store")),
        "EventLogSaver (sqlite)": lambda: EventLogSaver(eventlog_open(f"sqlite:///{workdir / 'el.db'}")),
    }
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        makers["SqliteSaver (file)"] = lambda: SqliteSaver(
            sqlite3.connect(workdir / "checkpoints.db", check_same_thread=False))
    except ImportError:
        print("SqliteSaver: skipped (pip install langgraph-checkpoint-sqlite)", file=sys.stderr)
    from langgraph.checkpoint.memory import InMemorySaver
    shared = InMemorySaver()
    makers["InMemorySaver"] = lambda: shared  # a fresh one would be empty: it is never cold
    return makers


def eventlog_open(url: Any) -> Any:
    import eventlog
    return eventlog.open(url)


def measure_langgraph(name: str, make: Callable[[], Any], checkpoints: list[Any]) -> dict[str, Any]:
    import random

    saver = make()
    thread = {"configurable": {"thread_id": "user:42/thread", "checkpoint_ns": ""}}
    configs, parent = [], None
    started = time.perf_counter()
    for n, checkpoint in enumerate(checkpoints):
        config = {"configurable": {**thread["configurable"],
                                   **({"checkpoint_id": parent} if parent else {})}}
        stored = saver.put(config, checkpoint, {"source": "loop", "step": n, "parents": {}},
                           checkpoint["channel_versions"])
        parent = stored["configurable"]["checkpoint_id"]
        configs.append(stored)
    put = (time.perf_counter() - started) / len(checkpoints)
    started = time.perf_counter()
    fresh = make()
    assert fresh.get_tuple(thread) is not None
    cold = time.perf_counter() - started
    saver.get_tuple(thread)
    started = time.perf_counter()
    for _ in range(200):
        saver.get_tuple(thread)
    latest = (time.perf_counter() - started) / 200
    picks = random.Random(1).choices(configs, k=200)
    started = time.perf_counter()
    for config in picks:
        saver.get_tuple(config)
    by_id = (time.perf_counter() - started) / 200
    started = time.perf_counter()
    count = len(list(saver.list(thread)))
    whole = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(50):
        list(saver.list(thread, limit=10))
    ten = (time.perf_counter() - started) / 50
    assert count == len(checkpoints)
    return {"saver": name, "put_us": round(put * 1e6, 1), "get_latest_us": round(latest * 1e6, 1),
            "get_by_id_us": round(by_id * 1e6, 1), "get_cold_ms": round(cold * 1e3, 2),
            "list_all_ms": round(whole * 1e3, 1), "list_10_us": round(ten * 1e6, 1)}


def main_langgraph(args: argparse.Namespace) -> int:
    checkpoints = _checkpoints(args.checkpoints)
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in _savers(Path(tmp)).items():
            row = measure_langgraph(name, make, checkpoints)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{name:24} put {row['put_us']:7.1f} us  get newest {row['get_latest_us']:6.1f} us  "
                      f"by id {row['get_by_id_us']:6.1f} us  cold {row['get_cold_ms']:6.2f} ms  "
                      f"list all {row['list_all_ms']:6.1f} ms  list 10 {row['list_10_us']:7.1f} us",
                      flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=500, help="pairs each worker adds")
    parser.add_argument("--only", action="append", choices=sorted(KINDS), help="measure only these")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument("--langgraph", action="store_true", help="the LangGraph checkpointers instead")
    parser.add_argument("--checkpoints", type=int, default=1000, help="checkpoints in the thread")
    args = parser.parse_args(argv)
    if args.langgraph:
        return main_langgraph(args)
    rows = []
    for kind in args.only or list(KINDS):
        if importlib.util.find_spec(KINDS[kind]) is None:
            print(f"{kind}: skipped ({KINDS[kind]} is not installed)", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(kind, Path(tmp), args.workers, args.batches)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['store']:26} {args.workers} writers: kept {row['kept']:>6} of {row['attempted']:>6}"
                  f"  lost {row['lost']:>6}  dup {row['duplicates']:>3}  errors {row['errors']:>5}"
                  f" {','.join(row['error_kinds'])}  {row['seconds']:>7.2f}s"
                  + (f"  unreadable: {row['read_error']}" if row["read_error"] else ""), flush=True)
    return 0


CHILDREN: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "write": lambda a: child_write(a[0], a[1], int(a[2]), int(a[3])),
    "count": lambda a: child_count(a[0], a[1]),
}

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(CHILDREN[sys.argv[2]](sys.argv[3:])))
        sys.exit(0)
    sys.exit(main())
