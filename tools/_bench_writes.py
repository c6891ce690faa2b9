"""Workloads 1 to 4: appends, one process and several, with and without fsync."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from _bench_columns import Column
from _bench_context import Bench, Result
from _bench_data import batches, messages
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


def _append_cell(bench: Bench, column: Column, workload: str, n: int, result: Result) -> None:
    durable = workload == "durable"
    store = bench.open(column, workload, durable=durable)
    try:
        if durable and store.no_durable:
            raise Unsupported(store.no_durable)
        sid, seed = bench.sid(workload), bench.seed(workload)
        store.create(sid, bench.base_ts)
        k1, k2 = bench.sizes.sample_first, bench.sizes.sample_last
        if store.quadratic and n > k1 + k2:
            t1 = _time_appends(store, sid, store.prepare(sid, messages(seed, 0, k1, bench.base_ts)))
            for batch in batches(seed, k1, n - k2, bench.base_ts, bench.fill_batch(store, n)):
                store.fill(sid, batch)
            t2 = _time_appends(store, sid, store.prepare(sid, messages(seed, n - k2, n, bench.base_ts)))
            seconds = _extrapolate(n, (k1, t1), (k2, t2))
            result.update(extrapolated=True, sample=[k1, k2], first_us=t1 / k1 * 1e6, last_us=t2 / k2 * 1e6)
        else:
            seconds = _time_appends(store, sid, store.prepare(sid, messages(seed, 0, n, bench.base_ts)))
        stored = len(store.read_back(sid))
        if stored != n:
            raise RuntimeError(f"{stored} messages stored after {n} appends")
        result.update(messages=n, seconds=seconds, per_s=n / seconds, us_per_msg=seconds / n * 1e6)
    finally:
        bench.release(store)


def run_append(bench: Bench) -> None:
    bench.say(f"1 append: {bench.sizes.messages:,} messages, one call each")
    for column in bench.columns:
        with bench.cell("append", column.name) as result:
            _append_cell(bench, column, "append", bench.sizes.messages, result)


def run_durable(bench: Bench) -> None:
    bench.say(f"2 durable append: {bench.sizes.durable:,} messages, fsync each")
    for column in bench.columns:
        with bench.cell("durable", column.name) as result:
            _append_cell(bench, column, "durable", bench.sizes.durable, result)


def check_read_back(found: list[tuple[str, str] | None], acked: dict[str, str]) -> dict[str, int]:
    """Lost (acknowledged, not there), duplicated (there more than once) and damaged
    (unreadable, unknown id, or wrong content) messages."""
    counts = Counter(entry[0] for entry in found if entry is not None)
    damaged = sum(1 for entry in found if entry is None or acked.get(entry[0]) != entry[1])
    return {"lost": sum(1 for msg_id in acked if msg_id not in counts),
            "duplicated": sum(c - 1 for c in counts.values() if c > 1),
            "damaged": damaged}


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
        jobs = [{"op": "append", "spec": store.spec.to_json(), "sid": sid, "seed": seed, "lo": k * per,
                 "hi": (k + 1) * per, "base_ts": bench.base_ts} for k in range(sizes.procs)]
        reports = run_workers(jobs)
        seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        failed = {msg_id for r in reports for msg_id in r["failed"]}
        acked = {m.id: m.content for m in messages(seed, 0, per * sizes.procs, bench.base_ts)
                 if m.id not in failed}
        problems: list[str] = []
        try:
            found = store.read_back(sid)
            problems += store.problems(sid)
        except Exception as exc:  # a peer's file may be unreadable after the race
            found = []
            problems.append(f"read back failed: {type(exc).__name__}: {exc}")
        result.update(check_read_back(found, acked))
        result.update(procs=sizes.procs, per_proc=per, messages=len(acked), failed=len(failed),
                      seconds=seconds, per_s=len(acked) / seconds, writers=len({r["pid"] for r in reports}),
                      overlap=max_overlap(reports), problems=problems[:5])
        first_error = next((r["error"] for r in reports if r["error"]), "")
        if first_error:
            result["first_failure"] = first_error
        single = bench.results.get("durable", {}).get(column.name, {}).get("per_s")
        if durable and single:
            result["x_single"] = result["per_s"] / single
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
