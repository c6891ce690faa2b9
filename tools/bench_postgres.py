#!/usr/bin/env python3
"""The PostgreSQL backend's targets (issue 16), measured in one run on the test server:
``python tools/bench_postgres.py`` (``--long 1000000`` is the default; ``--quick`` shrinks
everything).

- single-writer append: eventlog vs the floor (raw psycopg, one INSERT of one row per event
  in its own transaction, prepared), alternated over ``--rounds`` rounds
- 8 writer processes on 8 sessions vs 1 writer, eventlog (each process its own pool)
- replay: ``events()`` vs a raw SELECT of the same rows (orjson.loads each)
- get_session and tail(50) (``get_messages(limit=50)``) on a ``--long`` session vs a
  1,000-event one: the median of ``--calls`` calls each

Every store is a schema of its own, dropped at the end. Prints ``uptime`` first: the figures
of a loaded machine are noisy; quote ratios from one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import orjson  # noqa: E402
import psycopg  # noqa: E402

import eventlog  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def _message(sid: str, i: int) -> eventlog.ChatMessage:
    return eventlog.ChatMessage(sender="Agent-1", recipient="Agent-2", session_id=sid,
                                content=f"message {i}: " + "lorem ipsum dolor sit amet " * 4)


def _eventlog_appends(url: str, sid: str, count: int) -> float:
    with eventlog.open(url) as log:
        msgs = [_message(sid, i) for i in range(count)]
        start = time.perf_counter()
        for m in msgs:
            log.add_message(m)
        return count / (time.perf_counter() - start)


def _floor_appends(conn: psycopg.Connection[tuple[object, ...]], schema: str, count: int) -> float:
    lines = [orjson.dumps({"sender": "Agent-1", "content": _message("x", i).content}) for i in range(count)]
    sql = f'INSERT INTO "{schema}".rows (session, line) VALUES (%s, %s)'
    start = time.perf_counter()
    for line in lines:
        conn.execute(sql, ("s", line), prepare=True)
    return count / (time.perf_counter() - start)


def _writer(args: tuple[str, str, int, float]) -> float:
    url, sid, count, go = args
    with eventlog.open(url) as log:
        msgs = [_message(sid, i) for i in range(count)]
        log.get_session(sid)  # connected before the start
        while time.time() < go:
            time.sleep(0.001)
        start = time.perf_counter()
        for m in msgs:
            log.add_message(m)
        return time.perf_counter() - start


def _median_ms(call: object, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--replay", type=int, default=100_000)
    parser.add_argument("--long", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.appends, args.rounds, args.replay, args.long, args.calls = 100, 1, 5000, 20_000, 10
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    admin = psycopg.connect(SERVER, autocommit=True)
    base = f"bench_pg_{uuid.uuid4().hex[:8]}"
    schemas = [f"{base}_{k}" for k in range(4)]
    try:
        url = f"{SERVER}?schema={schemas[0]}"
        floor = schemas[1]
        admin.execute(f'CREATE SCHEMA "{floor}"')
        admin.execute(f'CREATE TABLE "{floor}".rows (session text NOT NULL, seq bigint GENERATED ALWAYS AS '
                      "IDENTITY, line bytea NOT NULL, PRIMARY KEY (session, seq))")
        with eventlog.open(url) as log:
            for k in range(args.writers):
                log.create_session(f"w{k}")
            log.create_session("single")
        mine, raw = [], []
        for _ in range(args.rounds):
            mine.append(_eventlog_appends(url, "single", args.appends))
            raw.append(_floor_appends(admin, floor, args.appends))
        a, f = statistics.median(mine), statistics.median(raw)
        print(f"single-writer append ({args.appends} x {args.rounds} rounds, medians): eventlog-postgres "
              f"{a:,.0f}/s, postgres-insert {f:,.0f}/s: {a / f:.2f}x the floor (target >= 0.7x)")

        per = args.appends
        one = per / _writer((url, "w0", per, 0.0))
        go = time.time() + 1.5
        with multiprocessing.get_context("spawn").Pool(args.writers) as pool:
            spans = pool.map(_writer, [(url, f"w{k}", per, go) for k in range(args.writers)])
        many = args.writers * per / max(spans)
        print(f"{args.writers} writer processes on {args.writers} sessions: {many:,.0f}/s vs one writer "
              f"{one:,.0f}/s: {many / one:.2f}x (target >= 1.5x)")

        big = f"{SERVER}?schema={schemas[2]}&options=-c%20synchronous_commit%3Doff"
        with eventlog.open(big) as log:
            for sid, size in (("replay", args.replay), ("long", args.long), ("small", 1000)):
                log.create_session(sid, participants=["Agent-1", "Agent-2"])
                for first in range(0, size, 10_000):
                    log.add_messages([_message(sid, i) for i in range(first, min(size, first + 10_000))])
            list(log.events("replay"))  # warm
            start = time.perf_counter()
            n = len(list(log.events("replay")))
            mine_replay = n / (time.perf_counter() - start)
            gen = admin.execute(f'SELECT gen FROM "{schemas[2]}".sessions WHERE id = %s',
                                ("replay",)).fetchone()
            assert gen is not None
            sql = f'SELECT line FROM "{schemas[2]}".events WHERE session = %s ORDER BY seq'
            start = time.perf_counter()
            rows = [orjson.loads(r[0]) for r in admin.execute(sql, (gen[0],), binary=True)]
            raw_replay = len(rows) / (time.perf_counter() - start)
            print(f"replay of {n:,} events: events() {mine_replay:,.0f}/s, raw SELECT + orjson.loads "
                  f"{raw_replay:,.0f}/s: {mine_replay / raw_replay:.2f}x (target >= 0.5x)")
            for what, call in (("get_session", lambda sid: log.get_session(sid)),
                               ("tail(50)", lambda sid: log.get_messages(sid, limit=50))):
                call("long")
                call("small")
                long_ms = _median_ms(lambda c=call: c("long"), args.calls)
                small_ms = _median_ms(lambda c=call: c("small"), args.calls)
                print(f"{what} on {args.long:,} events {long_ms:.2f} ms vs 1,000 events {small_ms:.2f} ms: "
                      f"{long_ms / small_ms:.2f}x (target within 2x)")
    finally:
        for schema in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
