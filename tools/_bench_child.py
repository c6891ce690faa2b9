"""A benchmark worker (see ``_bench_procs``): reads one job on stdin, waits for ``go``, reports on stdout.

Jobs:
- ``append``: open the store, append messages ``lo..hi`` of the shared data one call each;
  report timings, and the ids whose append raised (not acknowledged, so not "lost").
- ``replay`` / ``stream``: read a whole session (into memory / one record at a time);
  report the count, the time, and this fresh process's peak RSS.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from _bench_columns import make_store
from _bench_data import messages
from _bench_procs import memory_kb
from _bench_store import Spec


def main() -> int:
    job: dict[str, Any] = json.loads(sys.stdin.readline())
    store = make_store(Spec(**job["spec"]))
    sid = job["sid"]
    items: list[Any] = []
    ids: list[str] = []
    if job["op"] == "append":
        msgs = messages(job["seed"], job["lo"], job["hi"], job["base_ts"])
        items, ids = store.prepare(sid, msgs), [m.id for m in msgs]
    before = memory_kb()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    report: dict[str, Any] = {"pid": os.getpid(), "before": before, "lo": job.get("lo"), "hi": job.get("hi")}
    start = time.monotonic()
    if job["op"] == "append":
        failed, error = [], ""
        for msg_id, item in zip(ids, items, strict=True):
            try:
                store.append(sid, item)
            except Exception as exc:  # a peer that can't take concurrency: count it, carry on
                failed.append(msg_id)
                error = error or f"{type(exc).__name__}: {exc}"
        report.update(failed=failed, error=error)
    elif job["op"] == "replay":
        report["count"] = store.replay(sid)
    elif job["op"] == "stream":
        report["count"] = store.stream(sid)
    else:
        raise ValueError(f"unknown job {job['op']!r}")
    report.update(start=start, end=time.monotonic(), after=memory_kb())
    store.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
