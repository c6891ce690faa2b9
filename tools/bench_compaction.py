"""Measure compaction: its cost, what it saves, and reads on compacted sessions.

    python tools/bench_compaction.py [--messages 1000000] [--root DIR] [--level 6]

Builds one session of N messages and one of 1,000, then reports: compaction seconds
and bytes before/after; get_session and get_messages(limit=50) latency on both
compacted sessions (median and p99 of repeated calls on a warm store); full replay
speed of the session before compaction (plain segments) and after (archives).
The issue's targets are printed beside the figures; tools/bench.py is the team's
benchmark, this one only covers compaction.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import eventlog
from eventlog import ChatMessage

WORDS = ["the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
         "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one",
         "had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can"]


def build(log: eventlog.EventLog, sid: str, count: int) -> None:
    log.create_session(sid, participants=["Agent-1", "Agent-2", "Agent-3"])
    now = time.time()
    # One message per append, as agents post them (batches would add batch framing).
    for i in range(count):
        log.add_message(ChatMessage(
            sender=f"Agent-{i % 3 + 1}", recipient=None if i % 4 else "Agent-2",
            content=" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(5 + i % 30)),
            session_id=sid, timestamp=now + i * 0.001))


def latency(call: Callable[[], object], runs: int = 300) -> tuple[float, float]:
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99) - 1] * 1e3


def replay(log: eventlog.EventLog, sid: str) -> float:
    """Events per second of a full audit replay: the better of two runs (the machine
    is shared, and the first run may still be warming the page cache)."""
    rates = []
    for _ in range(2):
        started = time.perf_counter()
        count = sum(1 for _ in log.events(sid))
        rates.append(count / (time.perf_counter() - started))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--root", help="store directory (default: a temporary one, removed after)")
    parser.add_argument("--level", type=int, default=6, help="gzip level of archives")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="eventlog-compaction-"))
    try:
        log = eventlog.open(root, archive_level=args.level)
        started = time.perf_counter()
        build(log, "big", args.messages)
        build(log, "small", 1000)
        print(f"built {args.messages:,} + 1,000 messages in {time.perf_counter() - started:.1f} s")

        plain_rate = replay(log, "big")
        report = log.compact("big")
        log.compact("small")
        archived_rate = replay(log, "big")
        print(f"compaction of {args.messages:,} messages: {report.seconds:.1f} s, "
              f"{report.bytes_before / 1e6:.1f} MB -> {report.bytes_after / 1e6:.1f} MB "
              f"({report.bytes_after / report.bytes_before:.1%}), "
              f"{report.segments_archived} segments archived")
        print(f"full replay: plain {plain_rate:,.0f} events/s, archived {archived_rate:,.0f} events/s "
              f"(ratio {archived_rate / plain_rate:.2f}; target >= 0.5)")
        def tail(sid: str) -> object:
            return log.get_messages(sid, limit=50)

        reads: list[tuple[str, Callable[[str], object]]] = [
            ("get_session", log.get_session), ("get_messages(limit=50)", tail)]
        for name, read in reads:
            big = latency(functools.partial(read, "big"))
            small = latency(functools.partial(read, "small"))
            print(f"{name}: compacted {args.messages:,}: median {big[0]:.3f} ms (p99 {big[1]:.3f}); "
                  f"compacted 1,000: median {small[0]:.3f} ms (p99 {small[1]:.3f}); "
                  f"ratio {big[0] / small[0]:.2f} (targets: < 5 ms, ratio <= 2)")
        assert log.verify("big").ok
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
