"""Workloads 1 to 4: appends, one process and several, with and without fsync."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from _bench_columns import Column
from _bench_context import Bench, Result
from _bench_data import Msg, batches, messages
from _bench_procs import max_overlap, run_workers
from _bench_store import Store, Unsupported


def _time_appends(store: Store, sid: str, items: list[Any]) -> float:
    append = store.append
    start = time.perf_counter()
    for item in items:
        append(sid, item)
    return time.perf_counter() - start


def _extrapolate(n: int, first: tuple[int, float], last: tuple[int, float]) -> float:
    """Total seconds for ``n`` appends whose cost grows linearly with the session, from the
    first ``k1`` appends (taking ``t1``) and the last ``k2`` (taking ``t2``)."""
    (k1, t1), (k2, t2) = first, last
    mid1, mid2 = (k1 - 1) / 2, n - (k2 + 1) / 2
    slope = (t2 / k2 - t1 / k1) / (mid2 - mid1)
    base = t1 / k1 - slope * mid1
    return n * base + slope * n * (n - 1) / 2


@dataclass
class _Lane:
    """One column's share of an interleaved append run."""

    column: Column
    store: Store
    items: list[Any]
    result: Result
    rounds: list[float] = field(default_factory=list)
    error: Exception | None = None


def _open_lane(bench: Bench, column: Column, workload: str, msgs: list[Msg]) -> _Lane | None:
    result: Result = {}
    store = None
    try:
        store = bench.open(column, workload, durable=workload == "durable")
        if workload == "durable" and store.no_durable:
            raise Unsupported(store.no_durable)
        sid = bench.sid(workload)
        store.create(sid, bench.base_ts)
        items = [] if store.quadratic else store.prepare(sid, msgs)
        return _Lane(column, store, items, result)
    except Exception as exc:
        bench.fail(workload, column.name, result, exc)
        bench.record(workload, column.name, result)
        if store is not None:
            bench.release(store)
        return None


def _run_rounds(bench: Bench, workload: str, lanes: list[_Lane], n: int) -> None:
    """Time every lane's appends in rounds, the lanes taking turns (in a rotating order), so a
    change in the machine's load falls on every column alike."""
    rounds = max(1, min(bench.sizes.rounds, n))
    cuts = [n * r // rounds for r in range(rounds + 1)]
    sid = bench.sid(workload)
    for r in range(rounds):
        for lane in lanes[r % len(lanes):] + lanes[:r % len(lanes)]:
            if lane.error is not None:
                continue
            try:
                lane.rounds.append(_time_appends(lane.store, sid, lane.items[cuts[r]:cuts[r + 1]]))
            except Exception as exc:
                lane.error = exc
    for lane in lanes:
        if lane.error is None:
            chunks = [cuts[r + 1] - cuts[r] for r in range(rounds)]
            per_msg = statistics.median(t / c for t, c in zip(lane.rounds, chunks, strict=True))
            lane.result.update(messages=n, rounds=rounds, seconds=sum(lane.rounds), per_s=1 / per_msg,
                               us_per_msg=per_msg * 1e6, round_us=[t / c * 1e6 for t, c in
                                                                   zip(lane.rounds, chunks, strict=True)])


def _sampled(bench: Bench, lane: _Lane, workload: str, n: int) -> None:
    """A quadratic store: time its first and last appends, fill between untimed, extrapolate."""
    store, sid, seed, base = lane.store, bench.sid(workload), bench.seed(workload), bench.base_ts
    k1, k2 = bench.sizes.sample_first, bench.sizes.sample_last
    if n <= k1 + k2:
        seconds = _time_appends(store, sid, store.prepare(sid, messages(seed, 0, n, base)))
    else:
        t1 = _time_appends(store, sid, store.prepare(sid, messages(seed, 0, k1, base)))
        for batch in batches(seed, k1, n - k2, base, bench.fill_batch(store, n)):
            store.fill(sid, batch)
        t2 = _time_appends(store, sid, store.prepare(sid, messages(seed, n - k2, n, base)))
        seconds = _extrapolate(n, (k1, t1), (k2, t2))
        lane.result.update(extrapolated=True, sample=[k1, k2], first_us=t1 / k1 * 1e6, last_us=t2 / k2 * 1e6)
    lane.result.update(messages=n, seconds=seconds, per_s=n / seconds, us_per_msg=seconds / n * 1e6)


def _append_workload(bench: Bench, workload: str, n: int) -> None:
    msgs = messages(bench.seed(workload), 0, n, bench.base_ts)
    lanes = [lane for c in bench.columns if (lane := _open_lane(bench, c, workload, msgs)) is not None]
    started = time.monotonic()
    _run_rounds(bench, workload, [lane for lane in lanes if not lane.store.quadratic], n)
    bench.say(f"  {workload:<18} {len(lanes)} columns interleaved  {time.monotonic() - started:6.1f}s")
    for lane in lanes:
        name = lane.column.name
        with bench.cell(workload, name) as result:
            try:
                if lane.store.quadratic:
                    _sampled(bench, lane, workload, n)
                if lane.error is not None:
                    raise lane.error
                stored = len(lane.store.read_back(bench.sid(workload)))
                if stored != n:
                    raise RuntimeError(f"{stored} messages stored after {n} appends")
                result.update(lane.result)
            finally:
                bench.release(lane.store)


def run_append(bench: Bench) -> None:
    bench.say(f"1 append: {bench.sizes.messages:,} messages, one call each, {bench.sizes.rounds} rounds")
    _append_workload(bench, "append", bench.sizes.messages)


def run_durable(bench: Bench) -> None:
    bench.say(f"2 durable append: {bench.sizes.durable:,} messages, fsync each, {bench.sizes.rounds} rounds")
    _append_workload(bench, "durable", bench.sizes.durable)


def check_read_back(found: list[tuple[str, str] | None], acked: dict[str, str]) -> dict[str, int]:
    """Lost (acknowledged, not there), duplicated (there more than once) and damaged
    (unreadable, unknown id, or wrong content) messages."""
    counts = Counter(entry[0] for entry in found if entry is not None)
    damaged = sum(1 for entry in found if entry is None or acked.get(entry[0]) != entry[1])
    return {"lost": sum(1 for msg_id in acked if msg_id not in counts),
            "duplicated": sum(c - 1 for c in counts.values() if c > 1),
            "damaged": damaged}


@dataclass
class _Runs:
    """Worker runs of one concurrent cell, each on its own slice of the shared data."""

    next_index: int = 0
    reports: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)

    def run(self, store: Store, sid: str, base_ts: float, seed: int, mode: str, procs: int, per: int) -> None:
        jobs = []
        for _ in range(procs):
            jobs.append({"op": "append", "spec": store.spec.to_json(), "sid": sid, "seed": seed,
                         "lo": self.next_index, "hi": self.next_index + per, "base_ts": base_ts})
            self.next_index += per
        self.reports.setdefault(mode, []).append(run_workers(jobs))

    def rate(self, mode: str) -> tuple[int, float]:
        """Acknowledged appends, and seconds from the first worker's start to the last one's end,
        summed over the runs of ``mode``."""
        acked = seconds = 0.0
        for reports in self.reports.get(mode, []):
            acked += sum(r["hi"] - r["lo"] - len(r["failed"]) for r in reports)
            seconds += max(r["end"] for r in reports) - min(r["start"] for r in reports)
        return int(acked), seconds

    def every(self) -> list[dict[str, Any]]:
        return [r for runs in self.reports.values() for reports in runs for r in reports]


