"""The contract for reading: get_session, get_messages, events, follow, list_sessions,
verify, import_events and snapshots."""

from __future__ import annotations

import dataclasses
import os
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, Event, EventLog, SessionNotFoundError, VerifyReport

from ._contract_base import ContractBase, contents, fold, message


def _busy_session(log: EventLog) -> tuple[str, list[ChatMessage]]:
    """A session whose messages are interleaved with other events."""
    sid = log.create_session(participants=["a"]).session_id
    messages = []
    for i in range(12):
        if i % 3 == 0:
            log.append(sid, "other", i)
        else:
            messages.append(log.add_message(message(sid, content=f"m{i}", timestamp=1000.0 + i)))
    return sid, messages


def _next_within(follower: Iterator[Event], seconds: float) -> Event | BaseException:
    """What ``next(follower)`` returns or raises, run in a thread so that a follower that
    waits on for good fails the test instead of hanging the suite."""
    outcome: list[Event | BaseException] = []

    def run() -> None:
        try:
            outcome.append(next(follower))
        except BaseException as exc:  # handed to the test to judge
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"follow() still waiting after {seconds} s"
    return outcome[0]


def _later(delay: float, action: object) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()  # type: ignore[operator]
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class ReadContract(ContractBase):

    # get_session and get_messages ------------------------------------------------------------

    def test_get_session_of_a_missing_session(self, log: EventLog) -> None:
        with pytest.raises(SessionNotFoundError) as info:
            log.get_session("nope")
        assert isinstance(info.value, KeyError) and info.value.session_id == "nope"

    def test_get_session_is_the_fold_of_the_events(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        log.add_participant(sid, "z")
        log.remove_participant(sid, "a")
        assert log.get_session(sid) == fold(sid, list(log.events(sid)))

    def test_get_messages_selects_after_lt_seq_lt_before_then_the_newest_limit(
            self, log: EventLog) -> None:
        sid, messages = _busy_session(log)
        assert log.get_messages(sid) == messages
        for limit in (None, 0, 1, 2, 5, 8, 100):
            for before in (None, 0, 1, 2, 3, 4, 7, 10, 13, 14, 100):
                for after in (None, 0, 1, 2, 3, 5, 12, 13, 100):
                    chosen = [m for m in messages
                              if (after or 0) < (m.seq or 0) and (before is None or (m.seq or 0) < before)]
                    if limit is not None:
                        chosen = chosen[max(0, len(chosen) - limit):] if limit else []
                    got = log.get_messages(sid, limit=limit, before_seq=before, after_seq=after)
                    assert got == chosen, (limit, before, after)

    def test_reading_from_the_end_across_big_records(self, url: str) -> None:
        """Records around 64 KiB and 1 MiB (where readers read in chunks), read from the end by a
        store that did not write them."""
        sizes = [1, 65_400, 65_535, 65_536, 65_537, 131_072, 10, 1 << 20, (1 << 20) + 3, 5, 70_000]
        with eventlog.open(url) as log:
            sid = log.create_session().session_id
            written = [log.add_message(message(sid, content="x" * n)) for n in sizes]
            log.append(sid, "big", "y" * 200_000)
        with eventlog.open(url) as log:
            for limit in (1, 2, 3, 5, 8, 11, 50):
                assert log.get_messages(sid, limit=limit) == written[-limit:]
            assert log.get_messages(sid, limit=3, before_seq=8) == written[3:6]
            assert log.get_session(sid).message_count == len(sizes)
            assert log.append(sid, "after", 1).seq == len(sizes) + 3
            assert log.verify(sid).ok

    @pytest.mark.parametrize("name", ["limit", "before_seq", "after_seq"])
    @pytest.mark.parametrize("bad", [-1, True, "5", 1.5])
    def test_get_messages_refuses_bad_bounds(self, log: EventLog, name: str, bad: object) -> None:
        sid, _ = _busy_session(log)
        with pytest.raises(eventlog.InvalidInputError):
            log.get_messages(sid, **{name: bad})  # type: ignore[arg-type]

    def test_get_messages_of_a_missing_session(self, log: EventLog) -> None:
        for limit in (None, 0, 50):
            with pytest.raises(SessionNotFoundError):
                log.get_messages("nope", limit=limit)

    # events ----------------------------------------------------------------------------------

    def test_events_replays_the_history_after_a_seq(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        everything = list(log.events(sid))
        assert [e.seq for e in everything] == list(range(1, 14))
        assert all(isinstance(e, Event) for e in everything)
        assert list(log.events(sid, after_seq=0)) == everything
        for after in (1, 5, 12, 13, 50):
            assert list(log.events(sid, after_seq=after)) == everything[after:]
        with pytest.raises(eventlog.InvalidInputError):
            log.events(sid, after_seq=-1)
        with pytest.raises(SessionNotFoundError):
            log.events("nope")  # raised by the call, not on first iteration

    def test_readers_dropped_unread_hold_nothing_open(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(3)])
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_now = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, open_now + 64), hard))
        try:
            for _ in range(500):
                log.events(sid)  # never read
                log.events(sid, after_seq=2)
                log.follow(sid, after_seq=0, timeout=0)
                started = log.events(sid)
                next(started)  # read a little, then dropped
                del started
            assert len(list(log.events(sid))) == 4
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    # follow ----------------------------------------------------------------------------------

    def test_follow_from_now_yields_only_new_events(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        log.append(sid, "old", 1)
        follower = log.follow(sid, timeout=5)
        log.append(sid, "new", 2)
        log.append_many(sid, [("new", 3), ("new", 4)])
        got = [next(follower) for _ in range(3)]
        assert [(e.seq, e.data) for e in got] == [(3, 2), (4, 3), (5, 4)]
        assert got == list(log.events(sid, after_seq=2))

    def test_follow_after_a_seq_replays_then_waits(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        assert list(log.follow(sid, after_seq=0, timeout=0)) == list(log.events(sid))
        assert list(log.follow(sid, after_seq=10, timeout=0)) == list(log.events(sid, after_seq=10))
        assert list(log.follow(sid, after_seq=13, timeout=0)) == []

    def test_follow_ends_after_the_idle_timeout(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        start = time.monotonic()
        assert list(log.follow(sid, timeout=0.3)) == []
        assert time.monotonic() - start >= 0.29

    def test_follow_timeout_is_an_idle_timeout(self, log: EventLog) -> None:
        sid = log.create_session().session_id

        def appender() -> None:
            for i in range(6):
                time.sleep(0.15)
                log.append(sid, "tick", i)

        follower = log.follow(sid, timeout=0.9)
        thread = threading.Thread(target=appender)
        thread.start()
        got = list(follower)  # 6 events over ~0.9 s: never idle for 0.9 s
        thread.join()
        assert [e.data for e in got] == [0, 1, 2, 3, 4, 5]

    def test_follow_receives_events_from_another_thread_in_order(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        follower = log.follow(sid, timeout=10)

        def appender() -> None:
            for i in range(50):
                if i % 10 == 9:
                    log.append_many(sid, [("t", i), ("t", i + 0.5)])
                else:
                    log.append(sid, "t", i)

        thread = threading.Thread(target=appender)
        thread.start()
        got = [next(follower) for _ in range(55)]
        thread.join()
        assert got == list(log.events(sid, after_seq=1))

    def test_follow_a_deleted_session_raises_not_found(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        with pytest.raises(SessionNotFoundError):
            log.follow("nope")
        follower = log.follow(sid, after_seq=0, timeout=None)
        assert next(follower).seq == 1
        thread = _later(0.2, lambda: log.delete_session(sid))
        start = time.monotonic()
        with pytest.raises(SessionNotFoundError):
            next(follower)  # while it waits for the next event
        assert time.monotonic() - start < 10
        thread.join(10)
        sid2 = log.create_session().session_id
        follower = log.follow(sid2, timeout=None)
        log.delete_session(sid2)
        with pytest.raises(SessionNotFoundError):
            next(follower)  # before it ever waited

    def test_follow_a_session_deleted_and_created_again_raises_not_found(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(5)])
        follower = log.follow(sid, after_seq=0, timeout=0.5)
        assert [next(follower).seq for _ in range(6)] == [1, 2, 3, 4, 5, 6]
        log.delete_session(sid)
        log.create_session(sid)
        log.append(sid, "y", 1)
        with pytest.raises(SessionNotFoundError):
            next(follower)

    @pytest.mark.parametrize("appended", [0, 3, 9], ids=["shorter", "as-long", "longer"])
    def test_follow_a_session_created_again_between_waits_raises_not_found(
            self, log: EventLog, appended: int) -> None:
        # The follower sits between waits (at its yield) while the id gets a new log that
        # ends below, at or past its position: it must not wait on, nor read the new log.
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(3)])
        follower = log.follow(sid, timeout=None)
        log.append(sid, "x", 3)
        assert next(follower).seq == 5
        log.delete_session(sid)
        log.create_session(sid)
        log.append_many(sid, [("y", i) for i in range(appended)])
        assert isinstance(_next_within(follower, 5), SessionNotFoundError)

    @pytest.mark.parametrize("appended", [0, 3, 9], ids=["shorter", "as-long", "longer"])
    def test_follow_a_session_created_again_while_it_waits_raises_not_found(
            self, log: EventLog, appended: int) -> None:
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(3)])
        follower = log.follow(sid, after_seq=0, timeout=None)
        assert [next(follower).seq for _ in range(4)] == [1, 2, 3, 4]

        def again() -> None:
            log.delete_session(sid)
            log.create_session(sid)
            log.append_many(sid, [("y", i) for i in range(appended)])

        thread = _later(0.3, again)
        # Blocked in the backend's wait when the new life begins.
        assert isinstance(_next_within(follower, 5), SessionNotFoundError)
        thread.join(10)

    def test_follow_refuses_an_exact_copy_made_in_the_old_ones_place(self, log: EventLog) -> None:
        # import_events can make the new life byte for byte the old one, digests and all:
        # only the incarnation tells them apart.
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(3)])
        follower = log.follow(sid, after_seq=0, timeout=None)
        assert [next(follower).seq for _ in range(4)] == [1, 2, 3, 4]
        history = list(log.events(sid))
        log.delete_session(sid)
        log.import_events(sid, [*history, Event(5, "x", history[-1].ts, 3)])
        assert isinstance(_next_within(follower, 5), SessionNotFoundError)

    def test_a_backend_wait_refuses_another_life(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        old = log.backend.incarnation(sid)
        assert log.backend.incarnation(sid) == old
        log.append(sid, "x", 0)
        assert log.backend.incarnation(sid) == old  # appends don't change the life
        log.delete_session(sid)
        log.create_session(sid)
        log.append_many(sid, [("y", i) for i in range(5)])
        new = log.backend.incarnation(sid)
        assert new != old
        for after_seq in (0, 6, 100):  # the new log passes it, ends at it, ends below it
            with pytest.raises(SessionNotFoundError):
                log.backend.wait(sid, after_seq, 5, incarnation=old)
        assert log.backend.wait(sid, 0, 0, incarnation=new) is True
        assert log.backend.wait(sid, 6, 0, incarnation=new) is False

    def test_follow_started_on_one_life_refuses_the_next(self, log: EventLog) -> None:
        # The life is taken when follow() is called, not at the first next().
        sid = log.create_session().session_id
        log.append_many(sid, [("x", i) for i in range(3)])
        follower = log.follow(sid, after_seq=2, timeout=None)
        log.delete_session(sid)
        log.create_session(sid)
        log.append_many(sid, [("y", i) for i in range(5)])
        with pytest.raises(SessionNotFoundError):
            next(follower)

    @pytest.mark.parametrize("bad", [-1, "1", [1]])
    def test_follow_refuses_a_bad_timeout_or_seq(self, log: EventLog, bad: object) -> None:
        sid = log.create_session().session_id
        with pytest.raises(eventlog.InvalidInputError):
            log.follow(sid, timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(eventlog.InvalidInputError):
            log.follow(sid, after_seq=bad)  # type: ignore[arg-type]

    # list_sessions ---------------------------------------------------------------------------

    def test_list_sessions_gives_every_session_state_by_id(self, log: EventLog) -> None:
        assert log.list_sessions() == []
        for sid in ("b", "a", "c"):
            log.create_session(sid, participants=[sid])
            log.add_message(message(sid, sender="x"))
        log.delete_session("c")
        listed = log.list_sessions()
        assert [s.session_id for s in listed] == ["a", "b"]
        assert listed == [log.get_session("a"), log.get_session("b")]

    # verify ----------------------------------------------------------------------------------

    def test_verify_reports_on_a_session_or_the_whole_store(self, log: EventLog) -> None:
        empty = log.verify()
        assert isinstance(empty, VerifyReport)
        assert (empty.ok, empty.events_checked, empty.problems) == (True, 0, [])
        sid, _ = _busy_session(log)
        other = log.create_session().session_id
        one = log.verify(sid)
        assert (one.ok, one.events_checked, one.problems) == (True, 13, [])
        everything = log.verify()
        assert (everything.ok, everything.events_checked, everything.problems) == (True, 14, [])
        assert everything.sessions_checked == 2
        assert log.verify(other).events_checked == 1
        with pytest.raises(SessionNotFoundError):
            log.verify("nope")
        with pytest.raises(eventlog.InvalidSessionIdError):
            log.verify("a\x00b")

    # import_events ---------------------------------------------------------------------------

    def test_import_events_round_trip(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        log.add_participant(sid, "z")
        log.remove_participant(sid, "a")
        original = list(log.events(sid))
        state = log.import_events("copy", log.events(sid), batch_size=4)
        assert list(log.events("copy")) == original
        assert state == log.get_session("copy")
        source = log.get_session(sid)
        assert state == eventlog.ChatSession("copy", source.participants, source.created_at,
                                             source.last_activity, source.message_count,
                                             source.last_seq, source.metadata)
        assert log.verify("copy").ok
        assert log.get_messages("copy", limit=3) == [
            dataclasses.replace(m, session_id="copy") for m in log.get_messages(sid, limit=3)]

    def test_import_into_an_existing_session_is_refused(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        other = log.create_session("other").session_id
        log.add_message(message(other))
        before = contents(log)
        with pytest.raises(eventlog.SessionExistsError):
            log.import_events(other, log.events(sid))
        assert contents(log) == before

    def test_import_is_all_or_nothing(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        good = list(log.events(sid))
        created, rest = good[0], good[1:]
        broken: dict[str, list[Any]] = {
            "empty": [],
            "no creation first": rest,
            "a gap": [created, *rest[:3], *rest[4:]],
            "a repeated seq": [created, rest[0], rest[0]],
            "not an Event": [created, (2, "x", 1.0, None)],
            "a NaN late in the history": [*good, Event(14, "x", 1.0, float("nan"))],
            "an infinite ts": [*good, Event(14, "x", float("inf"), 1)],
            "a bad type": [*good, Event(14, "bad type", 1.0, 1)],
        }
        for why, history in broken.items():
            before = contents(log)
            with pytest.raises(eventlog.InvalidEventError):
                log.import_events("imported", iter(history), batch_size=3)
            assert not log.session_exists("imported"), why
            assert contents(log) == before, why

    def test_a_failed_import_never_removes_what_others_appended(self, log: EventLog) -> None:
        sid, _ = _busy_session(log)
        history = list(log.events(sid))
        acknowledged: list[Event] = []

        def interleaved() -> Iterator[Event]:
            for event in history:
                if event.seq == 5:  # someone else writes to the half-imported session
                    acknowledged.append(log.append("imported", "theirs", 1))
                yield event

        with pytest.raises(eventlog.ConflictError):
            log.import_events("imported", interleaved(), batch_size=2)
        assert acknowledged and log.session_exists("imported")
        assert acknowledged[0] in list(log.events("imported"))
        assert log.verify("imported").ok

    def test_import_refuses_malformed_reserved_events(self, log: EventLog) -> None:
        sid = log.create_session(participants=["a"]).session_id
        created = next(iter(log.events(sid)))
        malformed = [
            Event(2, "session.created", 1.0, {"participants": [], "metadata": {}}),  # not at seq 1
            Event(2, "session.participant_joined", 1.0, {}),
            Event(2, "session.participant_left", 1.0, {"participant": 5}),
            Event(2, "session.unheard_of", 1.0, {}),
            Event(2, "message", 1.0, {"id": "i", "sender": "s", "content": "c", "recipient": 5}),
            Event(2, "message", 1.0, {"id": "i", "sender": "", "content": "c"}),
            Event(2, "message", 1.0, {"id": "i", "sender": "s", "content": "c", "metadata": [1]}),
            Event(2, "message.edited", 1.0, {"id": "i"}),
        ]
        for bad in malformed:
            with pytest.raises(eventlog.InvalidEventError):
                log.import_events("imported", [created, bad])
            assert not log.session_exists("imported"), bad
        for bad_created in (Event(1, "session.created", 1.0, {"participants": "ab", "metadata": {}}),
                            Event(1, "session.created", 1.0, {"participants": [], "metadata": [1]}),
                            Event(1, "session.created", 1.0, [])):
            with pytest.raises(eventlog.InvalidEventError):
                log.import_events("imported", [bad_created])
            assert not log.session_exists("imported"), bad_created

    # snapshots -------------------------------------------------------------------------------

    def test_state_with_snapshots_equals_the_full_fold(self, url: str) -> None:
        with eventlog.open(url, snapshot_every=3) as log:
            sid = log.create_session(participants=["a"], metadata={"m": 1}).session_id
            for i in range(25):
                if i % 7 == 3:
                    log.add_participant(sid, f"p{i}")
                elif i % 5 == 4:
                    log.append_many(sid, [("x", i), ("y", i)])
                else:
                    log.add_message(message(sid, sender=f"s{i % 4}", timestamp=float(100 - i)))
                assert log.get_session(sid) == fold(sid, list(log.events(sid)))
            assert log.verify(sid).ok
            expected = log.get_session(sid)
        for every in (2, 1000):
            with eventlog.open(url, snapshot_every=every) as log:
                assert log.get_session(sid) == expected
                assert log.list_sessions() == [expected]
                log.add_message(message(sid))
                expected = fold(sid, list(log.events(sid)))
                assert log.get_session(sid) == expected
                assert log.verify().ok

