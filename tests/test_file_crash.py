"""Crash safety (file backend): writer processes SIGKILLed at random moments, many times.

Every append a writer was told succeeded (it wrote an ack line after the call returned) must
be in the log exactly once at the seqs it was given; an append_many batch is whole or absent;
the log verifies, and writing carries on after each round.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog
from eventlog import Event

from . import _procs

SID = "crashy"


def _tag(event: Event) -> str | None:
    if event.type == "message":
        return str(event.data["id"])
    if event.type.startswith("crash."):
        return str(event.data["tag"])
    return None


def check_log(root: Path, acked: dict[str, list[int]]) -> list[Event]:
    with eventlog.open(root) as log:
        events = list(log.events(SID))
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seqs 1..N"
        stored: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            tag = _tag(event)
            if tag is not None:
                stored[tag].append(event)
        for tag, seqs in acked.items():
            assert [e.seq for e in stored.get(tag, [])] == seqs, f"acknowledged {tag} not stored as told"
        for tag, members in stored.items():
            first = members[0]
            if first.type == "crash.batch":  # whole: all n members, in order, back to back
                n = first.data["n"]
                assert [e.data["k"] for e in members] == list(range(n)), f"batch {tag} is not whole"
                assert [e.seq for e in members] == list(range(first.seq, first.seq + n))
            else:
                assert len(members) == 1, f"{tag} stored {len(members)} times"
        report = log.verify()
        assert report.ok, report.problems
        assert log.get_session(SID).last_seq == len(events)
        messages = [e for e in events if e.type == "message"]
        assert [m.seq for m in log.get_messages(SID, limit=20)] == [e.seq for e in messages[-20:]]
        return events


def _acks(path: Path) -> dict[str, list[int]]:
    return {line[1]: [int(s) for s in line[2].split(",")]
            for line in _procs.ack_lines(path) if line[0] == "ack"}


@pytest.fixture
def spawner() -> Iterator[_procs.Spawner]:
    spawner = _procs.Spawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.mark.slow
@pytest.mark.parametrize(("durability", "rounds"), [("os", 30), ("fsync", 10)])
def test_writers_killed_at_random_moments(tmp_path: Path, spawner: _procs.Spawner, durability: str,
                                          rounds: int) -> None:
    root = tmp_path / "store"
    with eventlog.open(root) as log:
        log.create_session(SID, participants=["w"])
    rng = random.Random(f"crash-{durability}")
    acked: dict[str, list[int]] = {}
    for r in range(rounds):
        writers = []
        for w in range(rng.choice([1, 2, 3])):
            ack = tmp_path / f"ack-{r}-{w}"
            seed = rng.randrange(9**9)
            writers.append((spawner.start("crash", root, SID, f"r{r}w{w}", ack, durability, seed), ack))
        for _, ack in writers:
            _procs.wait_for_ready(ack)
        time.sleep(rng.uniform(0.002, 0.06))
        for pid, _ in writers:  # one by one, at slightly different moments
            spawner.kill(pid)
            time.sleep(rng.uniform(0, 0.005))
        for _, ack in writers:
            acked.update(_acks(ack))
        if r % 8 == 7 or r == rounds - 1:  # (a full check replays everything: not every round)
            check_log(root, acked)
    with eventlog.open(root) as log:  # and writing carries on
        log.append(SID, "after", 1)
        log.append_many(SID, [("after", 2), ("after", 3)])
    events = check_log(root, acked)
    assert len(acked) > rounds  # the writers did write between kills
    assert [e.data for e in events[-3:]] == [1, 2, 3]
    # (How often a kill cut a write, for whoever tunes this test: quarantine files.)
    print("torn tails quarantined:", len(list((root / SID).glob("quarantine-*"))))


@pytest.mark.slow
def test_sessions_created_and_deleted_while_killed(tmp_path: Path, spawner: _procs.Spawner) -> None:
    root = tmp_path / "store"
    rng = random.Random("churn")
    created: set[str] = set()
    appended: set[str] = set()
    deleted: set[str] = set()
    in_flight: set[str] = set()
    for r in range(15):
        ack = tmp_path / f"ack-{r}"
        pid = spawner.start("churn", root, f"r{r}", ack)
        _procs.wait_for_ready(ack)
        time.sleep(rng.uniform(0.005, 0.1))
        spawner.kill(pid)
        lines = [line for line in _procs.ack_lines(ack) if line[0] != "ready"]
        for word, sid in lines:
            {"created": created, "appended": appended, "deleted": deleted}[word].add(sid)
        # A delete in flight at the kill may have happened, unacknowledged.
        if lines and lines[-1][0] == "appended" and int(lines[-1][1].split("-")[1]) % 3 == 0:
            in_flight.add(f"r{r}-{int(lines[-1][1].split('-')[1]) - 1}")
        with eventlog.open(root) as log:
            listed = {s.session_id: s for s in log.list_sessions()}
            for sid in created - deleted - in_flight:
                assert sid in listed, f"{sid} was created and not deleted, but is gone"
            for sid in deleted:
                assert sid not in listed and not log.session_exists(sid)
            for sid, state in listed.items():
                if sid.startswith("check-"):
                    continue  # made by this test, below
                assert state.last_seq in (1, 4), f"{sid}: a batch of 3 is whole or absent"
                if sid in appended:
                    assert state.last_seq == 4
            report = log.verify()
            assert report.ok, report.problems
            # Leftovers of an interrupted create or delete are hidden, never sessions.
            # (The catalog, ``.catalog``, is derived data kept beside the sessions.)
            assert all(not p.name.startswith(".") or p.name in (".eventlog.json", ".catalog")
                       or p.is_dir() for p in root.iterdir())
            log.append(log.create_session(f"check-{r}").session_id, "x", 1)
    assert len(created) > 15