def _concurrent_cell(bench: Bench, column: Column, workload: str, result: Result) -> None:
    durable = workload == "concurrent_durable"
    store = bench.open(column, workload, durable=durable)
    try:
        if not store.shared:
            raise Unsupported("process-local store")
        if durable and store.no_durable:
            raise Unsupported(store.no_durable)
        sizes = bench.sizes
        per = sizes.durable_per_proc if durable else sizes.per_proc
        if store.quadratic and per > sizes.rewrite_per_proc:
            per = sizes.rewrite_per_proc
            result["reduced"] = True  # its cost per append grows with the session: a smaller run
        sid, seed = bench.sid(workload), bench.seed(workload)
        store.create(sid, bench.base_ts)
        runs = _Runs()
        # Group commit is a ratio of two throughputs whose fsyncs share a disk with the rest of
        # the machine: the single writer and the group take turns, twice, so both see its moods.
        for _ in range(2 if durable else 1):
            if durable:
                runs.run(store, sid, bench.base_ts, seed, "single", 1, per)
            runs.run(store, sid, bench.base_ts, seed, "group", sizes.procs, per)
        every = runs.every()
        failed = {msg_id for r in every for msg_id in r["failed"]}
        acked = {m.id: m.content for m in messages(seed, 0, runs.next_index, bench.base_ts)
                 if m.id not in failed}
        problems: list[str] = []
        try:
            found = store.read_back(sid)
            problems += store.problems(sid)
        except Exception as exc:  # a peer's file may be unreadable after the race
            found = []
            problems.append(f"read back failed: {type(exc).__name__}: {exc}")
        result.update(check_read_back(found, acked))
        group, seconds = runs.rate("group")
        last = runs.reports["group"][-1]
        result.update(procs=sizes.procs, per_proc=per, messages=len(acked), failed=len(failed),
                      seconds=seconds, per_s=group / seconds, writers=len({r["pid"] for r in last}),
                      overlap=max_overlap(last), problems=problems[:5])
        if durable:
            single, single_seconds = runs.rate("single")
            result.update(single_per_s=single / single_seconds,
                          x_single=(group / seconds) / (single / single_seconds))
        first_error = next((r["error"] for r in every if r["error"]), "")
        if first_error:
            result["first_failure"] = first_error
    finally:
        bench.release(store)


def run_concurrent(bench: Bench) -> None:
    s = bench.sizes
    bench.say(f"3 concurrent append: {s.procs} processes x {s.per_proc:,}, one session")
    for column in bench.columns:
        with bench.cell("concurrent", column.name) as result:
            _concurrent_cell(bench, column, "concurrent", result)


def run_concurrent_durable(bench: Bench) -> None:
    s = bench.sizes
    bench.say(f"4 concurrent durable append: {s.procs} processes x {s.durable_per_proc:,}, fsync each")
    for column in bench.columns:
        with bench.cell("concurrent_durable", column.name) as result:
            _concurrent_cell(bench, column, "concurrent_durable", result)
