"""A server restart in the middle of a run (issue 16): writer processes append to one
session of a PostgreSQL cluster of the test's own while it is restarted, once politely
(``pg_ctl restart -m fast``) and once as after a crash (``-m immediate``: recovery from the
WAL). Every acknowledged append is read back exactly once at the seq it was given, an
append that raised is there at most once, seqs are gapless and ``verify`` is ok."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog

from . import _procs
from ._pg_cluster import OwnCluster

pytest.importorskip("psycopg", reason="psycopg is not installed")
WRITERS, MOST = 6, 100_000


@pytest.fixture
def cluster() -> Iterator[OwnCluster]:
    own = OwnCluster()
    try:
        yield own.start()
    finally:
        own.stop()


def _acked_counts(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> list[int]:
    return [sum(1 for line in _procs.ack_lines(ack) if line[0] == "ack") for _proc, ack in procs]


def _wait_for_progress(procs: list[tuple[subprocess.Popen[bytes], Path]], since: list[int],
                       more: int) -> None:
    """Until every writer acknowledged ``more`` appends after ``since`` (or one exited)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc, _ack in procs):
            return
        if all(now >= then + more for now, then in zip(_acked_counts(procs), since, strict=True)):
            return
        time.sleep(0.01)
    raise AssertionError("the writers made no progress within 120 s")


def test_a_restarted_server_loses_and_doubles_nothing(cluster: OwnCluster, tmp_path: Path) -> None:
    url = f"{cluster.url}?schema=restart"
    sid = "s"
    with eventlog.open(url) as log:
        log.create_session(sid)
    go, stop = tmp_path / "go", tmp_path / "stop"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    restarts: list[str] = []
    try:
        for w in range(WRITERS):
            ack = tmp_path / f"ack-{w}"
            # Plain appends only: a guarded one (add_message) beside them starves today (its
            # conditional append loses to every plain one queued on the row; issue 16's notes).
            kind = "event"
            procs.append((_procs.start("steady", url, sid, f"w{w}", MOST, go, ack, kind, stop), ack))
        for proc, ack in procs:
            _procs.wait_for_line(ack, "ready", proc)
        go.touch()
        for mode in ("fast", "immediate", ""):
            # Every writer acknowledges some appends (after the restart before, if any);
            # then the server restarts under them, or (last) the run ends.
            _wait_for_progress(procs, _acked_counts(procs), 20)
            if any(proc.poll() is not None for proc, _ack in procs):
                break
            if mode:
                cluster.restart(mode)
                restarts.append(mode)
        stop.touch()
        for proc, _ack in procs:
            _procs.finish(proc, timeout=180)
    finally:
        for proc, _ack in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert restarts == ["fast", "immediate"], "a writer ended before both restarts"
    acked: dict[str, int] = {}
    unsure: set[str] = set()
    for _proc, ack in procs:
        for line in _procs.ack_lines(ack):
            if line[0] == "ack":
                acked[line[1]] = int(line[2])
            elif line[0] == "unsure":
                unsure.add(line[1])
    with eventlog.open(url, create=False) as log:
        events = list(log.events(sid))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        tags = [e.data["content"] if e.type == "message" else f"{e.data['w']}-{e.data['i']}"
                for e in events[1:]]
        assert len(tags) == len(set(tags)), "an append was stored twice"
        at = {tag: seq for seq, tag in enumerate(tags, start=2)}
        missing = [tag for tag, seq in acked.items() if at.get(tag) != seq]
        assert not missing, f"acknowledged appends missing or moved: {missing[:5]}"
        assert set(tags) - set(acked) <= unsure
        assert log.verify(sid).ok
    print(f"{len(acked)} appends acknowledged, {len(unsure)} unsure; restarts: {', '.join(restarts)}")
    assert len(acked) >= WRITERS * 60  # 20 a writer before, between and after the restarts
