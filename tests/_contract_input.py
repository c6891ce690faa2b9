"""Bad input, nothing lost: hostile session ids and payloads raise the right error before
anything is written, and the store is unchanged afterwards."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import eventlog
from eventlog import ChatMessage, Event, EventLog
from eventlog.core._validate import shown

from ._contract_base import ContractBase, contents, message

HOSTILE_IDS: list[object] = [
    "", "\x00", "a\x00b", "\x01", "\x1f", "x" * 256, "é" * 256, "a\n", "\n", "\r", "\t",
    "\x1b[31m", "\x7f", "\x80", "\x85", "a\x9fb", "\ud800", "a\udfffb",
    None, 5, 1.5, True, b"abc", ["a"], ("a",), {"a": 1},
]
"""Each of these is refused (issue 15's rule: a str of 1 to 255 characters, valid Unicode, no
control character); ``None`` only where an id is required (create_session makes one)."""

VALID_ODD_IDS = ["-", "_", "-rf", "a..b", "a.", "0", "x" * 128, "A-Z_a.z-09", "lock",
                 "eventlog.json", "sessions", "seg-0000000000000001.jsonl", "CON", "NUL",
                 "user:42", "alice@example.com", "thread/123", "tenant 1", "é", "日本語", ".hidden",
                 ".", "..", "../x", "../../etc/passwd", "/abs", "a/../b", "a\\b", "%2e%2e", "~",
                 "x" * 255, "é" * 255, "日" * 255, "Team", " ", "a ", "con.txt", "\u202eevil",
                 "\uff21", "$HOME", "a*b?c|<d>", "{a}", "}b", "a{b", "'\"", "id", ".creating-x",
                 ".deleted-x", "~%41"]
"""Unusual ids, each valid (issue 15): each must work like any other id, kept exactly."""


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


class Number(float):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: int


Pair = collections.namedtuple("Pair", "a b")

HOSTILE_DATA: list[tuple[str, object]] = [
    ("NaN", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")),
    ("NaN in a list", [1, float("nan")]), ("inf in a dict", {"x": {"y": float("inf")}}),
    ("int key", {1: "a"}), ("None key", {None: 1}), ("tuple key", {(1, 2): 1}),
    ("float key", {1.5: 1}), ("bool key", {True: 1}), ("str-subclass key", {Text("k"): 1}),
    ("object", object()), ("dataclass", Point(1, 2)), ("datetime", datetime.datetime(2024, 1, 1)),
    ("date", datetime.date(2024, 1, 1)), ("time", datetime.time(12, 0)),
    ("timedelta", datetime.timedelta(1)), ("UUID", uuid.UUID(int=1)), ("Enum", Color.RED),
    ("IntEnum", Level.HIGH), ("str subclass", Text("x")), ("float subclass", Number(1.0)),
    ("namedtuple", Pair(1, 2)), ("OrderedDict", collections.OrderedDict(a=1)),
    ("dict subclass nested", {"x": collections.defaultdict(int)}), ("bytes", b"x"),
    ("bytearray", bytearray(b"x")), ("set", {1}), ("frozenset", frozenset()), ("complex", 1j),
    ("Decimal", decimal.Decimal("1.5")), ("lone surrogate", "\ud800"),
    ("lone surrogate key", {"\udfff": 1}), ("surrogate deep", [[["a\udc80b"]]]),
    ("2**64", 2**64), ("-2**63-1", -(2**63) - 1), ("2**100 nested", {"n": [2**100]}),
    ("10**5000", 10**5000),  # over Python's 4300 digits to print: the message must not print it
    ("too deep", None), ("function", len), ("type", int), ("range", range(3)),
    ("generator", (i for i in range(2))), ("Ellipsis", ...),
]
"""(name, value); "too deep" is built below (a list nested 10,000 levels)."""


BAD_NUMBERS: list[object] = [10**400, -(10**400), 2**1024, float("inf"), float("-inf"), float("nan")]
"""Numbers no timestamp or duration can be: past float's range, infinite, or not a number."""


def _too_deep() -> list[Any]:
    value: list[Any] = []
    for _ in range(10_000):
        value = [value]
    return value


def _hostile_data() -> list[tuple[str, object]]:
    return [(name, _too_deep() if name == "too deep" else value) for name, value in HOSTILE_DATA]


