"""Compaction in a loop while 4 processes append and 2 follow."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import orjson

import eventlog
from eventlog import ChatMessage

SID = "busy"
APPENDERS = 4
PER_APPENDER = 300
FOLLOWERS = 2
OPTIONS = {"segment_max_events": 37, "snapshot_every": 29}


def append_worker(root: str, worker: int, out: str, compactions: Any) -> None:
    log = eventlog.open(root, **OPTIONS)
    acked: list[str] = []
    seen = compactions.value
    for i in range(PER_APPENDER):
        if i % 50 == 49:
            # Appends outrun compactions here: let at least one run between bursts, so
            # they really interleave.
            deadline = time.monotonic() + 10
            while compactions.value == seen and time.monotonic() < deadline:
                time.sleep(0.001)
            seen = compactions.value
        if i % 10 == 3:
            events = log.append_many(SID, [("w.batch", {"w": worker, "i": i, "k": k}) for k in range(3)])
            acked.extend(f"{worker}.{i}.{k}" for k in range(3))
            assert len(events) == 3
        else:
            log.add_message(ChatMessage(id=f"{worker}.{i}", sender=f"w{worker}", content=f"{i}",
                                        session_id=SID))
            acked.append(f"{worker}.{i}")
    Path(out).write_bytes(orjson.dumps(acked))


def follow_worker(root: str, total: int, out: str) -> None:
    log = eventlog.open(root, **OPTIONS)
    seen = []
    for event in log.follow(SID, after_seq=0, timeout=30):
        seen.append(event.seq)
        if event.seq >= total:
            break
    Path(out).write_bytes(orjson.dumps(seen))


def test_compaction_loop_beside_appenders_and_followers(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    log = eventlog.open(root, **OPTIONS)
    log.create_session(SID, participants=["w0"])
    batches = len([i for i in range(PER_APPENDER) if i % 10 == 3])
    total = 1 + APPENDERS * (PER_APPENDER + 2 * batches)
    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("i", 0)
    followers = [ctx.Process(target=follow_worker, args=(root, total, str(tmp_path / f"f{n}")))
                 for n in range(FOLLOWERS)]
    appenders = [ctx.Process(target=append_worker, args=(root, n, str(tmp_path / f"a{n}"), done))
                 for n in range(APPENDERS)]
    for process in followers + appenders:
        process.start()
    compactions = 0
    archived = 0
    deadline = time.monotonic() + 240
    while any(p.is_alive() for p in appenders) and time.monotonic() < deadline:
        archived += log.compact(SID).segments_archived
        compactions += 1
        done.value = compactions
        time.sleep(0.002)
    for process in appenders + followers:
        process.join(timeout=max(1.0, deadline - time.monotonic()))
        assert process.exitcode == 0, process
    archived += log.compact(SID).segments_archived
    assert compactions >= PER_APPENDER // 50 and archived > 3  # it really ran during the appends

    events = list(log.events(SID))
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert len(events) == total
    stored = [e.data["id"] if e.type == "message" else "{w}.{i}.{k}".format(**e.data)
              for e in events[1:]]
    acked = [x for n in range(APPENDERS) for x in orjson.loads((tmp_path / f"a{n}").read_bytes())]
    assert sorted(stored) == sorted(acked) and len(set(stored)) == len(stored)
    for n in range(FOLLOWERS):
        assert orjson.loads((tmp_path / f"f{n}").read_bytes()) == list(range(1, total + 1))
    report = log.verify()
    assert report.ok, report.problems
    assert report.events_checked == total
    assert log.get_session(SID).message_count == APPENDERS * (PER_APPENDER - batches)
