#!/usr/bin/env python3
"""eventlog against its peers, on the same data, in one run: ``python tools/bench.py``.

Runs issue 5's seven workloads against eventlog's file backend and the peers a user would
pick (the floor of plain ``os.write``, sqlite3 in WAL mode, the original design's JSON
rewrite, langchain's file history when installed, raw Redis ``XADD`` when a server answers),
plus a column for every other eventlog backend ``eventlog.open`` accepts. Prints the machine,
one table of figures with ratios against eventlog-file, and the targets with PASS/MISS.

Everything is written to a fresh temporary directory that is removed afterwards: nothing is
cached between runs. ``--quick`` is a seconds-long smoke run; the default sizes are the
issue's and take a few minutes on two cores.

Examples::

    python tools/bench.py
    python tools/bench.py --quick --json /tmp/bench.json
    python tools/bench.py --compaction          # plus issue 3's compaction figures
    python tools/bench.py --only append,tail --stores eventlog-file,sqlite-wal
    python tools/bench.py --long 200000 --sessions 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

_TOOLS = Path(__file__).resolve().parent
if str(_TOOLS.parent) not in sys.path:
    sys.path.insert(0, str(_TOOLS.parent))  # benchmark the checkout's eventlog, as the workers do

from _bench_columns import BY_NAME, COLUMNS, DEFAULT_REDIS_URL, unavailable  # noqa: E402
from _bench_context import Bench, Sizes  # noqa: E402
from _bench_history import run_history  # noqa: E402
from _bench_reads import run_long, run_sessions  # noqa: E402
from _bench_report import loadavg, machine, render, targets  # noqa: E402
from _bench_writes import run_append, run_concurrent, run_concurrent_durable, run_durable  # noqa: E402

WORKLOADS = ("append", "durable", "concurrent", "concurrent-durable", "replay", "tail", "sessions",
             "history")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py", description=__doc__,
        epilog=f"Workloads: {', '.join(WORKLOADS)}. Columns: {', '.join(c.name for c in COLUMNS)}.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every workload")
    parser.add_argument("--json", metavar="PATH", help="also write every raw figure to this JSON file")
    parser.add_argument("--only", metavar="WORKLOAD[,...]", action="append", default=[],
                        help="run only these workloads (repeatable, or comma-separated)")
    parser.add_argument("--stores", metavar="COLUMN[,...]", help="run only these columns "
                        "(eventlog-file is always included: it is what the ratios are against)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help=f"Redis server for the Redis columns (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--workdir", metavar="DIR", help="where the run's temporary directory goes "
                        "(default: the system's; the filesystem matters, and is printed)")
    parser.add_argument("--compaction", action="store_true",
                        help="also compact each eventlog column's long session and read it again "
                        "(issue 3's figures; adds a minute or more)")
    parser.add_argument("--keep", action="store_true", help="keep the run's data directory afterwards")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sizes = parser.add_argument_group("sizes (defaults: issue 5's; --quick shrinks them all)")
    for name in Sizes.names():
        sizes.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", dest=name,
                           help=f"default {getattr(Sizes(), name):,}, quick {getattr(Sizes.quick(), name):,}")
    args = parser.parse_args(argv)
    args.only = [w for part in args.only for w in _csv(part)]
    for workload in args.only:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    if args.stores is not None:
        args.stores = _csv(args.stores)
        for name in args.stores:
            if name not in BY_NAME:
                parser.error(f"unknown column {name!r}; choose from {', '.join(BY_NAME)}")
    for name in Sizes.names():
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in Sizes.names():
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    sizes.long = max(sizes.long, sizes.replay)
    return sizes


def _workloads(args: argparse.Namespace) -> list[str]:
    chosen = args.only or WORKLOADS
    return [w for w in WORKLOADS if w in chosen]


def _columns(args: argparse.Namespace, bench: Bench) -> None:
    wanted = set(args.stores or BY_NAME) | {"eventlog-file"}
    probe = bench.workdir / "probe"
    for column in COLUMNS:
        if column.name not in wanted:
            continue
        reason = unavailable(column, str(probe), bench.redis_url)
        if reason:
            bench.skipped[column.name] = reason
            bench.say(f"column {column.name} skipped: {reason}")
        else:
            bench.columns.append(column)
    shutil.rmtree(probe, ignore_errors=True)


def run(bench: Bench, workloads: list[str]) -> None:
    steps = {"append": run_append, "durable": run_durable, "concurrent": run_concurrent,
             "concurrent-durable": run_concurrent_durable, "sessions": run_sessions,
             "history": run_history}
    for workload in workloads:
        if workload in steps:
            steps[workload](bench)
        elif workload == "replay" or (workload == "tail" and "replay" not in workloads):
            run_long(bench, replay="replay" in workloads, tail="tail" in workloads)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so the run's directory and Redis keys are removed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="eventlog-bench-", dir=args.workdir))
    bench = Bench(sizes=_sizes(args), columns=[], workdir=workdir, redis_url=args.redis_url,
                  verbose=not args.quiet, compaction=args.compaction)
    workloads = _workloads(args)
    try:
        _columns(args, bench)
        info = machine(bench)
        bench.say(f"workdir {workdir} on {info['filesystem']}; workloads {', '.join(workloads)}")
        run(bench, workloads)
    finally:
        bench.release_all()
        if args.keep:
            bench.say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - bench.started
    info["loadavg_end"] = loadavg()
    info["run_seconds"] = round(elapsed, 1)
    # CPU time of the run and its workers (not the Redis server's): a figure the machine's other
    # load does not inflate as much as wall time, to judge a run made on a busy machine.
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    info["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in used), 1)
    found = targets(bench)
    print(render(bench, info, found))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": info,
            "config": {"quick": args.quick, "workloads": workloads, "sizes": asdict(bench.sizes),
                       "columns": [c.name for c in bench.columns], "redis_url": bench.redis_url},
            "columns": {c.name: c.about for c in bench.columns},
            "skipped": bench.skipped,
            "results": bench.results,
            "targets": found,
            "notes": bench.notes,
        }, indent=2, default=str) + "\n")
    # Failing cells of the reference column make the run fail; others are reported in the notes.
    return 2 if any("error" in cells.get("eventlog-file", {}) for cells in bench.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
