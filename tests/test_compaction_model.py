"""A hypothesis state machine for seal, compact, cleanup and reopen against a plain model.

Random programs of writes (with timestamps days in the past), seals, compactions of one
or every session, retention with and without ``archive_dir``/``dry_run``, dropped
snapshots and reopens with other segment sizes; after every step the store must agree
with a dict of event lists and verify clean.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import eventlog
from eventlog import ChatMessage, ChatSession, Event, SessionExistsError, SessionNotFoundError
from eventlog.backends.files._segments import parse_header, parse_trailer
from eventlog.core._codec import FORMAT_VERSION, ChainReader, genesis

SIDS = ("a", "b", "c")
DAY = 86400.0
AGES = st.sampled_from([0.0, 1.0, 5.0, 40.0])  # days in the past; far from every cutoff below
NAMES = st.sampled_from(["A", "B", "C"])


def fold(sid: str, events: list[Event]) -> ChatSession:
    """The session state as issue 2 defines it, folded from the model's events."""
    created = events[0]
    participants = list(created.data["participants"])
    count = 0
    for event in events[1:]:
        if event.type == "message":
            count += 1
            for person in (event.data["sender"], event.data.get("recipient")):
                if person is not None and person not in participants:
                    participants.append(person)
    return ChatSession(session_id=sid, participants=participants, created_at=created.ts,
                       last_activity=max(e.ts for e in events), message_count=count,
                       last_seq=events[-1].seq, metadata=created.data["metadata"])


class CompactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="eventlog-model-"))
        self.root = self.dir / "store"
        self.log = eventlog.open(self.root, segment_max_events=4, snapshot_every=3)
        self.model: dict[str, list[Event]] = {}
        self.counter = 0
        self.cleanups = 0

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(sid=st.sampled_from(SIDS), age=AGES, people=st.lists(NAMES, unique=True, max_size=2))
    def create(self, sid: str, age: float, people: list[str]) -> None:
        try:
            s = self.log.create_session(sid, people, {"k": sid}, created_at=time.time() - age * DAY)
        except SessionExistsError:
            assert sid in self.model
            return
        assert sid not in self.model
        self.model[sid] = [Event(1, "session.created", s.created_at,
                                 {"participants": people, "metadata": {"k": sid}})]

    @rule(sid=st.sampled_from(SIDS), age=AGES, sender=NAMES, count=st.integers(1, 5))
    def add_messages(self, sid: str, age: float, sender: str, count: int) -> None:
        ts = time.time() - age * DAY
        batch = []
        for _ in range(count):
            self.counter += 1
            batch.append(ChatMessage(id=f"m{self.counter}", sender=sender, content=f"c{self.counter}",
                                     session_id=sid, timestamp=ts))
        try:
            stored = self.log.add_messages(batch)
        except SessionNotFoundError:
            assert sid not in self.model
            return
        for m in stored:
            assert m.seq is not None
            self.model[sid].append(Event(m.seq, "message", ts, {
                "id": m.id, "sender": m.sender, "recipient": None, "content": m.content}))

    @rule(sid=st.sampled_from(SIDS), data=st.integers(-(2**63), 2**63 - 1))
    def append(self, sid: str, data: int) -> None:
        try:
            event = self.log.append(sid, "x.y", data)
        except SessionNotFoundError:
            assert sid not in self.model
            return
        self.model[sid].append(event)

    @rule(sid=st.sampled_from(SIDS))
    def seal(self, sid: str) -> None:
        try:
            sealed = self.log.backend.seal(sid, durable=False)
        except SessionNotFoundError:
            assert sid not in self.model
            return
        assert sealed.head.seq == len(self.model[sid])

    @rule(sid=st.none() | st.sampled_from(SIDS))
    def compact(self, sid: str | None) -> None:
        try:
            report = self.log.compact(sid)
        except SessionNotFoundError:
            assert sid not in self.model
            return
        assert report.ok and report.sessions == (len(self.model) if sid is None else 1)

    @rule(days=st.sampled_from([0.5, 3.0, 30.0]), dry_run=st.booleans(), aside=st.booleans())
    def cleanup(self, days: float, dry_run: bool, aside: bool) -> None:
        cutoff = time.time() - days * DAY
        old = sorted(sid for sid, events in self.model.items() if max(e.ts for e in events) < cutoff)
        self.cleanups += 1
        target = self.dir / f"aside{self.cleanups}" if aside else None
        assert self.log.cleanup_old_sessions(days, archive_dir=target, dry_run=dry_run) == old
        if dry_run:
            assert target is None or not target.exists()
            return
        for sid in old:
            if target is not None:
                assert self.read_aside(target / f"{sid}.jsonl", sid) == self.model[sid]
            del self.model[sid]

    @staticmethod
    def read_aside(path: Path, sid: str) -> list[Event]:
        lines = path.read_bytes().splitlines()
        assert parse_header(lines[0]) == genesis(sid)
        chain = ChainReader(sid, genesis(sid), FORMAT_VERSION)
        events = list(chain.read((path.name, n, line) for n, line in enumerate(lines[1:-1], 2)))
        assert parse_trailer(lines[-1]) == chain.head
        return events

    @rule(sid=st.sampled_from(SIDS))
    def drop_snapshots(self, sid: str) -> None:
        if sid in self.model:
            for path in (self.root / sid).glob("snap-*.json"):
                path.unlink()

    @rule(sid=st.sampled_from(SIDS))
    def delete(self, sid: str) -> None:
        try:
            self.log.delete_session(sid)
        except SessionNotFoundError:
            assert sid not in self.model
            return
        del self.model[sid]

    @rule(events=st.sampled_from([2, 4, 7, 1000]), every=st.sampled_from([1, 3, 1000]))
    def reopen(self, events: int, every: int) -> None:
        self.log.close()
        self.log = eventlog.open(self.root, segment_max_events=events, snapshot_every=every)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert [s.session_id for s in self.log.list_sessions()] == sorted(self.model)
        for sid in SIDS:
            if sid not in self.model:
                assert not self.log.session_exists(sid)
                continue
            events = self.model[sid]
            assert list(self.log.events(sid)) == events
            assert list(self.log.events(sid, after_seq=len(events) // 2)) == events[len(events) // 2:]
            assert self.log.get_session(sid) == fold(sid, events)
            messages = [e.seq for e in events if e.type == "message"]
            assert [m.seq for m in self.log.get_messages(sid, limit=3)] == messages[-3:]
            got: Any = [e.seq for e in self.log.follow(sid, after_seq=max(0, len(events) - 3), timeout=0)]
            assert got == [e.seq for e in events[max(0, len(events) - 3):]]
        report = self.log.verify()
        assert report.ok, report.problems
        assert report.events_checked == sum(map(len, self.model.values()))


def test_compaction_and_retention_agree_with_a_model() -> None:
    run_state_machine_as_test(CompactionMachine, settings=settings(
        max_examples=int(os.environ.get("EVENTLOG_MODEL_EXAMPLES", "25")), stateful_step_count=30,
        deadline=None, suppress_health_check=[HealthCheck.too_slow]))
