"""How long does an asyncio loop stop while eventlog works under it?

    python tools/bench_async.py [--only appends,read-long,get-items] [--no-gc-pause] [--heap]

A ticker task sleeps 1 ms at a time and records how late each wake-up is; the worst lateness
is the loop's worst pause (the target: under 20 ms). Scenarios, each on a fresh file store:

- ``idle``: the ticker alone: the machine's own noise floor, to read the others against.
- ``busy``: the ticker while one plain thread builds dicts for 2 s (no eventlog): the floor
  for any design that runs Python in a worker thread, the GIL's switch interval plus the
  machine's load.
- ``appends``: 1,000 sessions appending concurrently through ``open_async`` (``--appends``
  events each, one ``append`` call per event); ``--store URL`` sends them to another store
  (Redis, PostgreSQL), whose round trips the worker threads wait for without the GIL.
- ``read-long``: ``async for`` over ``events()`` of a 100,000-event session.
- ``get-items``: issue 19's case: 200 full ``get_items()`` of a 4,000-item OpenAI Agents
  session (needs ``openai-agents``).

``--heap`` imports the frameworks first (openai-agents, langgraph, google-adk where
installed), as an app has them: a full garbage collection walks every object they made.
``--freeze`` calls ``gc.freeze()`` after the imports, as the README advises.
``--switch-interval 0.001`` sets how long a thread keeps the GIL while another waits
(5 ms by default; an app's choice, not the library's). ``--no-inline`` runs every call
in a worker thread (the design before short calls ran on the loop's thread), for an A/B
in one build. ``--no-gc-pause`` runs the worker calls with the collector left on, to show
what the pause buys. Each scenario reports the
worst pause, the 99th percentile, garbage collections by generation (count, worst) and the
wall time. On Linux it also reports the worst pause less the time the loop's thread sat in
the kernel's run queue during it (``/proc/.../schedstat``): on a shared machine much of a
long pause is the loop waiting for a CPU, not for this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eventlog
from eventlog.store import _async

TICK = 0.001


class Collections:
    """Every garbage collection's generation and duration, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seen.append((info["generation"], time.perf_counter() - self._start))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for generation in (0, 1, 2):
            times = [d for g, d in self.seen if g == generation]
            out[f"gen{generation}"] = [len(times), round(max(times, default=0.0) * 1000, 1)]
        return out


def run_queue_wait() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (0 off Linux)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except OSError:
        return 0.0


