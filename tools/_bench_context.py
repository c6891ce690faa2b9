"""One benchmark run's shared state: sizes, the columns that run, where data goes, and results."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from _bench_columns import Column, make_store, spec
from _bench_store import Store, Unsupported


@dataclass
class Sizes:
    """Workload sizes; the defaults are issue 5's."""

    messages: int = 20_000          # 1 append
    durable: int = 2_000            # 2 durable append
    procs: int = 4                  # 3, 4 concurrent writers
    per_proc: int = 5_000           # 3 messages per writer
    durable_per_proc: int = 500     # 4 messages per durable writer
    replay: int = 200_000           # 5 replayed session
    long: int = 1_000_000           # 5 streaming replay, 6 tail of the long session
    capped_long: int = 200_000      # 5, 6 the long session of the capped columns (other eventlog backends)
    tail_small: int = 1_000         # 6 the short session
    tail_calls: int = 50            # 6 calls per median
    sessions: int = 10_000          # 7 sessions...
    session_messages: int = 10      # 7 ...of this many messages
    capped_sessions: int = 2_000    # 7 sessions of the capped columns
    catalog_sessions: int = 100_000  # 7 sessions (of one message) the first page is read from
    sample_first: int = 200        # quadratic peers: appends timed at the start...
    sample_last: int = 10           # ...and at the end of the session, then extrapolated
    rewrite_per_proc: int = 100     # quadratic peers' messages per concurrent writer
    fill_batch: int = 5_000         # untimed bulk fill batch
    rounds: int = 5                 # 1, 2 interleaved rounds per column (the median is reported)
    replay_rounds: int = 3          # 5 interleaved replays per column (the median is reported)
    fork_events: int = 100_000      # 8 the session forked whole
    rewind_events: int = 1_000_000  # 8 the session rewound to its middle (capped columns: capped_long)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(messages=400, durable=60, per_proc=150, durable_per_proc=20, replay=3_000, long=12_000,
                   capped_long=6_000, tail_small=200, tail_calls=15, sessions=60, capped_sessions=30,
                   catalog_sessions=300,
                   sample_first=40, sample_last=10, rewrite_per_proc=20, fill_batch=2_000,
                   fork_events=2_000, rewind_events=12_000)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


Result = dict[str, Any]


@dataclass
class Bench:
    sizes: Sizes
    columns: list[Column]
    workdir: Path
    redis_url: str
    skipped: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Result]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    now: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    verbose: bool = True
    compaction: bool = False  # also compact the long session and read it again (issue 3's figures)
    _stores: dict[int, tuple[Store, Path]] = field(default_factory=dict)

    @property
    def base_ts(self) -> float:
        """Timestamps of the ordinary workloads' messages start a day before the run."""
        return self.now - 86_400.0

    def seed(self, workload: str) -> int:
        """The data stream of a workload: the same for every column."""
        return sum(workload.encode()) * 7919 % 2**31

    def sid(self, workload: str, suffix: str = "s") -> str:
        return f"b{self.run_id}-{workload}-{suffix}"

    def open(self, column: Column, workload: str, *, durable: bool = False) -> Store:
        """A fresh store for one column and workload: its own directory, and on a server its
        own session-id prefix (``discard`` removes exactly that)."""
        directory = self.workdir / workload / column.name
        found = spec(column, str(directory), self.redis_url, durable=durable, prefix=self.sid(workload, ""))
        store = make_store(found)
        self._stores[id(store)] = (store, directory)
        return store

    def reopen(self, store: Store) -> Store:
        """Close ``store`` and open its spec again, its data kept (a process-local store is kept as is)."""
        if not store.shared:
            return store
        _, directory = self._stores.pop(id(store))
        store.close()
        again = make_store(store.spec)
        self._stores[id(again)] = (again, directory)
        return again

    def release(self, store: Store) -> None:
        """Close a store and remove its data: its directory, or its sessions on a server."""
        _, directory = self._stores.pop(id(store), (store, None))
        try:
            store.discard()
        finally:
            store.close()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    def release_all(self) -> None:
        for store, _ in list(self._stores.values()):
            try:
                self.release(store)
            except Exception as exc:  # cleanup must not hide the results
                self.say(f"  cleanup of {store.spec.column} failed: {exc}")

    def fill_batch(self, store: Store, count: int) -> int:
        """Messages per untimed fill call: a store that rewrites the session per call gets them all
        at once (in batches its fill would be quadratic too)."""
        return max(1, count) if store.quadratic else self.sizes.fill_batch

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def record(self, workload: str, column: str, result: Result) -> None:
        self.results.setdefault(workload, {})[column] = result

    def fail(self, workload: str, column: str, result: Result, exc: Exception) -> None:
        """Make ``result`` say why its cell has no figures: Unsupported (n/a), or an error."""
        result.clear()
        if isinstance(exc, Unsupported):
            result["skipped"] = str(exc)
            return
        result["error"] = f"{type(exc).__name__}: {exc}"
        self.notes.append(f"{workload} / {column}: {result['error']}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exception(exc)

    @contextmanager
    def cell(self, workload: str, column: str) -> Iterator[Result]:
        """Run one column of one workload; Unsupported and failures become the cell's note."""
        result: Result = {}
        started = time.monotonic()
        try:
            yield result
        except Exception as exc:
            self.fail(workload, column, result, exc)
        self.record(workload, column, result)
        state = result.get("skipped") or result.get("error") or "ok"
        self.say(f"  {workload:<18} {column:<16} {time.monotonic() - started:6.1f}s  {state}")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def interleaved_ms(probes: dict[str, Callable[[], object]], calls: int) -> dict[str, float]:
    """The median milliseconds of each probe over ``calls`` calls, the probes taking turns, so
    the figures compared with each other (1,000 vs 1,000,000 messages) share the same moments."""
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(calls):
        for name, probe in probes.items():
            start = time.perf_counter()
            probe()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) * 1e3 for name, found in times.items()}
