"""Concurrency: threads of one process, and (for backends shared between processes)
several processes appending to one session at once, and following across processes."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import EventLog, SessionNotFoundError

from . import _procs
from ._contract_base import ContractBase, fold, message


def check_exact(log: EventLog, sid: str, acked: dict[str, int], expected_tags: set[str]) -> None:
    """The session holds seqs 1..N, each tagged event once, at the seq its writer was told."""
    events = list(log.events(sid))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    tags = [f"{e.data['w']}-{e.data['i']}" for e in events[1:]]
    assert len(tags) == len(set(tags)), "an event was stored twice"
    assert set(tags) == expected_tags
    at = {tag: seq for seq, tag in enumerate(tags, start=2)}
    assert all(at[tag] == seq for tag, seq in acked.items())
    report = log.verify(sid)
    assert report.ok and report.events_checked == len(events), report.problems


def _in_threads(work: Callable[[int], None], count: int) -> list[BaseException]:
    """Run ``work(0)`` .. ``work(count - 1)`` in threads at once; return what they raised."""
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            work(w)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _append_until_gone(log: EventLog, sid: str, go: threading.Event, errors: list[BaseException]) -> None:
    go.wait()
    try:
        while True:
            log.append(sid, "t", 1)
    except SessionNotFoundError:
        return
    except BaseException as exc:  # reported by the test
        errors.append(exc)


class ConcurrencyContract(ContractBase):

    def test_threads_append_to_one_session_at_once(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        acked: dict[str, int] = {}

        def worker(w: int) -> None:
            for i in range(40):
                if w % 3 == 0:
                    while True:
                        last = log.get_session(sid).last_seq
                        try:
                            event = log.append(sid, "t", {"w": w, "i": i}, expected_seq=last)
                            break
                        except eventlog.ConflictError:
                            continue
                    acked[f"{w}-{i}"] = event.seq
                elif w % 3 == 1 and i % 2 == 0:
                    pair = log.append_many(sid, [("t", {"w": w, "i": i}), ("t", {"w": w, "i": i + 1})])
                    acked[f"{w}-{i}"], acked[f"{w}-{i + 1}"] = pair[0].seq, pair[1].seq
                elif w % 3 != 1:
                    acked[f"{w}-{i}"] = log.append(sid, "t", {"w": w, "i": i}).seq

        assert _in_threads(worker, 8) == []
        check_exact(log, sid, acked, {f"{w}-{i}" for w in range(8) for i in range(40)})

    def test_threads_racing_keep_the_writers_fold_and_its_snapshots_exact(self, url: str) -> None:
        """The writer's fold advances after each append's lock is released, so threads of one
        process reach it in any order. Here each thread is held up at random right there (after
        its append returned, before the fold takes it), so later appends overtake it: every
        snapshot written must still equal the fold of the events it covers, and the state read,
        in this store and a fresh one, must equal the reference fold."""
        with eventlog.open(url, snapshot_every=5) as log:
            backend = log.backend
            real = backend.append_one
            rng = random.Random(7)

            def held_up(*args: Any) -> Any:
                done = real(*args)
                if rng.random() < 0.5:
                    time.sleep(rng.random() * 0.002)
                return done

            backend.append_one = held_up  # type: ignore[method-assign,assignment]
            sid = log.create_session(participants=["host"]).session_id

            def worker(w: int) -> None:
                for i in range(40):
                    if i % 7 == 3:
                        log.add_participant(sid, f"guest-{w}-{i}")
                    elif i % 11 == 5:
                        log.append(sid, "note", {"w": w})
                    else:
                        log.add_message(message(sid, sender=f"agent-{w}-{i % 4}", content=f"{i}",
                                                recipient="host" if i % 2 else None))

            assert _in_threads(worker, 6) == []
            report = log.verify(sid)
            assert report.ok, report.problems
            events = list(log.events(sid))
            assert log.get_session(sid) == fold(sid, events)
        with eventlog.open(url) as fresh:
            assert fresh.get_session(sid) == fold(sid, events)

    def test_threads_appending_while_the_session_is_deleted(self, log: EventLog) -> None:
        """Writers racing a delete get not-found, never a crash from a handle closed under them."""
        for _round in range(5):
            sid = log.create_session().session_id
            errors: list[BaseException] = []
            go = threading.Event()
            threads = [threading.Thread(target=_append_until_gone, args=(log, sid, go, errors))
                       for _ in range(4)]
            for thread in threads:
                thread.start()
            go.set()
            time.sleep(0.02)
            log.delete_session(sid)
            for thread in threads:
                thread.join(30)
            assert errors == [], errors
            assert not log.session_exists(sid)
            assert log.create_session(sid).last_seq == 1

    def test_readers_see_a_consistent_prefix_while_writers_append(self, log: EventLog) -> None:
        """Readers never block writers, and never see a gap or half a batch."""
        sid = log.create_session().session_id
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            try:
                for i in range(60):
                    log.append_many(sid, [("b", {"w": w, "i": i, "k": k}) for k in range(3)])
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            last = 0
            try:
                while not stop.is_set():
                    events = list(log.events(sid))
                    assert [e.seq for e in events] == list(range(1, len(events) + 1))
                    assert (len(events) - 1) % 3 == 0, "half a batch"
                    for first in range(1, len(events), 3):
                        batch = [e.data for e in events[first:first + 3]]
                        assert [d["k"] for d in batch] == [0, 1, 2]
                        assert len({(d["w"], d["i"]) for d in batch}) == 1
                    state = log.get_session(sid)
                    assert state.last_seq >= len(events) >= last
                    last = state.last_seq
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == [], errors
        assert log.get_session(sid).last_seq == 1 + 3 * 60 * 3

    @pytest.mark.slow
    def test_processes_append_to_one_session_at_once(self, url: str, tmp_path: Path) -> None:
        """8 processes: plain appends, expected_seq retry loops and atomic batches."""
        self.need_processes()
        with eventlog.open(url) as log:
            sid = log.create_session(participants=["stress"]).session_id
        modes = ["plain", "plain", "plain", "expected", "expected", "expected", "batch", "batch"]
        count = 60
        go = tmp_path / "go"
        procs = []
        for w, mode in enumerate(modes):
            ack = tmp_path / f"ack-{w}"
            procs.append((_procs.start("stress", url, sid, f"w{w}", count, mode, go, ack), ack))
        for proc, ack in procs:
            _procs.wait_for_line(ack, "ready", proc)
        go.touch()
        with eventlog.open(url) as reader:  # read all the while: always a whole, gapless prefix
            reads = 0
            while any(proc.poll() is None for proc, _ in procs) or reads == 0:
                reads += 1
                events = list(reader.events(sid))
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                batched = [e for e in events if e.data and e.data.get("w") in ("w6", "w7")]
                for first in range(0, len(batched), 3):
                    group = batched[first:first + 3]
                    assert [e.data["i"] % 3 for e in group] == [0, 1, 2], "half a batch"
                    assert group[2].seq - group[0].seq == 2
        for proc, _ in procs:
            _procs.finish(proc)
        acked: dict[str, int] = {}
        for _, ack in procs:
            lines = _procs.ack_lines(ack)
            assert lines[-1] == ["done"]
            acked.update({tag: int(seq) for word, tag, seq in (ln for ln in lines if ln[0] == "ack")})
        expected = {f"w{w}-{i}" for w in range(len(modes)) for i in range(count)}
        assert set(acked) == expected
        with eventlog.open(url) as log:
            check_exact(log, sid, acked, expected)
            assert log.get_session(sid).last_seq == 1 + len(expected)

    def test_follow_receives_events_from_another_process_in_order(self, url: str,
                                                                  tmp_path: Path) -> None:
        self.need_processes()
        with eventlog.open(url) as log:
            sid = log.create_session().session_id
            log.append(sid, "before", 0)
            follower = log.follow(sid, timeout=30)  # from now
            proc = _procs.start("append-slowly", url, sid, 40, 0.002, tmp_path / "ack")
            got = [next(follower) for _ in range(40)]
            _procs.finish(proc)
            assert [(e.type, e.data) for e in got] == [("follow.test", {"i": i}) for i in range(40)]
            assert got == list(log.events(sid, after_seq=2))

    def test_a_follower_in_another_process_receives_events_in_order(self, url: str,
                                                                    tmp_path: Path) -> None:
        self.need_processes()
        with eventlog.open(url) as log:
            sid = log.create_session().session_id
            log.append(sid, "before", 0)
            ack = tmp_path / "ack"
            proc = _procs.start("follow", url, sid, "none", 30, 30, ack)
            _procs.wait_for_line(ack, "ready", proc)
            for i in range(10):
                log.append(sid, "x", i)
                log.append_many(sid, [("y", i), ("z", i)])
            _procs.finish(proc)
            lines = _procs.ack_lines(ack)
            seen = [(int(ln[1]), ln[2], json.loads(ln[3])) for ln in lines if ln[0] == "event"]
            assert seen == [(e.seq, e.type, e.data) for e in log.events(sid, after_seq=2)]
            assert lines[-1] == ["done", "30"]

    def test_a_follower_in_another_process_learns_the_session_was_created_again(
            self, url: str, tmp_path: Path) -> None:
        # Across processes nothing wakes the follower but what it watches (the file
        # backend's page, SQLite's polling, Redis's XREAD): a new life must show there too.
        self.need_processes()
        with eventlog.open(url) as log:
            sid = log.create_session().session_id
            log.append_many(sid, [("x", i) for i in range(5)])
            ack = tmp_path / "ack"
            proc = _procs.start("follow", url, sid, 0, 100, 30, ack)
            _procs.wait_for_line(ack, "event", proc)
            time.sleep(0.3)  # into its wait
            log.delete_session(sid)
            log.create_session(sid)
            log.append_many(sid, [("y", i) for i in range(9)])  # past where it waits
            start = time.monotonic()
            _procs.finish(proc)
            assert time.monotonic() - start < 10
            lines = _procs.ack_lines(ack)
            assert lines[-1] == ["gone", "6"]
