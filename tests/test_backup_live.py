"""Backing up a live store with ``eventlog copy``: agents append (batches and single events) and a
compactor runs while the copy is taken, and every session in the copy is a prefix of the
session's final history, ending on a whole batch, with the same digests, and verifies.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import eventlog

from . import _procs

WRITER = """
import random, sys, time, eventlog
url, worker, stop = sys.argv[1], sys.argv[2], sys.argv[3]
rng = random.Random(worker)
with eventlog.open(url) as log:
    batch = 0
    while not __import__("os").path.exists(stop):
        sid = f"s{rng.randrange(3)}"
        size = rng.randrange(1, 6)
        log.append_many(sid, [("agent.step", {"w": worker, "batch": batch, "k": k, "of": size,
                                              "text": "x" * rng.randrange(200)})
                              for k in range(size)])
        batch += 1
        time.sleep(rng.random() * 0.002)
"""

COMPACTOR = """
import os, sys, time, eventlog
url, stop = sys.argv[1], sys.argv[2]
with eventlog.open(url, create=False) as log:
    while not os.path.exists(stop):
        log.compact()
        time.sleep(0.05)
"""


def history(log: eventlog.EventLog, sid: str) -> list[tuple[int, str, float, object]]:
    return [tuple(e) for e in log.events(sid)]


@pytest.mark.parametrize("kind", ["files", "sqlite"])
def test_copy_of_a_live_store_is_a_whole_prefix_of_each_session(tmp_path: Path, kind: str) -> None:
    source = str(tmp_path / "live") if kind == "files" else f"sqlite:///{tmp_path}/live.db"
    options = {"segment_max_events": 200} if kind == "files" else {}
    with eventlog.open(source, **options) as log:
        for s in range(3):
            log.create_session(f"s{s}", ["agent"])
    stop = tmp_path / "stop"
    env = _procs.worker_env()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, source, f"w{w}", str(stop)], env=env)
             for w in range(3)]
    procs.append(subprocess.Popen([sys.executable, "-c", COMPACTOR, source, str(stop)], env=env))
    copies = []
    try:
        time.sleep(0.5)
        for n in range(3):
            target = tmp_path / f"backup-{n}"
            done = subprocess.run([sys.executable, "-m", "eventlog", "copy", source, str(target)],
                                  env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "the copy verifies" in done.stdout
            copies.append(target)
    finally:
        stop.touch()
        for proc in procs:
            proc.wait(timeout=60)
    assert all(proc.returncode == 0 for proc in procs)
    with eventlog.open(source, create=False) as log:
        final = {sid: history(log, sid) for sid in log.session_ids()}
        assert log.verify().ok
    grew = 0
    for target in copies:
        with eventlog.open(target, create=False) as copy:
            assert copy.session_ids() == sorted(final)
            assert copy.verify().ok
            for sid, events in final.items():
                copied = history(copy, sid)
                assert copied == events[:len(copied)]  # a prefix, event for event
                last = copied[-1][3]
                if isinstance(last, dict):  # seq 1 is the session's creation
                    assert last["k"] == last["of"] - 1, "the copy ends inside a batch"
                grew += len(copied) < len(events)
    assert grew, "the writers were done before any copy: nothing was live"