class InputContract(ContractBase):

    def _populated(self, log: EventLog) -> str:
        sid = log.create_session("good", participants=["a"]).session_id
        log.add_message(message(sid))
        log.append(sid, "x", {"k": 1})
        return sid

    def test_hostile_session_ids_are_refused_everywhere(self, log: EventLog) -> None:
        assert len(HOSTILE_IDS) >= 25
        self._populated(log)
        before = contents(log)
        good = next(iter(log.events("good")))
        calls: list[Callable[[Any], object]] = [
            lambda bad: log.get_session(bad), lambda bad: log.get_messages(bad),
            lambda bad: log.get_messages(bad, limit=5), lambda bad: log.events(bad),
            lambda bad: log.follow(bad, timeout=0), lambda bad: log.append(bad, "x", 1),
            lambda bad: log.append_many(bad, [("x", 1)]), lambda bad: log.add_message(message(bad)),
            lambda bad: log.add_messages([message(bad)]), lambda bad: log.delete_session(bad),
            lambda bad: log.size(bad), lambda bad: log.session_exists(bad),
            lambda bad: log.add_participant(bad, "p"), lambda bad: log.remove_participant(bad, "p"),
            lambda bad: log.import_events(bad, [good]),
        ]
        needs_an_id: list[Callable[[Any], object]] = [  # None: a new id (create), the whole store (verify)
            lambda bad: log.verify(bad), lambda bad: log.create_session(bad),
            lambda bad: log.create_session(bad, exist_ok=True),
        ]
        for bad in HOSTILE_IDS:
            for call in calls + (needs_an_id if bad is not None else []):
                with pytest.raises(eventlog.InvalidSessionIdError) as info:
                    call(bad)
                assert isinstance(info.value, ValueError)
            assert contents(log) == before, repr(bad)

    @pytest.mark.parametrize("sid", VALID_ODD_IDS)
    def test_unusual_valid_ids_work_like_any_other(self, log: EventLog, sid: str) -> None:
        assert not log.session_exists(sid)
        created = log.create_session(sid, participants=["a"])
        assert created.session_id == sid and log.session_exists(sid)
        log.add_message(message(sid))
        log.append(sid, "x", 1)
        assert [s.session_id for s in log.list_sessions()] == [sid]
        assert log.get_session(sid).last_seq == 3
        assert log.verify(sid).ok and log.verify().ok
        log.delete_session(sid)
        assert log.list_sessions() == [] and not log.session_exists(sid)
        assert log.create_session(sid).last_seq == 1

    def test_every_odd_id_lives_beside_the_others_and_comes_back_exactly(self, url: str) -> None:
        """No two valid ids share storage (``Team`` beside ``team``, ``..`` beside ``.``), and
        every listing gives each id back exactly as it was written, by code point."""
        ids = [*dict.fromkeys([*VALID_ODD_IDS, "team", "TEAM", "a", "A"])]
        with eventlog.open(url) as log:
            for index, sid in enumerate(ids):
                log.create_session(sid, metadata={"i": index})
                log.append(sid, "x.y", sid)
        with eventlog.open(url) as log:
            assert log.session_ids() == sorted(ids)
            assert [s.session_id for s in log.list_sessions()] == sorted(ids)
            assert [s.session_id for s in log.page_sessions(7, prefix="")
                    .sessions] == sorted(ids)[:7]
            for index, sid in enumerate(ids):
                assert log.get_session(sid).metadata == {"i": index}
                assert [e.data for e in log.events(sid)][1] == sid
            assert log.verify().ok and log.verify().sessions_checked == len(ids)
            log.delete_session("Team")
            assert log.session_exists("team") and not log.session_exists("Team")
            assert [s for s in log.session_ids() if s.lower() == "team"] == ["TEAM", "team"]

    def test_hostile_payloads_are_refused_everywhere(self, log: EventLog) -> None:
        data = _hostile_data()
        assert len(data) >= 25
        sid = self._populated(log)
        before = contents(log)
        created = Event(1, "session.created", 1.0, {"participants": [], "metadata": {}})
        calls: list[Callable[[Any], object]] = [
            lambda bad: log.append(sid, "x", bad),
            lambda bad: log.append(sid, "x", {"ok": 1, "bad": bad}),
            lambda bad: log.append_many(sid, [("x", 1), ("y", bad), ("z", 3)]),
            lambda bad: log.add_message(message(sid, metadata={"bad": bad})),
            lambda bad: log.add_messages([message(sid), message(sid, metadata={"k": [bad]})]),
            lambda bad: log.create_session("new", metadata={"bad": bad}),
            lambda bad: log.import_events("new", [created, Event(2, "x", 1.0, bad)]),
        ]
        for name, bad in data:
            for call in calls:
                with pytest.raises(eventlog.InvalidEventError) as info:
                    call(bad)
                assert isinstance(info.value, ValueError), name
            assert contents(log) == before, name

    def test_hostile_message_fields_are_refused(self, log: EventLog) -> None:
        sid = self._populated(log)
        before = contents(log)
        fields: list[dict[str, object]] = [
            {"sender": ""}, {"sender": None}, {"sender": 5}, {"sender": Text("a")},
            {"content": None}, {"content": 5}, {"content": b"x"}, {"content": "\ud800"},
            {"recipient": ""}, {"recipient": 5}, {"id": ""}, {"id": 5}, {"message_type": ""},
            {"message_type": None}, {"timestamp": float("nan")}, {"timestamp": float("inf")},
            {"timestamp": "now"}, {"timestamp": True}, {"timestamp": None}, {"metadata": [1]},
            {"metadata": "x"}, {"metadata": {1: 2}},
        ]
        for changes in fields:
            base: dict[str, Any] = {"sender": "a", "content": "c", "session_id": sid}
            bad = ChatMessage(**{**base, **changes})
            with pytest.raises(eventlog.InvalidEventError):
                log.add_message(bad)
            with pytest.raises(eventlog.InvalidEventError):
                log.add_messages([message(sid), bad])
            assert contents(log) == before, changes
        for not_a_message in ("hello", {"sender": "a"}, None):
            with pytest.raises(eventlog.InvalidEventError):
                log.add_message(not_a_message)  # type: ignore[arg-type]
        assert contents(log) == before

    # Nanoseconds, milliseconds of year 9999+, before 1970, past year 9999, and numbers no
    # float holds: each once reached the log and then broke every reader that shows a date.
    BAD_TIMES: tuple[object, ...] = (1_796_280_000_000_000_000, 1.79628e18, 1e300, 10**400,
                                     -(10**400), -1, -0.5, 253_402_300_800, 253_402_300_800.0)

    def test_timestamps_outside_years_1970_to_9999_are_refused_on_every_path(
            self, log: EventLog) -> None:
        sid = self._populated(log)
        before = contents(log)
        created = next(iter(log.events(sid)))
        for bad in self.BAD_TIMES:
            calls: list[Callable[[Any], object]] = [
                lambda t: log.add_message(message(sid, timestamp=t)),
                lambda t: log.add_messages([message(sid), message(sid, timestamp=t)]),
                lambda t: log.create_session("late", created_at=t),
                lambda t: log.import_events("imported", [created._replace(ts=t)]),
                lambda t: log.import_events("imported", [created, Event(2, "x", t, 1)]),
            ]
            for call in calls:
                with pytest.raises(eventlog.InvalidEventError, match="between 1970 and 9999"):
                    call(bad)
            assert contents(log) == before, bad
        # The edges of the range are kept exactly.
        for good in (0, 0.0, 253_402_300_799.999):
            log.add_message(message(sid, timestamp=good))
        assert [m.timestamp for m in log.get_messages(sid, limit=3)] == [0.0, 0.0, 253_402_300_799.999]

    def test_hostile_event_types_are_refused(self, log: EventLog) -> None:
        sid = self._populated(log)
        before = contents(log)
        for kind in ("", " ", "a b", "x" * 129, "é", "a\n", ".x", None, 5, b"x", "session.x",
                     "message", "\ud800"):
            with pytest.raises(eventlog.InvalidEventError):
                log.append(sid, kind, 1)  # type: ignore[arg-type]
            with pytest.raises(eventlog.InvalidEventError):
                log.append_many(sid, [("ok", 1), (kind, 1)])  # type: ignore[list-item]
        assert contents(log) == before

    def test_an_event_over_max_event_bytes_changes_nothing(self, url: str) -> None:
        with eventlog.open(url, max_event_bytes=4096) as log:
            sid = self._populated(log)
            before = contents(log)
            big = "x" * 5000
            for call in (lambda: log.append(sid, "x", big),
                         lambda: log.append_many(sid, [("x", 1), ("x", big)]),
                         lambda: log.add_message(message(sid, content=big)),
                         lambda: log.create_session("new", metadata={"x": big})):
                with pytest.raises(eventlog.EventTooLargeError):
                    call()
            assert contents(log) == before

    def test_plain_json_edge_values_round_trip_exactly(self, log: EventLog) -> None:
        sid = log.create_session().session_id
        values: list[object] = [
            0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 0.0, -0.0, 1e308, 5e-324, 0.1, "", "\x00",
            "\u2028", "😀", "\ufeff", "a\nb", {"": None}, {"\x00": 1}, [], {}, [[[]]], True, False,
            None, {"nested": {"deep": [1, {"x": [None]}]}},
        ]
        events = [log.append(sid, "edge", value) for value in values]
        stored = list(log.events(sid))[1:]
        assert [e.data for e in stored] == values
        assert stored == events
        for got, value in zip(stored, values, strict=True):
            assert type(got.data) is type(value)

    def test_messages_the_store_returns_are_ordinary_frozen_chat_messages(self, log: EventLog) -> None:
        # The store builds the messages it returns without ChatMessage's __init__ (see
        # eventlog.core._records.build_message): they must behave exactly like constructed ones.
        import copy
        import pickle

        sid = log.create_session().session_id
        sent = ChatMessage(sender="ann", content="hi", session_id=sid, recipient="bob", id="m-1",
                           timestamp=1_700_000_000.5)
        stored = log.add_message(sent)
        read = log.get_messages(sid)[-1]
        expected = dataclasses.replace(sent, seq=2)
        for got in (stored, read):
            assert type(got) is ChatMessage
            assert got == expected and hash(got) == hash(expected)
            assert pickle.loads(pickle.dumps(got)) == got and copy.copy(got) == got
            with pytest.raises(dataclasses.FrozenInstanceError):
                got.content = "changed"  # type: ignore[misc]
            assert repr(got).startswith("ChatMessage(sender='ann', content='hi'")

    # Numbers out of range: a typed error, never OverflowError, nor a hang ----------------

    def test_numbers_out_of_range_are_refused_with_a_typed_error(self, log: EventLog) -> None:
        """``10**400`` can't become a float: ``math.isfinite`` and ``float()`` raised a bare
        OverflowError for ``created_at``, a message ``timestamp`` and cleanup ``days``."""
        sid = self._populated(log)
        before = contents(log)
        history = list(log.events(sid))
        calls: list[Callable[[Any], object]] = [
            lambda bad: log.create_session("new", created_at=bad),
            lambda bad: log.add_message(message(sid, timestamp=bad)),
            lambda bad: log.add_messages([message(sid), message(sid, timestamp=bad)]),
            lambda bad: log.import_events("new", [history[0]._replace(ts=bad)]),
            lambda bad: log.import_events("new", [history[0], history[1]._replace(ts=bad)]),
            lambda bad: log.cleanup_old_sessions(bad),
            lambda bad: log.cleanup_old_sessions(bad, dry_run=True),
        ]
        tried = 0
        for bad in BAD_NUMBERS:
            for call in calls:
                with pytest.raises(eventlog.InvalidInputError):
                    call(bad)
                tried += 1
            assert contents(log) == before, repr(bad)
        assert tried == len(BAD_NUMBERS) * len(calls)

    def test_follow_timeouts_are_checked_and_never_hang(self, log: EventLog) -> None:
        """NaN made ``follow(timeout=nan)`` wait forever (no comparison with NaN is true);
        inf and huge values raised OverflowError in some backends' waits. NaN, negative and
        non-numbers are refused; inf and anything of ``FOREVER`` seconds or more wait as
        None does."""
        sid = self._populated(log)
        for bad in (float("nan"), -1, -0.5, float("-inf"), -(10**400), "1", True, [1]):
            with pytest.raises(eventlog.InvalidInputError):
                log.follow(sid, timeout=bad)  # type: ignore[arg-type]
        for endless in (float("inf"), 10**400, 1e300, 2**70):
            follower = log.follow(sid, timeout=endless)  # from now
            got: list[object] = []
            thread = threading.Thread(target=lambda f=follower, g=got: g.append(next(f)), daemon=True)
            thread.start()
            thread.join(0.2)
            assert thread.is_alive() and not got, shown(endless)  # still waiting, no error
            event = log.append(sid, "wake", 1)
            thread.join(30)
            assert got == [event], shown(endless)
