#!/usr/bin/env python3
"""Issue 18's figures: redacting one event of a long session, and a store checkpoint over many
sessions, per backend: ``python tools/bench_redaction.py``.

Fills each store untimed (``add_messages`` batches), then times: ``redact`` of one event in the
middle of a session of ``--events`` messages (its segment, or row, and whatever archive holds
it rewritten; file stores sealed first), a ``verify`` of that session against a checkpoint
taken before (the cost of proving nothing else changed), and ``checkpoint()`` of a store of
``--sessions`` sessions. Everything lives in a temporary directory removed afterwards.

    python tools/bench_redaction.py                       # 1,000,000 events, 10,000 sessions
    python tools/bench_redaction.py --events 100000 --sessions 1000 --stores file,sqlite
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))  # the checkout's eventlog

import eventlog  # noqa: E402
from eventlog import ChatMessage  # noqa: E402

STORES = {"file": "{dir}/files", "sqlite": "sqlite:///{dir}/store.db",
          "redis": "redis://127.0.0.1:6379/14?prefix=bench-redact-{uid}:", "memory": "memory://"}


def fill_long(log: eventlog.EventLog, sid: str, events: int) -> None:
    log.create_session(sid, ["A", "B"])
    for start in range(1, events, 1000):
        log.add_messages([ChatMessage(sender="A" if i % 2 else "B", content=f"message {i} " + "x" * 200,
                                      session_id=sid, timestamp=1_700_000_000.0 + i)
                          for i in range(start, min(start + 1000, events))])


def run_store(name: str, url: str, events: int, sessions: int) -> dict[str, float]:
    found: dict[str, float] = {}
    with eventlog.open(url) as log:
        t = time.perf_counter()
        fill_long(log, "long", events)
        found["fill_s"] = time.perf_counter() - t
        before = log.checkpoint("long")
        middle = events // 2
        t = time.perf_counter()
        log.redact("long", [middle], reason="benchmark")
        found["redact_one_s"] = time.perf_counter() - t
        t = time.perf_counter()
        report = log.verify("long", checkpoint=before)
        found["verify_against_checkpoint_s"] = time.perf_counter() - t
        assert report.ok, report.problems[:3]
        for n in range(sessions):
            sid = f"s{n:05d}"
            log.create_session(sid, ["A"])
            log.add_messages([ChatMessage(sender="A", content=f"m{i}", session_id=sid) for i in range(10)])
        t = time.perf_counter()
        checkpoint = log.checkpoint()
        found["checkpoint_store_s"] = time.perf_counter() - t
        assert checkpoint.seq == sessions + 1
        if name == "redis":
            backend = log.backend
            client = backend.client  # type: ignore[attr-defined]
            for key in client.scan_iter(match=backend.prefix + "*", count=1000):  # type: ignore[attr-defined]
                client.delete(key)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--stores", default="file,sqlite", help=f"any of {', '.join(STORES)}")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}")
    for name in args.stores.split(","):
        workdir = tempfile.mkdtemp(prefix="bench-redact-")
        try:
            url = STORES[name].format(dir=workdir, uid=uuid.uuid4().hex[:8])
            found = run_store(name, url, args.events, args.sessions)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in found.items()), flush=True)
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
