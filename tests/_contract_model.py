"""The hypothesis state machine: random programs against the store and against a plain
in-memory model (a dict of event lists), which must agree after every step."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import eventlog
from eventlog import ChatMessage, ConflictError, Event, EventLog, SessionExistsError, SessionNotFoundError

from ._contract_base import ContractBase, fold

SIDS = ("s1", "s2", "s-3")
NAMES = st.sampled_from(["A", "B", "C", "D"])
TYPES = st.sampled_from(["note", "tool.result", "x:y/z-1"])
LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False)  # Unix seconds from 1970
EXPECT = st.sampled_from(["none", "right", "wrong"])
WRONG = st.integers(min_value=1, max_value=5)


def message_event(seq: int, m: ChatMessage) -> Event:
    data: dict[str, Any] = {"id": m.id, "sender": m.sender, "recipient": m.recipient, "content": m.content}
    if m.message_type != "text":
        data["message_type"] = m.message_type
    if m.metadata is not None:
        data["metadata"] = m.metadata
    return Event(seq, "message", float(m.timestamp), data)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.log: EventLog = eventlog.open(url, snapshot_every=3)
        # A second store on the same URL (another process, in effect): its writes must be seen
        # by the first, and the first must cope with sessions it deletes and creates again.
        self.other: EventLog = eventlog.open(url, snapshot_every=4)
        self.model: dict[str, list[Event]] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.log.close()
        self.other.close()

    # Helpers -------------------------------------------------------------------------------

    def expected_seq(self, sid: str, expect: str, wrong: int) -> int | None:
        if expect == "none" or sid not in self.model:
            return None
        last = len(self.model[sid])
        if expect == "right":
            return last
        return last + wrong if wrong % 2 or last - wrong < 0 else last - wrong

    def write(self, sid: str, expected: int | None, action: Any) -> Any:
        """Run a write; check it raised what the model says; return its result or None."""
        if sid not in self.model:
            try:
                action(expected)
            except SessionNotFoundError:
                return None
            raise AssertionError(f"a write to missing session {sid} did not raise not-found")
        if expected is not None and expected != len(self.model[sid]):
            try:
                action(expected)
            except ConflictError as exc:
                assert (exc.expected_seq, exc.actual_seq) == (expected, len(self.model[sid]))
                return None
            raise AssertionError(f"expected_seq={expected} against last seq {len(self.model[sid])}")
        return action(expected)

    def new_message(self, sid: str, sender: str, recipient: str | None, content: str,
                    timestamp: float) -> ChatMessage:
        self.counter += 1
        return ChatMessage(id=f"m{self.counter}", sender=sender, recipient=recipient, content=content,
                           timestamp=timestamp, session_id=sid,
                           message_type="text" if self.counter % 3 else "note",
                           metadata=None if self.counter % 2 else {"n": self.counter})

    # Rules ---------------------------------------------------------------------------------

    @rule(sid=st.sampled_from(SIDS), people=st.lists(NAMES, unique=True, max_size=3),
          metadata=st.dictionaries(st.text(max_size=4), JSON, max_size=2),
          created_at=st.none() | TIMES, exist_ok=st.booleans())
    def create(self, sid: str, people: list[str], metadata: dict[str, Any], created_at: float | None,
               exist_ok: bool) -> None:
        if sid in self.model:
            if exist_ok:
                assert self.log.create_session(sid, people, metadata, exist_ok=True) == fold(
                    sid, self.model[sid])
            else:
                try:
                    self.log.create_session(sid, people, metadata, created_at=created_at)
                except SessionExistsError:
                    return
                raise AssertionError("created an existing session")
            return
        s = self.log.create_session(sid, people, metadata, created_at=created_at, exist_ok=exist_ok)
        self.model[sid] = [Event(1, "session.created", s.created_at,
                                 {"participants": people, "metadata": metadata})]
        if created_at is not None:
            assert s.created_at == created_at

    @rule(sid=st.sampled_from(SIDS), sender=NAMES, recipient=st.none() | NAMES,
          content=st.text(max_size=20), timestamp=TIMES, expect=EXPECT, wrong=WRONG)
    def add_message(self, sid: str, sender: str, recipient: str | None, content: str,
                    timestamp: float, expect: str, wrong: int) -> None:
        m = self.new_message(sid, sender, recipient, content, timestamp)
        stored = self.write(sid, self.expected_seq(sid, expect, wrong),
                            lambda e: self.log.add_message(m, expected_seq=e))
        if stored is not None:
            assert stored.seq == len(self.model[sid]) + 1
            self.model[sid].append(message_event(stored.seq, m))

    @rule(sid=st.sampled_from(SIDS), senders=st.lists(NAMES, min_size=1, max_size=3),
          timestamp=TIMES, expect=EXPECT, wrong=WRONG)
    def add_messages(self, sid: str, senders: list[str], timestamp: float, expect: str,
                     wrong: int) -> None:
        batch = [self.new_message(sid, s, None, "batch", timestamp) for s in senders]
        stored = self.write(sid, self.expected_seq(sid, expect, wrong),
                            lambda e: self.log.add_messages(batch, expected_seq=e))
        if stored is not None:
            first = len(self.model[sid]) + 1
            assert [m.seq for m in stored] == list(range(first, first + len(batch)))
            self.model[sid].extend(message_event(m.seq, m) for m in stored)

    @rule(sid=st.sampled_from(SIDS), kind=TYPES, data=JSON, expect=EXPECT, wrong=WRONG)
    def append(self, sid: str, kind: str, data: Any, expect: str, wrong: int) -> None:
        event = self.write(sid, self.expected_seq(sid, expect, wrong),
                           lambda e: self.log.append(sid, kind, data, expected_seq=e))
        if event is not None:
            assert (event.seq, event.type, event.data) == (len(self.model[sid]) + 1, kind, data)
            self.model[sid].append(event)

    @rule(sid=st.sampled_from(SIDS), items=st.lists(st.tuples(TYPES, JSON), min_size=1, max_size=4),
          expect=EXPECT, wrong=WRONG)
    def append_many(self, sid: str, items: list[tuple[str, Any]], expect: str, wrong: int) -> None:
        events = self.write(sid, self.expected_seq(sid, expect, wrong),
                            lambda e: self.log.append_many(sid, items, expected_seq=e))
        if events is not None:
            first = len(self.model[sid]) + 1
            assert [(e.seq, e.type, e.data) for e in events] == [
                (first + i, kind, data) for i, (kind, data) in enumerate(items)]
            self.model[sid].extend(events)

    @rule(sid=st.sampled_from(SIDS), name=NAMES, join=st.booleans())
    def membership(self, sid: str, name: str, join: bool) -> None:
        change = self.log.add_participant if join else self.log.remove_participant
        event = self.write(sid, None, lambda e: change(sid, name))
        if event is not None:
            assert event.seq == len(self.model[sid]) + 1
            self.model[sid].append(event)

    @rule(sid=st.sampled_from(SIDS))
    def delete(self, sid: str) -> None:
        if sid in self.model:
            self.log.delete_session(sid)
            del self.model[sid]
        else:
            try:
                self.log.delete_session(sid)
            except SessionNotFoundError:
                return
            raise AssertionError("deleted a missing session")

    @rule(sid=st.sampled_from(SIDS), items=st.lists(st.tuples(TYPES, JSON), min_size=1, max_size=3),
          recreate=st.booleans())
    def elsewhere(self, sid: str, items: list[tuple[str, Any]], recreate: bool) -> None:
        """Through the other store: append, or delete and create again."""
        if sid not in self.model:
            return
        if recreate:
            self.other.delete_session(sid)
            s = self.other.create_session(sid, ["Z"], created_at=1.0)
            self.model[sid] = [Event(1, "session.created", s.created_at,
                                     {"participants": ["Z"], "metadata": {}})]
        else:
            events = self.other.append_many(sid, items, expected_seq=len(self.model[sid]))
            self.model[sid].extend(events)

    @rule(every=st.sampled_from([1, 2, 3, 5, 1000]))
    def reopen(self, every: int) -> None:
        self.log.close()
        self.log = eventlog.open(self.url, snapshot_every=every)

    @rule(source=st.sampled_from(SIDS), copy=st.sampled_from(SIDS))
    def import_copy(self, source: str, copy: str) -> None:
        if source not in self.model:
            try:
                self.log.import_events(copy, self.log.events(source))
            except SessionNotFoundError:
                return
            raise AssertionError("imported from a missing session")
        if copy in self.model:
            try:
                self.log.import_events(copy, list(self.log.events(source)))
            except SessionExistsError:
                return
            raise AssertionError("imported over an existing session")
        self.log.import_events(copy, self.log.events(source), batch_size=2)
        self.model[copy] = list(self.model[source])

    @rule(sid=st.sampled_from(SIDS), limit=st.none() | st.integers(0, 6),
          before=st.none() | st.integers(0, 30), after=st.none() | st.integers(0, 30))
    def read_messages(self, sid: str, limit: int | None, before: int | None, after: int | None) -> None:
        if sid not in self.model:
            return
        wanted = [e for e in self.model[sid] if e.type == "message"
                  and (after or 0) < e.seq and (before is None or e.seq < before)]
        if limit is not None:
            wanted = wanted[max(0, len(wanted) - limit):] if limit else []
        got = self.log.get_messages(sid, limit=limit, before_seq=before, after_seq=after)
        assert [message_event(m.seq or 0, m) for m in got] == wanted
        assert all(m.session_id == sid for m in got)

    @rule(sid=st.sampled_from(SIDS), back=st.integers(0, 5))
    def follow(self, sid: str, back: int) -> None:
        if sid not in self.model:
            return
        after = max(0, len(self.model[sid]) - back)
        assert list(self.log.follow(sid, after_seq=after, timeout=0)) == self.model[sid][after:]

    # After every step ----------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert [s.session_id for s in self.log.list_sessions()] == sorted(self.model)
        for sid in SIDS:
            if sid in self.model:
                assert list(self.log.events(sid)) == self.model[sid]
                assert self.log.get_session(sid) == fold(sid, self.model[sid])
                assert self.log.session_exists(sid)
            else:
                assert not self.log.session_exists(sid)
                try:
                    self.log.get_session(sid)
                except SessionNotFoundError:
                    continue
                raise AssertionError(f"{sid} should not exist")
        report = self.log.verify()
        assert report.ok, report.problems
        assert report.events_checked == sum(map(len, self.model.values()))


class ModelContract(ContractBase):

    model_settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])

    def test_the_store_agrees_with_a_model(self) -> None:
        # Any callable returning a machine will do (hypothesis's docs); typed as a class.
        factory = cast("type[RuleBasedStateMachine]", lambda: StoreMachine(self.fresh_url()))
        run_state_machine_as_test(factory, settings=self.model_settings)
