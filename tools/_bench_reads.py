"""Workloads 5 to 7: replay, tail reads, compaction, and many sessions.

Replay and tail share one long session per column, grown in steps: it is replayed when it
holds ``replay`` messages, grown to ``long``, streamed, tail-read, and (for eventlog,
once ``EventLog.compact`` exists) compacted and read again. Filling a million-message
session is the run's biggest cost, so it is done once per column, untimed, in batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from _bench_columns import BY_NAME, Column
from _bench_context import Bench, Result, interleaved_ms, timed
from _bench_data import DAY, batches, messages
from _bench_procs import run_workers
from _bench_store import Store, Unsupported

MB = 1024.0


def mid_size(small: int) -> int:
    """A session size just short of eventlog's next snapshot: with the default snapshot_every=1000
    and the creation event, 2 x 1,000 - 2 messages written as 999 + 999 leave 999 events to fold
    after the newest snapshot, the most ``get_session`` ever folds."""
    return max(1, 2 * small - 2)


class _Long:
    """A column's long session and the short one beside it."""

    def __init__(self, bench: Bench, column: Column) -> None:
        self.bench, self.column = bench, column
        self.store = bench.open(column, "long")
        self.sid, self.small = bench.sid("long", "long"), bench.sid("long", "short")
        self.mid = bench.sid("long", "mid")
        self.seed = bench.seed("long")
        self.count = 0
        short = bench.sizes.tail_small
        for sid, count in ((self.small, short), (self.mid, mid_size(short))):
            self.store.create(sid, bench.base_ts)
            msgs = messages(bench.seed("short"), 0, count, bench.base_ts)
            # The mid session in two calls: eventlog snapshots when a batch crosses a multiple of
            # snapshot_every, at the batch's last seq; a batch ending at seq 1,000 and one stopping
            # short of 2,000 leave its newest snapshot 999 events behind, as single appends would.
            cut = min(count, short - 1) if sid == self.mid else count
            for part in (msgs[:cut], msgs[cut:]):
                if part:
                    self.store.fill(sid, part)
        self.store.create(self.sid, bench.base_ts)

    def grow(self, upto: int) -> None:
        for batch in batches(self.seed, self.count, upto, self.bench.base_ts,
                             self.bench.fill_batch(self.store, upto)):
            self.store.fill(self.sid, batch)
        self.count = max(self.count, upto)

    def read(self, op: str) -> Result:
        """Replay or stream the long session in a fresh process (in this one for a process-local store)."""
        store = self.store
        if not store.shared:
            seconds, count = timed(partial(store.replay if op == "replay" else store.stream, self.sid))
            result: Result = {"in_process": True}
        else:
            job = {"op": op, "spec": store.spec.to_json(), "sid": self.sid}
            report = run_workers([job])[0]
            seconds, count = report["end"] - report["start"], report["count"]
            result = {"peak_rss_mb": report["after"]["peak_kb"] / MB,
                      "start_rss_mb": report["before"]["peak_kb"] / MB, "pid": report["pid"]}
        if count != self.count:
            raise RuntimeError(f"{op} read {count} messages of {self.count}")
        result.update(messages=count, seconds=seconds, per_s=count / seconds)
        return result


def run_long(bench: Bench, *, replay: bool, tail: bool) -> None:
    s = bench.sizes
    bench.say(f"5/6 long session: replay at {s.replay:,}, stream and tail at {s.long:,} "
              f"(short session {s.tail_small:,})")
    longs: list[_Long] = []
    for column in bench.columns:
        with bench.cell("setup_long", column.name) as result:
            long = _Long(bench, column)
            longs.append(long)
            if replay:
                result["fill_s"], _ = timed(partial(long.grow, s.replay))
    if replay:
        _replay_rounds(bench, longs)
    for long in longs:
        try:
            _long_phase(bench, long, replay=replay, tail=tail)
        finally:
            bench.release(long.store)


