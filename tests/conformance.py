"""The store contract: one abstract suite that every backend passes unchanged.

A backend's test module subclasses ``StoreContract`` and says only how to build a
store (``fresh_url``) and whether processes can share it. Everything here goes
through ``eventlog.open(url)`` and the public API. Parts of the contract live in
``_contract_*.py`` modules so that each stays readable; ``StoreContract`` is all of
them together.
"""

from __future__ import annotations

import pickle
import time
import uuid

import pytest

import eventlog
from eventlog import (
    ChatMessage,
    ChatSession,
    ConflictError,
    Event,
    EventLog,
    SessionExistsError,
    SessionNotFoundError,
)

from ._contract_aliasing import AliasingContract
from ._contract_base import ContractBase, contents, message
from ._contract_concurrency import ConcurrencyContract
from ._contract_history import HistoryContract
from ._contract_input import InputContract
from ._contract_model import ModelContract
from ._contract_reads import ReadContract


class ApiContract(ContractBase):
    """Every public method of ``EventLog``: creating, writing, errors, lifecycle."""

    # Opening and closing -------------------------------------------------------------------

    def test_open_returns_an_eventlog_usable_as_a_context_manager(self, url: str) -> None:
        with eventlog.open(url) as log:
            assert isinstance(log, EventLog)
            sid = log.create_session(participants=["a"]).session_id
        log.close()  # closing twice is harmless
        with eventlog.open(url) as again:
            assert again.get_session(sid).participants == ["a"]

    def test_create_false_opens_only_a_store_that_exists(self, url: str) -> None:
        """``create=False`` (what every command that only reads uses) creates nothing: a
        second try finds nothing either; once the store exists it opens and works as usual."""
        if self.missing_store_detectable:
            for _ in range(2):
                with pytest.raises(eventlog.StoreNotFoundError):
                    eventlog.open(url, create=False)
        with eventlog.open(url) as log:
            sid = log.create_session(participants=["a"]).session_id
        with eventlog.open(url, create=False) as log:
            assert log.session_ids() == [sid]
            log.append(sid, "x.y", 1)
            assert log.get_session(sid).last_seq == 2

    def test_every_method_of_a_closed_store_raises_store_closed(self, url: str) -> None:
        log = eventlog.open(url)
        sid = log.create_session().session_id
        log.close()
        calls = [
            lambda: log.create_session(), lambda: log.add_message(message(sid)),
            lambda: log.add_messages([message(sid)]), lambda: log.append(sid, "x", 1),
            lambda: log.append_many(sid, [("x", 1)]), lambda: log.get_session(sid),
            lambda: log.get_messages(sid), lambda: log.get_messages(sid, limit=5),
            lambda: log.events(sid), lambda: log.follow(sid, timeout=0),
            lambda: log.list_sessions(), lambda: log.delete_session(sid), lambda: log.verify(),
            lambda: log.verify(sid), lambda: log.size(sid), lambda: log.session_exists(sid),
            lambda: log.add_participant(sid, "b"), lambda: log.remove_participant(sid, "b"),
            lambda: log.import_events("copy", []),
        ]
        for call in calls:
            with pytest.raises(eventlog.StoreClosedError):
                call()
        with eventlog.open(url) as again:
            assert [e.seq for e in again.events(sid)] == [1]

    # Creating sessions ---------------------------------------------------------------------

    def test_create_session_is_event_seq_1(self, log: EventLog) -> None:
        before = time.time()
        s = log.create_session(participants=["Agent-1", "Agent-2"], metadata={"topic": "x"})
        after = time.time()
        assert isinstance(s, ChatSession)
        assert log.session_exists(s.session_id)
        assert s.participants == ["Agent-1", "Agent-2"]
        assert s.metadata == {"topic": "x"}
        assert before <= s.created_at <= after
        assert s.last_activity == s.created_at
        assert (s.message_count, s.last_seq) == (0, 1)
        assert log.get_session(s.session_id) == s
        [created] = log.events(s.session_id)
        assert created == Event(1, "session.created", s.created_at,
                                {"participants": ["Agent-1", "Agent-2"], "metadata": {"topic": "x"}})

    def test_create_session_defaults_and_generated_ids(self, log: EventLog) -> None:
        a, b = log.create_session(), log.create_session()
        assert a.session_id != b.session_id
        assert (a.participants, a.metadata) == ([], {})

    def test_create_session_with_created_at_for_imported_history(self, log: EventLog) -> None:
        s = log.create_session("old", created_at=1_000_000)
        assert (s.created_at, s.last_activity) == (1_000_000.0, 1_000_000.0)
        assert log.get_session("old").created_at == 1_000_000.0
        assert next(iter(log.events("old"))).ts == 1_000_000.0

    def test_create_existing_session_raises_and_changes_nothing(self, log: EventLog) -> None:
        log.create_session("s", participants=["a"], metadata={"v": 1})
        log.add_message(message("s"))
        before = contents(log)
        with pytest.raises(SessionExistsError) as info:
            log.create_session("s", participants=["b"])
        assert isinstance(info.value, eventlog.EventLogError)
        assert info.value.session_id == "s"
        assert contents(log) == before

    def test_create_with_exist_ok_returns_the_existing_session(self, log: EventLog) -> None:
        first = log.create_session("s", participants=["a"])
        log.add_message(message("s", sender="b"))
        again = log.create_session("s", participants=["zzz"], exist_ok=True)
        assert again == log.get_session("s")
        assert again.participants == ["a", "b"] and again.created_at == first.created_at
        fresh = log.create_session("t", exist_ok=True)
        assert fresh.session_id == "t" and fresh.last_seq == 1

    def test_a_deleted_id_can_be_created_again(self, log: EventLog) -> None:
        log.create_session("s", participants=["a"])
        log.add_message(message("s"))
        log.delete_session("s")
        s = log.create_session("s", participants=["b"])
        assert (s.participants, s.last_seq, s.message_count) == (["b"], 1, 0)
        assert [e.seq for e in log.events("s")] == [1]
        assert log.get_messages("s") == []
        assert log.verify("s").ok

    def test_create_refuses_bad_participants_and_metadata(self, log: EventLog) -> None:
        for participants in (["a", "a"], "ab", ["a", ""], ["a", 5], [None]):
            with pytest.raises(eventlog.InvalidInputError):
                log.create_session("s", participants=participants)  # type: ignore[arg-type]
        for metadata in ([1], "x", {1: 2}, {"x": float("nan")}, {"x": object()}):
            with pytest.raises(eventlog.InvalidInputError):
                log.create_session("s", metadata=metadata)  # type: ignore[arg-type]
        for created_at in (float("nan"), float("inf"), "2020", True, [1.0]):
            with pytest.raises(eventlog.InvalidInputError):
                log.create_session("s", created_at=created_at)  # type: ignore[arg-type]
        assert not log.session_exists("s")
        assert contents(log) == []

    # Messages ------------------------------------------------------------------------------

    def test_add_message_returns_the_stored_message_with_its_seq(self, log: EventLog) -> None:
        sid = log.create_session(participants=["Agent-1", "Agent-2"]).session_id
        m = ChatMessage(id=str(uuid.uuid4()), sender="Agent-1", recipient="Agent-2", content="hi",
                        timestamp=1234.5, session_id=sid, message_type="tool", metadata={"k": [1, 2]})
        stored = log.add_message(m)
        assert stored.seq == 2
        assert stored == ChatMessage(id=m.id, sender="Agent-1", recipient="Agent-2", content="hi",
                                     timestamp=1234.5, session_id=sid, message_type="tool",
                                     metadata={"k": [1, 2]}, seq=2)
        assert log.get_messages(sid) == [stored]
        plain = log.add_message(message(sid, content=""))  # empty content is a message too
        assert plain.seq == 3 and plain.recipient is None and plain.message_type == "text"
        assert log.get_messages(sid) == [stored, plain]
        assert log.get_session(sid).message_count == 2

    def test_a_message_is_exactly_one_event(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        stored = log.add_message(message(sid, recipient="b", timestamp=7.0))
        [_, event] = log.events(sid)
        assert event == Event(2, "message", 7.0, {"id": stored.id, "sender": "Agent-1",
                                                  "recipient": "b", "content": "hi"})

    def test_add_messages_is_one_atomic_batch(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        stored = log.add_messages([message(sid, content=str(i)) for i in range(5)])
        assert [m.seq for m in stored] == [2, 3, 4, 5, 6]
        assert [m.content for m in log.get_messages(sid)] == ["0", "1", "2", "3", "4"]
        assert log.add_messages([]) == []
        other = log.create_session().session_id
        before = contents(log)
        with pytest.raises(eventlog.InvalidEventError):
            log.add_messages([message(sid), message(sid, sender="")])
        with pytest.raises(eventlog.InvalidEventError):
            log.add_messages([message(sid), message(other)])
        with pytest.raises(eventlog.EventTooLargeError):
            log.add_messages([message(sid), message(sid, content="x" * (17 << 20))])
        assert contents(log) == before

    def test_add_message_to_a_missing_session(self, log: EventLog) -> None:
        with pytest.raises(SessionNotFoundError) as info:
            log.add_message(message("nope"))
        assert isinstance(info.value, KeyError) and info.value.session_id == "nope"
        assert "nope" in str(info.value)
        assert contents(log) == []

    def test_senders_and_recipients_become_participants(self, log: EventLog) -> None:
        sid = log.create_session(participants=["A"]).session_id
        log.add_message(message(sid, sender="B", recipient="C"))
        log.add_message(message(sid, sender="A", recipient="B"))
        log.add_message(message(sid, sender="D"))
        s = log.get_session(sid)
        assert s.participants == ["A", "B", "C", "D"]
        assert s.last_seq == 4  # no extra events for them

    def test_participants_join_and_leave_as_events(self, log: EventLog) -> None:
        sid = log.create_session(participants=["A", "B"]).session_id
        joined = log.add_participant(sid, "C")
        assert (joined.seq, joined.type, joined.data) == (2, "session.participant_joined",
                                                         {"participant": "C"})
        left = log.remove_participant(sid, "A")
        assert (left.seq, left.type) == (3, "session.participant_left")
        assert log.get_session(sid).participants == ["B", "C"]
        assert list(log.events(sid))[1:] == [joined, left]
        with pytest.raises(ConflictError):
            log.add_participant(sid, "D", expected_seq=2)
        with pytest.raises(eventlog.InvalidEventError):
            log.add_participant(sid, "")
        assert log.get_session(sid).last_seq == 3

    def test_last_activity_is_the_largest_event_timestamp(self, log: EventLog) -> None:
        sid = log.create_session(created_at=100.0).session_id
        log.add_message(message(sid, timestamp=500.0))
        log.add_message(message(sid, timestamp=300.0))  # an older timestamp, given late
        assert log.get_session(sid).last_activity == 500.0
        log.add_message(message(sid, timestamp=50.0))
        assert log.get_session(sid).last_activity == 500.0
        event = log.append(sid, "note", None)  # custom events carry the append time
        assert log.get_session(sid).last_activity == event.ts > 500.0
        later = log.create_session(created_at=9e9).session_id
        log.add_message(message(later, timestamp=10.0))
        assert log.get_session(later).last_activity == 9e9

    # Custom events -------------------------------------------------------------------------

    def test_append_returns_the_event_as_stored(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        before = time.time()
        event = log.append(sid, "tool.result", {"tool": "search", "hits": 3, "ok": True})
        assert isinstance(event, Event)
        assert (event.seq, event.type, event.data) == (2, "tool.result",
                                                       {"tool": "search", "hits": 3, "ok": True})
        assert before <= event.ts <= time.time()
        assert list(log.events(sid))[1] == event
        assert log.append(sid, "nothing").data is None
        assert list(log.events(sid))[2].data is None

    def test_append_stores_tuples_as_lists(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        log.append(sid, "t", {"pair": (1, (2, 3))})
        assert list(log.events(sid))[1].data == {"pair": [1, [2, 3]]}

    @pytest.mark.parametrize("kind", ["session.created", "session.participant_joined", "session.x",
                                      "message", "message.edited", "messages", "messageX"])
    def test_reserved_event_types_are_refused(self, log: EventLog, kind: str) -> None:
        sid = log.create_session().session_id
        before = contents(log)
        with pytest.raises(eventlog.InvalidEventError):
            log.append(sid, kind, {})
        with pytest.raises(eventlog.InvalidEventError):
            log.append_many(sid, [("fine", 1), (kind, {})])
        assert contents(log) == before

    def test_append_many_is_one_atomic_batch(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        events = log.append_many(sid, [("a", 1), ("b", [2]), ("c", {"x": None})])
        assert [(e.seq, e.type, e.data) for e in events] == [(2, "a", 1), (3, "b", [2]),
                                                             (4, "c", {"x": None})]
        assert len({e.ts for e in events}) == 1
        assert list(log.events(sid))[1:] == events
        assert log.append_many(sid, []) == []
        before = contents(log)
        for bad in ([("ok", 1), ("bad", float("nan"))], [("ok", 1), ["list", 1]], [("ok", 1), ("x",)],
                    [("ok", 1), ("", 1)], [("ok", 1), ("big", "x" * (17 << 20))]):
            with pytest.raises(eventlog.InvalidEventError):
                log.append_many(sid, bad)  # type: ignore[arg-type]
        assert contents(log) == before

    def test_append_to_a_missing_session(self, log: EventLog) -> None:
        with pytest.raises(SessionNotFoundError):
            log.append("nope", "x", 1)
        with pytest.raises(SessionNotFoundError):
            log.append_many("nope", [("x", 1)])
        assert contents(log) == []

    # expected_seq --------------------------------------------------------------------------

    def test_expected_seq_appends_only_at_that_head(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        assert log.append(sid, "x", 1, expected_seq=1).seq == 2
        assert log.append_many(sid, [("x", 2), ("x", 3)], expected_seq=2)[-1].seq == 4
        assert log.add_message(message(sid), expected_seq=4).seq == 5
        assert log.add_messages([message(sid)], expected_seq=5)[0].seq == 6
        assert log.add_participant(sid, "p", expected_seq=6).seq == 7
        assert log.remove_participant(sid, "p", expected_seq=7).seq == 8

    @pytest.mark.parametrize("wrong", [0, 1, 7, 9, 10**6])
    def test_a_wrong_expected_seq_raises_conflict_and_writes_nothing(self, log: EventLog,
                                                                     wrong: int) -> None:
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(7)])  # last seq 8
        before = contents(log)
        calls = [lambda: log.append(sid, "x", 1, expected_seq=wrong),
                 lambda: log.append_many(sid, [("x", 1), ("y", 2)], expected_seq=wrong),
                 lambda: log.add_message(message(sid), expected_seq=wrong),
                 lambda: log.add_messages([message(sid), message(sid)], expected_seq=wrong),
                 lambda: log.add_participant(sid, "p", expected_seq=wrong),
                 lambda: log.remove_participant(sid, "p", expected_seq=wrong)]
        for call in calls:
            with pytest.raises(ConflictError) as info:
                call()
            assert isinstance(info.value, eventlog.EventLogError)
            assert (info.value.session_id, info.value.expected_seq, info.value.actual_seq) == (
                sid, wrong, 8)
        assert contents(log) == before

    @pytest.mark.parametrize("bad", [-1, True, 1.0, "1"])
    def test_expected_seq_must_be_a_non_negative_int(self, log: EventLog, bad: object) -> None:
        sid = log.create_session().session_id
        with pytest.raises(eventlog.InvalidInputError):
            log.append(sid, "x", 1, expected_seq=bad)  # type: ignore[arg-type]
        assert log.get_session(sid).last_seq == 1

    # Deleting, sizes, durability -----------------------------------------------------------

    def test_delete_session(self, log: EventLog) -> None:
        keep = log.create_session("keep").session_id
        log.create_session("gone")
        log.add_message(message("gone"))
        log.delete_session("gone")
        assert not log.session_exists("gone")
        assert [s.session_id for s in log.list_sessions()] == [keep]
        for call in (lambda: log.get_session("gone"), lambda: log.events("gone"),
                     lambda: log.get_messages("gone"), lambda: log.get_messages("gone", limit=3),
                     lambda: log.delete_session("gone"), lambda: log.verify("gone"),
                     lambda: log.size("gone"), lambda: log.follow("gone", timeout=0),
                     lambda: log.append("gone", "x", 1)):
            with pytest.raises(SessionNotFoundError):
                call()
        assert log.verify().ok

    def test_size_counts_the_bytes_a_session_takes(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        first = log.size(sid)
        assert isinstance(first, int) and first > 0
        log.append(sid, "x", "y" * 10_000)
        assert log.size(sid) >= first + 10_000

    def test_durability_fsync_per_store_and_per_call(self, url: str) -> None:
        with eventlog.open(url, durability="fsync") as log:
            sid = log.create_session().session_id
            log.append(sid, "x", 1)
            log.append(sid, "x", 2, durability="os")
            log.add_message(message(sid), durability="fsync")
            assert log.get_session(sid).last_seq == 4
            with pytest.raises(eventlog.InvalidInputError):
                log.append(sid, "x", 3, durability="always")  # type: ignore[arg-type]
            assert log.get_session(sid).last_seq == 4
        with pytest.raises(eventlog.InvalidInputError):
            eventlog.open(url, durability="sometimes")

    def test_bad_store_options_are_refused(self, url: str) -> None:
        for options in ({"max_event_bytes": 10}, {"max_event_bytes": "big"}, {"snapshot_every": 0},
                        {"no_such_option": 1}):
            with pytest.raises(eventlog.InvalidInputError):
                eventlog.open(url, **options)

    def test_max_event_bytes_applies_to_each_encoded_event(self, url: str) -> None:
        with eventlog.open(url, max_event_bytes=1024) as log:
            sid = log.create_session().session_id
            log.append(sid, "x", "a" * 800)
            with pytest.raises(eventlog.EventTooLargeError):
                log.append(sid, "x", "a" * 1100)
            # Three events of 800 bytes are fine in one batch: the limit is per event.
            assert len(log.append_many(sid, [("x", "a" * 800)] * 3)) == 3
            assert log.get_session(sid).last_seq == 5

    # Errors --------------------------------------------------------------------------------

    def test_the_error_tree(self) -> None:
        e = eventlog
        for cls in (e.SessionNotFoundError, e.SessionExistsError, e.InvalidInputError,
                    e.InvalidSessionIdError, e.InvalidEventError, e.EventTooLargeError,
                    e.ConflictError, e.LockTimeoutError, e.CorruptLogError, e.StorageError,
                    e.SessionPoisonedError, e.StoreClosedError):
            assert issubclass(cls, e.EventLogError), cls
        assert issubclass(e.SessionNotFoundError, KeyError)
        for cls in (e.InvalidInputError, e.InvalidSessionIdError, e.InvalidEventError,
                    e.EventTooLargeError):
            assert issubclass(cls, ValueError), cls
        assert issubclass(e.InvalidSessionIdError, e.InvalidInputError)
        assert issubclass(e.EventTooLargeError, e.InvalidEventError)
        assert issubclass(e.LockTimeoutError, TimeoutError)
        assert issubclass(e.StorageError, OSError)
        assert issubclass(e.SessionPoisonedError, e.StorageError)

    def test_errors_survive_pickling(self) -> None:
        e = eventlog
        errors: list[Exception] = [
            e.SessionNotFoundError("s"), e.SessionExistsError("s"), e.ConflictError("s", 1, 2),
            e.CorruptLogError("bad", session_id="s", seq=3, where="seg line 4"),
            e.InvalidSessionIdError("bad id"), e.InvalidEventError("bad event"),
            e.EventTooLargeError("big"), e.LockTimeoutError("slow"), e.StorageError("disk"),
            e.SessionPoisonedError("fsync"), e.StoreClosedError("closed")]
        for error in errors:
            copy = pickle.loads(pickle.dumps(error))
            assert type(copy) is type(error) and str(copy) == str(error)
            assert vars(copy) == vars(error)

    # The seed-compatible facade ------------------------------------------------------------

    def test_session_persistence_runs_the_original_example(self) -> None:
        from eventlog import ChatMessage, SessionPersistence
        storage_path = self.fresh_storage_path()
        # The original design's example, as issue 2 quotes it (storage_path aside).
        p = SessionPersistence(storage_type=self.storage_type, storage_path=storage_path)
        session = p.create_session(session_id=str(uuid.uuid4()),
                                   participants=["Agent-1", "Agent-2", "Agent-3"])
        p.add_message(ChatMessage(id=str(uuid.uuid4()), sender="Agent-1", recipient="Agent-2",
                                  content="Hello", timestamp=time.time(), session_id=session.session_id))
        p.get_session(session.session_id); p.get_messages(session.session_id, limit=50)  # noqa: E702
        p.close()
        # ... and it was really stored:
        again = SessionPersistence(storage_type=self.storage_type, storage_path=storage_path)
        try:
            state = again.get_session(session.session_id)
            assert (state.participants, state.message_count) == (["Agent-1", "Agent-2", "Agent-3"], 1)
            [hello] = again.get_messages(session.session_id, limit=50)
            assert (hello.content, hello.sender, hello.recipient) == ("Hello", "Agent-1", "Agent-2")
            assert [s.session_id for s in again.list_sessions()] == [session.session_id]
            again.delete_session(session.session_id)
            assert again.list_sessions() == []
        finally:
            again.close()

    def test_session_persistence_cleanup_old_sessions(self) -> None:
        from eventlog import SessionPersistence
        with SessionPersistence(storage_type=self.storage_type,
                                storage_path=self.fresh_storage_path()) as p:
            old = p.create_session(created_at=time.time() - 40 * 86400)
            new = p.create_session()
            assert p.cleanup_old_sessions(days=7) == [old.session_id]
            assert [s.session_id for s in p.list_sessions()] == [new.session_id]
            with pytest.raises(SessionNotFoundError):
                p.get_session(old.session_id)

    def test_session_persistence_defaults_and_bad_storage_type(self) -> None:
        import inspect

        from eventlog import SessionPersistence
        params = inspect.signature(SessionPersistence).parameters
        assert params["storage_type"].default == "json"
        assert params["storage_path"].default == "sessions"
        with pytest.raises(eventlog.InvalidInputError):
            SessionPersistence(storage_type="xml", storage_path=self.fresh_storage_path())


class StoreContract(ApiContract, ReadContract, InputContract, ModelContract, ConcurrencyContract,
                    HistoryContract,
                    AliasingContract):
    """The whole contract. Subclass it as ``Test<Backend>`` and fill in ``fresh_url``."""

