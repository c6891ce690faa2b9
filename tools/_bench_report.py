"""The run's output: the machine, one table of figures and ratios, and issue 5's targets."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bench_columns import BY_NAME, FLOORS
from _bench_context import Bench, Result
from _bench_procs import REPO
from _bench_reads import mid_size

REF = "eventlog-file"
MB = 1024.0 * 1024.0


def _first_line(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    """The filesystem type the work directory is on (longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
                if inside and len(mount) > len(best):
                    best, kind = mount, f"{parts[2]} ({parts[0]} on {mount})"
    except OSError:
        pass
    return kind


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> tuple[float, ...] | None:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides this run."""
    return tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine(bench: Bench) -> dict[str, Any]:
    import orjson

    import eventlog
    info: dict[str, Any] = {
        "cpu": (_first_line("/proc/cpuinfo", "model name") if sys.platform == "linux"
                else platform.processor()),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory": _first_line("/proc/meminfo", "MemTotal"),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "filesystem": _filesystem(bench.workdir.resolve()),
        "workdir": str(bench.workdir),
        "eventlog": f"{eventlog.__version__} at {Path(eventlog.__file__).parent}",
        "commit": (_git("rev-parse", "--short", "HEAD") + (" (modified)" if _git("status", "--porcelain",
                                                                              "eventlog") else "")),
        "orjson": orjson.__version__,
        "sqlite": sqlite3.sqlite_version,
        "loadavg_start": loadavg(),
    }
    if any(c.template == "{redis}" for c in bench.columns):
        try:
            import redis
            client = redis.Redis.from_url(bench.redis_url)
            server = client.info("server")
            persistence = client.config_get("appendonly")
            persistence.update(client.config_get("appendfsync"))
            client.close()
            info["redis"] = (f"{server.get('redis_version')} at {bench.redis_url}, appendonly "
                             f"{persistence.get('appendonly')}, appendfsync {persistence.get('appendfsync')}")
        except Exception as exc:  # informational only
            info["redis"] = f"unknown ({exc})"
    return info


# The table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    label: str
    workload: str
    key: str
    unit: str
    higher_better: bool | None = None
    """Which way is better, for the ratio; None: no ratio."""
    long: bool = False
    """A figure of the long session (marked when a capped column's is shorter)."""


def rows(bench: Bench) -> list[Row]:
    s = bench.sizes
    p = f"{s.procs}x{s.per_proc:,}"
    return [
        Row(f"1 append x{s.messages:,}: msgs/s", "append", "per_s", "rate", True),
        Row(f"2 durable append x{s.durable:,}: µs/append", "durable", "us_per_msg", "num", False),
        Row(f"3 concurrent {p}: msgs/s", "concurrent", "per_s", "rate", True),
        Row("3 concurrent: lost/dup/damaged", "concurrent", "lost", "check"),
        Row("3 concurrent: writer processes (max overlapping)", "concurrent", "writers", "procs"),
        Row(f"4 concurrent durable {s.procs}x{s.durable_per_proc:,}: msgs/s", "concurrent_durable", "per_s",
            "rate", True),
        Row("4 concurrent durable: x one durable writer (taking turns)", "concurrent_durable", "x_single",
            "x"),
        Row("4 concurrent durable: lost/dup/damaged", "concurrent_durable", "lost", "check"),
        Row(f"5 replay {s.replay:,}: msgs/s", "replay", "per_s", "rate", True),
        Row(f"5 replay {s.replay:,}: peak RSS MB", "replay", "peak_rss_mb", "num", False),
        Row(f"5 streaming replay {s.long:,}: msgs/s", "stream", "per_s", "rate", True, long=True),
        Row(f"5 streaming replay {s.long:,}: peak RSS MB", "stream", "peak_rss_mb", "num", False, long=True),
        Row(f"6 tail(50) {s.tail_small:,}: ms", "tail", "tail_small_ms", "num", False),
        Row(f"6 tail(50) {s.long:,}: ms", "tail", "tail_long_ms", "num", False, long=True),
        Row(f"6 get_session {s.tail_small:,}: ms", "tail", "session_small_ms", "num", False),
        Row(f"6 get_session {s.long:,}: ms", "tail", "session_long_ms", "num", False, long=True),
        Row(f"6 get_session {mid_size(s.tail_small):,}: ms *", "tail", "session_mid_ms", "num", False),
        Row(f"6 compact {s.long:,}: s", "compaction", "seconds", "num", long=True),
        Row(f"6 compact {s.long:,}: MB before→after", "compaction", "bytes_before", "bytes", long=True),
        Row(f"6 compacted {s.long:,}: tail(50) ms", "compaction", "tail_ms", "num", long=True),
        Row(f"6 compacted {s.long:,}: get_session ms", "compaction", "session_ms", "num", long=True),
        Row(f"6 archived streaming replay {s.long:,}: msgs/s", "compaction", "archived_per_s", "rate",
            long=True),
        Row(f"7 list_sessions {s.sessions:,}x{s.session_messages}: s", "sessions", "list_s", "num", False),
        Row(f"7 first page of 100 by last_activity of {s.sessions:,}: ms", "sessions",
            "first_page_ms", "num", False),
        Row(f"7 cleanup {s.sessions // 2 + s.sessions % 2:,} old of {s.sessions:,}: s", "sessions",
            "cleanup_s", "num", False),
        Row(f"7 {s.catalog_sessions:,} sessions: first ordered read (builds the index): s", "catalog",
            "build_s", "num", False),
        Row(f"7 {s.catalog_sessions:,} sessions: first page of 100 by last_activity, new store object: ms",
            "catalog", "first_page_ms", "num", False),
        Row(f"7 {s.catalog_sessions:,} sessions: the same page again: ms", "catalog", "again_ms", "num",
            False),
        Row(f"7 {s.catalog_sessions:,} sessions: page 2 by created_at: ms", "catalog", "created_ms", "num",
            False),
        Row(f"8 fork {s.fork_events:,}: s", "history", "fork_s", "num", False),
        Row(f"8 rewind {s.rewind_events:,} to its middle: s", "history", "rewind_s", "num", False,
            long=True),
        Row(f"8 get_session after a rewind, {s.rewind_events:,}: ms (fresh handle)", "history",
            "rewound_session_cold_ms", "num", False, long=True),
        Row(f"8 get_session after a rewind, {s.rewind_events:,}: ms (warm)", "history",
            "rewound_session_ms", "num", False, long=True),
    ]


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _value(row: Row, result: Result) -> str | None:
    value = result.get(row.key)
    if value is None:
        return None
    if row.unit == "check":
        text = f"{result['lost']}/{result['duplicated']}/{result['damaged']}"
        if result.get("failed"):
            text += f", {result['failed']} failed"
        if result.get("problems"):
            text += ", verify!"
        return text
    if row.unit == "procs":
        return f"{value} ({result['overlap']})"
    if row.unit == "bytes":
        return f"{value / MB:,.0f}→{result['bytes_after'] / MB:,.0f}"
    if row.unit == "x":
        return f"{value:.2f}x"
    return _rate(value) if row.unit == "rate" else _num(value)


def _ratio(row: Row, result: Result, ref: Result) -> str:
    """How many times better eventlog-file is than this column on this row."""
    mine, theirs = ref.get(row.key), result.get(row.key)
    if row.higher_better is None or not mine or not theirs:
        return ""
    ratio = mine / theirs if row.higher_better else theirs / mine
    text = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"
    return f" ({text}x)"


def cell(bench: Bench, row: Row, column: str) -> str:
    result = bench.results.get(row.workload, {}).get(column)
    if result is None:
        return "—"
    if "error" in result:
        return "ERROR"
    value = _value(row, result)
    if value is None:
        return "n/a"
    mark = ("~" if result.get("extrapolated") else "")
    if result.get("reduced") and row.workload.startswith("concurrent"):
        value += "†"
    if result.get("capped") and (row.long or row.workload == "sessions"):
        value += "‡"
    ref = bench.results.get(row.workload, {}).get(REF, {})
    return mark + value + ("" if column == REF else _ratio(row, result, ref))


def table(bench: Bench) -> str:
    names = [c.name for c in bench.columns]
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows(bench):
        if row.workload not in bench.results:
            continue
        cells = [cell(bench, row, name) for name in names]
        if all(c in ("—", "n/a") for c in cells):
            continue
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def legend(bench: Bench) -> list[str]:
    s = bench.sizes
    every = [r for per in bench.results.values() for r in per.values()]
    found = ["(Nx) after a figure: eventlog-file is N times better than that column on that row "
             "(faster, or less memory); below 1, that column is better. — : not run."]
    if any(r.get("extrapolated") for r in every):
        found.append(f"~ extrapolated: a quadratic store's first {s.sample_first} and last {s.sample_last} "
                     "appends were timed (the session filled in between, untimed) and the total fitted as "
                     "a cost per append growing linearly with the session.")
    if any(r.get("reduced") for r in every):
        found.append(f"† a quadratic store's concurrent runs are {s.procs}x{s.rewrite_per_proc} (its cost "
                     "per append grows with the session), so its figures are at that size.")
    if any(r.get("capped") for r in every):
        found.append(f"‡ the other eventlog backends and redis-xadd run smaller: their long session holds "
                     f"{s.capped_long:,} messages (--capped-long) and workload 7 makes "
                     f"{min(s.sessions, s.capped_sessions):,} sessions (--capped-sessions), so the default "
                     "run stays within five minutes; the targets are for eventlog-file. Compare their "
                     "ratios, not their totals.")
    if any(w.startswith("concurrent") for w in bench.results):
        found.append("lost = acknowledged but not read back; dup = read back more than once; damaged = "
                     "unreadable or wrong content; failed = appends that raised (never acknowledged); "
                     "verify! = the store's own check found damage. Workload 4 runs one writer, then "
                     f"{s.procs}, twice over, on one session; its check covers all of it.")
    if "tail" in bench.results:
        found.append(f"* {mid_size(s.tail_small):,} messages written as {s.tail_small - 1:,} + "
                     f"{mid_size(s.tail_small) - s.tail_small + 1:,}: at the default sizes eventlog's "
                     "get_session then folds 999 events after its newest snapshot, the most it ever does "
                     "with snapshot_every=1000 (the other sessions fold at most 1).")
    if "replay" in bench.results:
        found.append("RSS = peak resident memory (VmHWM) of a fresh process that only opens the store and "
                     "reads; its start-up alone (Python, imports, the store opened) is the JSON's "
                     "start_rss_mb.")
    reasons: dict[tuple[str, str], list[str]] = {}
    for workload, cells in bench.results.items():
        for column, result in cells.items():
            if "skipped" in result and column in BY_NAME:
                reasons.setdefault((column, result["skipped"]), []).append(workload)
    found += [f"n/a {column} ({', '.join(w)}): {why}" for (column, why), w in sorted(reasons.items())]
    found += [f"column {name} not run: {why}" for name, why in bench.skipped.items()]
    return found


# Targets ------------------------------------------------------------------------------------------

def _get(bench: Bench, workload: str, column: str, key: str) -> Any:
    return bench.results.get(workload, {}).get(column, {}).get(key)


def _target(name: str, values: list[Any], test: Callable[..., bool], shown: str) -> dict[str, Any]:
    if any(v is None for v in values):
        return {"target": name, "status": "n/a", "measured": "not measured in this run"}
    return {"target": name, "status": "PASS" if test(*values) else "MISS", "measured": shown.format(*values)}


def targets(bench: Bench) -> list[dict[str, Any]]:
    def g(workload: str, key: str, column: str = REF) -> Any:
        return _get(bench, workload, column, key)

    def ratio(a: Any, b: Any) -> float | None:
        return a / b if a is not None and b else None

    def clean(workload: str) -> Any:
        result = bench.results.get(workload, {}).get(REF)
        if not result or "lost" not in result:
            return None
        return result["lost"] + result["duplicated"] + result["damaged"] + result["failed"] + len(
            result["problems"])

    s = bench.sizes
    full = s.long >= 1_000_000
    at = "" if full else f" (run at {s.long:,}; the target is for 1,000,000)"
    found = [
        _target("append >= 3x sqlite-wal (NORMAL)", [ratio(g("append", "per_s"),
                g("append", "per_s", "sqlite-wal"))], lambda r: r >= 3, "{:.2f}x"),
        _target("append >= 30% of floor", [ratio(g("append", "per_s"), g("append", "per_s", "floor"))],
                lambda r: r >= 0.3, "{:.1%}"),
        _target("durable append <= 1.5x floor-with-fsync per append",
                [ratio(g("durable", "us_per_msg"), g("durable", "us_per_msg", "floor"))], lambda r: r <= 1.5,
                "{:.2f}x"),
        _target(f"concurrent durable ({s.procs} writers) >= 2x a single durable writer",
                [g("concurrent_durable", "x_single")], lambda r: r >= 2, "{:.2f}x"),
        _target("concurrent append: 0 lost/duplicated/damaged, verify ok", [clean("concurrent")],
                lambda n: n == 0, "{} problems"),
        _target("concurrent durable append: 0 lost/duplicated/damaged, verify ok",
                [clean("concurrent_durable")], lambda n: n == 0, "{} problems"),
        _target("replay >= 60% of floor msgs/s", [ratio(g("replay", "per_s"), g("replay", "per_s", "floor"))],
                lambda r: r >= 0.6, "{:.1%}"),
        _target("streaming replay of 1,000,000 messages: peak RSS < 100 MB" + at,
                [g("stream", "peak_rss_mb")], lambda mb: mb < 100, "{:.1f} MB"),
        _target(f"tail(50) on {s.long:,} within 2x of {s.tail_small:,}",
                [ratio(g("tail", "tail_long_ms"), g("tail", "tail_small_ms"))], lambda r: r <= 2, "{:.2f}x"),
        _target(f"tail(50) on {s.long:,} under 1 ms", [g("tail", "tail_long_ms")], lambda ms: ms < 1,
                "{:.3f} ms"),
        _target(f"(issue 3) compacted {s.long:,}: get_session and tail(50) under 5 ms",
                [g("compaction", "session_ms"), g("compaction", "tail_ms")],
                lambda a, b: a < 5 and b < 5, "{:.3f} / {:.3f} ms"),
        _target(f"(issue 3) compacted {s.long:,}: get_session and tail(50) within 2x of {s.tail_small:,}",
                [ratio(g("compaction", "session_ms"), g("tail", "session_small_ms")),
                 ratio(g("compaction", "tail_ms"), g("tail", "tail_small_ms"))],
                lambda a, b: a <= 2 and b <= 2, "{:.2f}x / {:.2f}x"),
        _target("(issue 3) archived replay >= 50% of uncompressed", [g("compaction", "x_uncompressed")],
                lambda r: r >= 0.5, "{:.0%}"),
        _target(f"(issue 15) first page of 100 by last_activity over {s.catalog_sessions:,} sessions "
                "under 20 ms" + ("" if s.catalog_sessions >= 100_000 else
                                 " (the target is for 100,000)"),
                [g("catalog", "first_page_ms")], lambda ms: ms < 20, "{:.1f} ms"),
        _target(f"(issue 15) list_sessions of {s.sessions:,} within 3x of sqlite-wal",
                [ratio(g("sessions", "list_s"), g("sessions", "list_s", "sqlite-wal"))],
                lambda r: r <= 3, "{:.2f}x"),
        _target(f"(issue 15) cleanup of {s.sessions // 2 + s.sessions % 2:,} old of {s.sessions:,} "
                "within 3x of sqlite-wal",
                [ratio(g("sessions", "cleanup_s"), g("sessions", "cleanup_s", "sqlite-wal"))],
                lambda r: r <= 3, "{:.2f}x"),
    ]
    for peer in ("json-rewrite", "langchain-file"):
        r = ratio(g("append", "per_s"), g("append", "per_s", peer))
        found.append({"target": f"append vs {peer}: report the ratio", "status": "info",
                      "measured": "not measured in this run" if r is None else f"eventlog {r:,.0f}x faster"})
    for mine, floor in FLOORS.items():
        for workload in ("append", "replay"):
            r = ratio(g(workload, "per_s", mine), g(workload, "per_s", floor))
            if r is not None:
                found.append({"target": f"(issue 6) {mine} {workload} vs {floor}", "status": "info",
                              "measured": f"{r:.0%} of {floor}"})
    return found


def render(bench: Bench, info: dict[str, Any], found: list[dict[str, Any]]) -> str:
    out = ["Machine: " + "; ".join(f"{k} {v}" for k, v in info.items() if k not in ("workdir",)), "",
           table(bench), ""]
    out += [f"- {line}" for line in legend(bench)]
    out += ["", "Targets (eventlog-file, ratios from this run):", ""]
    out += [f"- {t['status']:<4} {t['target']}: {t['measured']}" for t in found]
    if bench.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in bench.notes]
    return "\n".join(out)