def _replay_rounds(bench: Bench, longs: list[_Long]) -> None:
    """Replay every column's session in rounds, the columns taking turns, and keep each one's
    median round: one replay per column, minutes apart, compares the machine's moods as much
    as the stores. A quadratic store replays once (its figure is an order of magnitude off)."""
    rounds = bench.sizes.replay_rounds
    found: dict[str, list[Result]] = {long.column.name: [] for long in longs}
    failed: dict[str, Exception] = {}
    for r in range(rounds):
        started = time.monotonic()
        for long in longs[r % len(longs):] + longs[:r % len(longs)]:
            name = long.column.name
            if name in failed or (r and long.store.quadratic):
                continue
            try:
                found[name].append(long.read("replay"))
            except Exception as exc:
                failed[name] = exc
        bench.say(f"  replay round {r + 1}/{rounds}: {time.monotonic() - started:.1f}s")
    for long in longs:
        name = long.column.name
        with bench.cell("replay", name) as result:
            if name in failed:
                raise failed[name]
            runs = sorted(found[name], key=lambda run: run["per_s"])
            result.update(runs[len(runs) // 2], rounds=len(runs), round_per_s=[run["per_s"] for run in runs],
                          max_peak_rss_mb=max(run.get("peak_rss_mb", 0.0) for run in runs))


def _long_phase(bench: Bench, long: _Long, *, replay: bool, tail: bool) -> None:
    s, name, store = bench.sizes, long.column.name, long.store
    if store.quadratic:
        reason = f"not run at {s.long:,} messages: every read loads and parses the whole file"
        if replay:
            bench.record("stream", name, {"skipped": reason})
        if tail:
            with bench.cell("tail", name) as result:
                result.update(_tails(bench, long, small_only=True))
                result["long_skipped"] = reason
        return
    # A Redis server shared with others, or this very process's memory, holds the capped
    # columns' sessions; filling them to a million costs minutes and gigabytes for a figure
    # the targets don't ask of them.
    upto = min(s.long, max(s.capped_long, long.count)) if long.column.capped else s.long
    mark = {"capped": upto} if upto < s.long else {}
    with bench.cell("setup_long", name + "+") as result:
        result["fill_s"], _ = timed(partial(long.grow, upto))
    if replay:
        with bench.cell("stream", name) as result:
            result.update(long.read("stream"), **mark)
    if tail:
        with bench.cell("tail", name) as result:
            result.update(_tails(bench, long, small_only=False), **mark)
        if long.column.kind == "eventlog" and bench.compaction:
            with bench.cell("compaction", name) as result:
                _compaction(bench, long, result)
                result.update(mark)


def _tails(bench: Bench, long: _Long, *, small_only: bool) -> Result:
    store, calls, limit = long.store, bench.sizes.tail_calls, 50
    result: Result = {"small": bench.sizes.tail_small, "mid": mid_size(bench.sizes.tail_small),
                      "long": None if small_only else long.count}
    sizes = {"small": bench.sizes.tail_small, "mid": mid_size(bench.sizes.tail_small), "long": long.count}
    sids = [("small", long.small), ("mid", long.mid)] + ([] if small_only else [("long", long.sid)])
    probes: dict[str, Callable[[], object]] = {}
    for label, sid in sids:
        got = store.tail(sid, limit)
        if got != min(limit, sizes[label]):
            raise RuntimeError(f"tail of the {label} session gave {got} messages")
        if label != "mid":
            probes[f"tail_{label}_ms"] = partial(store.tail, sid, limit)
        try:
            store.session_info(sid)
            probes[f"session_{label}_ms"] = partial(store.session_info, sid)
        except Unsupported as exc:
            result["session_skipped"] = str(exc)
    result.update(interleaved_ms(probes, calls))
    return result


def _compaction(bench: Bench, long: _Long, result: Result) -> None:
    store: Any = long.store
    if not store.can_compact():
        raise Unsupported("EventLog.compact does not exist yet")
    result["bytes_before"] = store.size(long.sid)
    result["seconds"], _ = timed(lambda: store.compact(long.sid))
    result["bytes_after"] = store.size(long.sid)
    if store.tail(long.sid, 50) != 50:
        raise RuntimeError("tail of the compacted session is short")
    result.update(interleaved_ms({"tail_ms": partial(store.tail, long.sid, 50),
                                  "session_ms": partial(store.session_info, long.sid)},
                                 bench.sizes.tail_calls))
    archived = long.read("stream")
    result.update(archived_per_s=archived["per_s"], archived_peak_rss_mb=archived.get("peak_rss_mb"))
    plain = bench.results.get("stream", {}).get(long.column.name, {}).get("per_s")
    if plain:
        result["x_uncompressed"] = archived["per_s"] / plain


def run_sessions(bench: Bench) -> None:
    s = bench.sizes
    bench.say(f"7 many sessions: {s.sessions:,} x {s.session_messages}, half of them 40 days old")
    for column in bench.columns:
        with bench.cell("sessions", column.name) as result:
            holder = [bench.open(column, "sessions")]
            try:
                _sessions_cell(bench, holder, result)
            finally:
                bench.release(holder[0])
    # Issue 15's paging target is the file backend's: its first page over many sessions.
    bench.say(f"7 the first page over {s.catalog_sessions:,} sessions (eventlog-file)")
    for column in bench.columns:
        if column.name != "eventlog-file":
            continue
        with bench.cell("catalog", column.name) as result:
            holder = [bench.open(column, "catalog")]
            try:
                _catalog_cell(bench, holder, result)
            finally:
                bench.release(holder[0])


def _catalog_cell(bench: Bench, holder: list[Store], result: Result) -> None:
    """``catalog_sessions`` sessions of one message each, made in batches by several store
    objects (as many processes would), then the first page read by a store object that did
    not make them: once to build the index (a store of this release builds it on its first
    ordered read), then again by a new store object, as a new process would."""
    s, seed = bench.sizes, bench.seed("catalog")
    store = holder[0]
    _pages(store)  # Unsupported before anything is made
    start = time.perf_counter()
    for i in range(s.catalog_sessions):
        if i % 1000 == 999:
            store = holder[0] = bench.reopen(store)
        base = bench.now - 86_400.0 + i * 0.5
        sid = bench.sid("catalog", f"{i:07d}")
        msgs = messages(seed, i, i + 1, base)
        store.create(sid, base - 1.0)
        store.fill(sid, msgs)
    result["create_s"] = time.perf_counter() - start
    store = holder[0] = bench.reopen(store)
    result["build_s"], _ = timed(_pages(store)[0])
    store = holder[0] = bench.reopen(store)
    first_page, by_created = _pages(store)
    seconds, shown = timed(first_page)
    result.update(first_page_ms=seconds * 1000, sessions=s.catalog_sessions, shown=shown)
    result["again_ms"] = timed(first_page)[0] * 1000
    result["created_ms"] = timed(by_created)[0] * 1000


def _pages(store: Store) -> tuple[Callable[[], int], Callable[[], int]]:
    """The store's first page by activity and second page by creation (eventlog's columns
    only: the peers have no catalog to page)."""
    first = getattr(store, "first_page", None)
    second = getattr(store, "second_page_by_created", None)
    if first is None or second is None:
        raise Unsupported("no first_page")
    return first, second


def _sessions_cell(bench: Bench, holder: list[Store], result: Result) -> None:
    """``holder[0]`` is the store, replaced when reopened (the caller releases the last one)."""
    s, seed = bench.sizes, bench.seed("sessions")
    store = holder[0]
    store.list_sessions()  # raises Unsupported before the costly set-up when there is no listing
    count = min(s.sessions, s.capped_sessions) if BY_NAME[store.spec.column].capped else s.sessions
    if count < s.sessions:
        result["capped"] = count
    start = time.perf_counter()
    for i in range(count):
        if i % 1000 == 999:
            # Both eventlog's file backend and the floor keep descriptors open for every session
            # they wrote to (eventlog: two), which runs out of them before 10,000 sessions: the
            # set-up reopens its store, as if the sessions came from many processes.
            store = holder[0] = bench.reopen(store)
        # Even sessions were created, and last active, 40 days ago; odd ones within the hour.
        base = bench.now - (40 * DAY if i % 2 == 0 else 3_600.0)
        sid = bench.sid("sessions", f"{i:06d}")
        msgs = messages(seed, i * s.session_messages, (i + 1) * s.session_messages, base - i * 0.01)
        store.create(sid, msgs[0].ts - 1.0)
        store.fill(sid, msgs)
    result["create_s"] = time.perf_counter() - start
    store = holder[0] = bench.reopen(store)  # listed and cleaned by a process that did not write them
    result["list_s"], listed = timed(store.list_sessions)
    result.update(sessions=count, listed=listed)
    first_page = getattr(store, "first_page", None)  # eventlog's columns (issue 15)
    if first_page is not None:
        try:
            seconds, _ = timed(first_page)
            result["first_page_ms"] = seconds * 1000
        except Unsupported:
            pass
    try:
        result["cleanup_s"], removed = timed(lambda: store.cleanup(30))
    except Unsupported as exc:
        result["cleanup_skipped"] = str(exc)
        return
    result.update(removed=removed, left=store.list_sessions())
    if removed != count // 2 + count % 2:
        bench.notes.append(f"sessions / {store.spec.column}: cleanup removed {removed}, "
                           f"expected {count // 2 + count % 2}")
