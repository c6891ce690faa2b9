"""Workload 8 (issue 17): fork a long session, and read a session's state after a rewind.

Run on every eventlog column (the peers have no such operations): a session of
``Sizes.fork_events`` messages is forked whole (timed: the copy, its verify-ready chain and
the ``session.forked`` event), and a session of ``Sizes.rewind_events`` messages (capped
columns: ``Sizes.capped_long``) is rewound to its middle, then ``get_session`` is timed
in a fresh store handle (no fold kept: the newest snapshot is before the rewind, so the
read folds the state at the rewind's ``to_seq`` from an older snapshot) and again warm.
"""

from __future__ import annotations

import statistics
import time

from _bench_context import Bench, Result, timed
from _bench_data import batches

import eventlog


def _fill(bench: Bench, store: object, sid: str, count: int) -> None:
    fill = store.fill  # type: ignore[attr-defined]
    for batch in batches(bench.seed("history"), 0, count, bench.base_ts, bench.sizes.fill_batch):
        fill(sid, batch)


def run_history(bench: Bench) -> None:
    s = bench.sizes
    bench.say(f"8 history: fork of {s.fork_events:,}, get_session after a rewind in "
              f"{s.rewind_events:,}")
    for column in bench.columns:
        if column.kind != "eventlog":
            continue
        store = bench.open(column, "history")
        try:
            with bench.cell("history", column.name) as result:
                _one(bench, column.capped, store, result)
        finally:
            bench.release(store)


def _one(bench: Bench, capped: bool, store: object, result: Result) -> None:
    s = bench.sizes
    log: eventlog.EventLog = store.log  # type: ignore[attr-defined]
    src, copy, long = bench.sid("history", "src"), bench.sid("history", "fork"), bench.sid("history", "long")
    store.create(src, bench.base_ts)  # type: ignore[attr-defined]
    _fill(bench, store, src, s.fork_events)
    result["fork_s"], _ = timed(lambda: log.fork(src, copy))
    result["fork_events"] = s.fork_events + 2
    result["fork_per_s"] = result["fork_events"] / result["fork_s"]
    count = min(s.rewind_events, s.capped_long) if capped else s.rewind_events
    store.create(long, bench.base_ts)  # type: ignore[attr-defined]
    _fill(bench, store, long, count)
    result["rewind_s"], _ = timed(lambda: log.rewind(long, count // 2, reason="bench"))
    result["rewind_events"] = count
    location = store.spec.location  # type: ignore[attr-defined]
    shared = store.shared  # type: ignore[attr-defined]
    with eventlog.open(location) if shared else _no_close(log) as fresh:
        fresh._views.clear()  # a process-local store: the same handle, its read caches emptied
        fresh._folds.clear()
        start = time.perf_counter()
        session = fresh.get_session(long)
        result["rewound_session_cold_ms"] = (time.perf_counter() - start) * 1e3
        assert session.message_count == count // 2 - 1 and session.last_seq == count + 2
        warm = []
        for _ in range(20):
            start = time.perf_counter()
            fresh.get_session(long)
            warm.append(time.perf_counter() - start)
        result["rewound_session_ms"] = statistics.median(warm) * 1e3


class _no_close:
    def __init__(self, log: eventlog.EventLog) -> None:
        self.log = log

    def __enter__(self) -> eventlog.EventLog:
        return self.log

    def __exit__(self, *exc: object) -> None:
        pass