async def measured(work: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    lateness: list[float] = []
    own: list[float] = []  # lateness less the loop thread's wait for a CPU
    done = asyncio.Event()

    async def ticker() -> None:
        last, queued = time.perf_counter(), run_queue_wait()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now, now_queued = time.perf_counter(), run_queue_wait()
            lateness.append(max(0.0, now - last - TICK))
            own.append(max(0.0, now - last - TICK - (now_queued - queued)))
            last, queued = now, now_queued

    collections = Collections()
    gc.callbacks.append(collections)
    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        await work()
    finally:
        wall = time.perf_counter() - started
        done.set()
        await tick
        gc.callbacks.remove(collections)
    lateness.sort()
    own.sort()
    return {"worst_ms": round(lateness[-1] * 1000, 1),
            "own_worst_ms": round(own[-1] * 1000, 1),
            "own_p99_ms": round(own[int(len(own) * 0.99)] * 1000, 2),
            "p99_ms": round(lateness[int(len(lateness) * 0.99)] * 1000, 2),
            "median_ms": round(statistics.median(lateness) * 1000, 2),
            "seconds": round(wall, 2), **collections.summary()}


async def idle(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    return await measured(lambda: asyncio.sleep(2.0))


async def busy(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    def spin() -> None:
        until = time.perf_counter() + 2.0
        while time.perf_counter() < until:
            [{"n": n, "text": "x"} for n in range(1000)]

    async def work() -> None:
        thread = threading.Thread(target=spin)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.05)

    return await measured(work)


async def appends(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    log = eventlog.open_async(args.store or root / "appends", workers=args.workers, inline=args.inline)
    sessions = [f"bench-async-{os.getpid()}-{n}" for n in range(args.sessions)]
    for sid in sessions:
        log.sync.create_session(sid)

    async def one(sid: str) -> None:
        for n in range(args.appends):
            await log.append(sid, "bench.event", {"n": n, "text": "x" * 200})

    async def work() -> None:
        await asyncio.gather(*(one(sid) for sid in sessions))

    result = await measured(work)
    assert sum(log.sync.get_session(sid).last_seq for sid in sessions) == len(sessions) * (args.appends + 1)
    if args.store:  # a shared server: leave nothing behind
        for sid in sessions:
            log.sync.delete_session(sid)
    await log.close()
    return {**result, "events": len(sessions) * args.appends}


async def read_long(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    log = eventlog.open_async(root / "long", inline=args.inline)
    log.sync.create_session("long")
    for start in range(0, args.long, 5000):
        log.sync.append_many("long", [("bench.event", {"n": n, "text": "x" * 200})
                                      for n in range(start, min(args.long, start + 5000))])
    count = 0

    async def work() -> None:
        nonlocal count
        async for _ in log.events("long"):
            count += 1

    result = await measured(work)
    assert count == args.long + 1
    await log.close()
    return {**result, "events": count}


async def get_items(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from eventlog.integrations import _common
    from eventlog.integrations.openai_agents import EventLogSession

    session = EventLogSession("big", str(root / "items"))
    _common._async_logs[session.log] = eventlog.AsyncEventLog(session.log, inline=args.inline)
    await session.add_items([{"role": "user", "content": f"message {n} " + "x" * 100}
                             for n in range(4000)])

    async def work() -> None:
        for _ in range(200):
            assert len(await session.get_items()) == 4000

    return await measured(work)


SCENARIOS: dict[str, Callable[[Path, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]] = {
    "idle": idle, "busy": busy, "appends": appends, "read-long": read_long, "get-items": get_items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--store", help="URL of the store the appends go to (default: a fresh file store), "
                        "e.g. redis://127.0.0.1:6379/0?prefix=bench:")
    parser.add_argument("--appends", type=int, default=20, help="events each session appends")
    parser.add_argument("--long", type=int, default=100_000, help="events in the long session")
    parser.add_argument("--workers", type=int, default=_async.WORKERS, help="worker threads per store")
    parser.add_argument("--inline", action=argparse.BooleanOptionalAction, default=None,
                        help="short calls on the loop's thread (default: where the store is local); "
                        "--no-inline sends every call to a worker thread, as before")
    parser.add_argument("--no-gc-pause", action="store_true",
                        help="leave the collector on during worker calls")
    parser.add_argument("--heap", action="store_true", help="import the frameworks first")
    parser.add_argument("--freeze", action="store_true",
                        help="gc.freeze() after the imports, as the README advises an app to")
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval(SECONDS) first: how long the loop may wait for the GIL")
    parser.add_argument("--json", action="store_true", help="one JSON line per scenario")
    args = parser.parse_args(argv)
    if args.heap:
        for module in ("agents", "langgraph.graph", "google.adk.runners"):
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    if args.freeze:
        gc.freeze()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.no_gc_pause:
        _async._collector_pause = contextlib.nullcontext()  # type: ignore[assignment]
    names = args.only.split(",") if args.only else list(SCENARIOS)
    print(f"python {sys.version.split()[0]}, {len(gc.get_objects())} tracked objects "
          f"({gc.get_freeze_count()} frozen), collector paused in workers: {not args.no_gc_pause}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name == "get-items" and importlib.util.find_spec("agents") is None:
                print(f"{name}: skipped (openai-agents is not installed)", file=sys.stderr)
                continue
            result = asyncio.run(SCENARIOS[name](Path(tmp), args))
            if args.json:
                print(json.dumps({"scenario": name, **result}), flush=True)
            else:
                print(f"{name:10} worst {result['worst_ms']:6.1f} ms  p99 {result['p99_ms']:5.2f} ms  "
                      f"(less CPU waits: {result['own_worst_ms']:5.1f}, {result['own_p99_ms']:5.2f})  "
                      f"gc gen0/1/2 {result['gen0']} {result['gen1']} {result['gen2']} "
                      f"(count, worst ms)  {result['seconds']:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
