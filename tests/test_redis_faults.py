"""Dropped connections at every request of every store operation on Redis, with another
writer and compaction getting in between: exactly once.

For k = 1, 2, 3, ... the proxy (tests/_tcp_proxy.py) drops the connection of the k-th
request the operation sends: before forwarding it, or after the server ran it and
answered (the reply lost). Right then, while the client waits, another store appends to
the session and compacts it (and the session the operation works on), so the retry
meets a moved head and a trimmed log. The operation must succeed (every write is sent
again safely) or raise a typed error; a fresh process then reads every acknowledged
event exactly once (the operation's, the other writer's, and one more append by the
same store), nothing else, and ``verify`` is ok.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import eventlog

from . import _fault_ops as ops
from . import _procs, _redis_support
from ._redis_support import HOST, PORT
from ._tcp_proxy import DroppingProxy

pytestmark = pytest.mark.redis
TALLY: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def run_prefix() -> Iterator[str]:
    yield from _redis_support.run_prefix()


@pytest.fixture(scope="module")
def reader() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, str(_procs.WORKER), "reader"], env=_procs.worker_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(30)
    if TALLY:
        print("\nRedis connections dropped per operation (another writer and compaction between "
              "each drop and its retry):")
        for op, counts in TALLY.items():
            print(f"  {op:16} " + ", ".join(f"{when} {n}" for when, n in counts.items()))


@pytest.fixture(scope="module")
def proxy() -> Iterator[DroppingProxy]:
    dropping = DroppingProxy((HOST, PORT))
    yield dropping
    dropping.close()


def _read(reader: subprocess.Popen[bytes], request: dict[str, Any]) -> dict[str, Any]:
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write(json.dumps(request).encode() + b"\n")
    reader.stdin.flush()
    answer: dict[str, Any] = json.loads(reader.stdout.readline())
    return answer


def _normal(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


class Interleaver:
    """Another store's work, done while a dropped request's client waits to retry it."""

    def __init__(self, url: str, op: str) -> None:
        self.other = eventlog.open(url)
        self.op = op
        self.acked: list[ops.Row] = []

    def __call__(self) -> None:
        self.acked.append(ops.row(self.other.append(ops.SID, "other", len(self.acked))))
        self.other.compact(ops.SID)
        target = {"create": ops.NEW, "import": ops.IMPORTED, "delete": ops.GONE}.get(self.op)
        if target is not None:
            try:
                self.other.compact(target)
            except eventlog.SessionNotFoundError:
                pass


def _one_drop(proxy: DroppingProxy, reader: subprocess.Popen[bytes], base: str, tmp: Path, op: str,
              when: str, at: int) -> bool:
    prefix = f"{base}{uuid.uuid4().hex[:8]}:"
    direct = f"redis://{HOST}:{PORT}/0?prefix={prefix}"
    dropped = f"redis://{HOST}:{proxy.port}/0?prefix={prefix}"
    copy_prefix = f"{prefix}copy:"
    with eventlog.open(direct) as setup:
        ops.populate(setup)
    before = _read(reader, {"url": direct})["sessions"]
    interleave = Interleaver(direct, op)
    where = f"{op}, dropped {when} request {at}"
    ctx = ops.Context(dropped, tmp / f"archive-{at}-{when}",
                      f"redis://{HOST}:{proxy.port}/0?prefix={copy_prefix}")
    error = ""
    with eventlog.open(dropped, snapshot_every=ops.snapshot_every(op)) as log:
        proxy.arm(None, when, skip=at - 1, on_drop=interleave)
        try:
            done: ops.Done | None = ops.OPS[op](log, ctx)
            outcome = "ok"
        except eventlog.EventLogError as exc:
            done, outcome, error = None, "error", f"{type(exc).__name__}: {exc}"
        finally:
            proxy.disarm()
        reached = proxy.dropped > 0
        proxy.dropped = 0
        if outcome == "error":
            assert reached, f"{where}: raised without a fault: {error}"
        interleave.acked.append(ops.row(log.append(ops.SID, "same.store", 1)))
    interleave.other.close()
    if done is not None:
        done.events = _normal(done.events)
    seen = _read(reader, {"url": direct, "append": ops.SID,
                          "copy": f"redis://{HOST}:{PORT}/0?prefix={copy_prefix}" if op == "copy" else None,
                          "archive": str(ctx.archive_dir) if ctx.archive_dir.exists() else None})
    assert "error" not in seen, f"{where}: a fresh process: {seen['error']}"
    assert seen["problems"] == [], f"{where}: verify: {seen['problems']}"
    assert seen.get("copy_problems", []) == [], f"{where}: the copy: {seen['copy_problems']}"
    wrong = ops.problems_after(op, before, seen["sessions"], done, outcome,
                               extra={ops.SID: _normal(interleave.acked)}, copied=seen.get("copied"),
                               archived=seen.get("archived"), error=error)
    assert wrong == [], f"{where}: {wrong}"
    assert seen["appended"] == seen["sessions"][ops.SID][-1][0] + 1, where
    assert seen["problems_after"] == [], f"{where}: verify after the next append"
    if outcome == "error":
        TALLY.setdefault(op, {}).setdefault("typed errors", 0)
        TALLY[op]["typed errors"] += 1
    return reached


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("op", list(ops.OPS))
def test_a_dropped_connection_at_every_request(proxy: DroppingProxy, reader: subprocess.Popen[bytes],
                                               run_prefix: str, tmp_path: Path, op: str,
                                               when: str) -> None:
    at = 0
    while True:
        at += 1
        assert at < 300, f"{op}: never completed"
        if not _one_drop(proxy, reader, run_prefix, tmp_path, op, when, at):
            break
    TALLY.setdefault(op, {})[when] = at - 1
    print(f"Redis {op}: {at - 1} drops ({when})")
    assert at > 1, f"{op} sent no request at all"
