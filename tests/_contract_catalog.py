"""The contract for the session catalog: list_sessions' filters and order, page_sessions'
keyset paging and its cursors, count_sessions (issue 15)."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import ChatSession, EventLog, InvalidCursorError, InvalidInputError, SessionPage

from ._contract_base import ContractBase, message

PEOPLE = ["ann", "bob", "cy"]
IDS = ["a", "a1", "a2", "ab", "b", "b-1", "b_2", "c", "ca", "d"]


def _fill(log: EventLog) -> dict[str, ChatSession]:
    """Sessions with assorted participants, metadata and times (ties on purpose)."""
    for i, sid in enumerate(IDS):
        log.create_session(sid, participants=[PEOPLE[i % 3]],
                           metadata={"team": "red" if i % 2 else "blue", "n": i % 3},
                           created_at=1000.0 + (i * 7) % 5)
        if i % 4 == 1:
            log.add_message(message(sid, sender=PEOPLE[(i + 1) % 3], timestamp=2000.0 + i % 3))
        if i % 5 == 2:
            log.append(sid, "x.y", i)  # stamped now: the newest activity
    return {s.session_id: s for s in (log.get_session(sid) for sid in IDS)}


def _expected(truth: dict[str, ChatSession], *, participant: str | None = None,
              metadata: dict[str, Any] | None = None, prefix: str = "",
              active_after: float | None = None, active_before: float | None = None,
              order: str = "session_id", descending: bool = False) -> list[ChatSession]:
    """The listing, computed from get_session of each session (not from the catalog)."""
    chosen = [s for s in truth.values()
              if (participant is None or participant in s.participants)
              and all(k in s.metadata and s.metadata[k] == v and type(s.metadata[k]) is type(v)
                      for k, v in (metadata or {}).items())
              and s.session_id.startswith(prefix)
              and (active_after is None or s.last_activity > active_after)
              and (active_before is None or s.last_activity < active_before)]
    if order == "session_id":
        chosen.sort(key=lambda s: s.session_id, reverse=descending)
    else:
        chosen.sort(key=lambda s: (getattr(s, order), s.session_id), reverse=descending)
    return chosen


def _walk(log: EventLog, limit: int, **query: Any) -> list[ChatSession]:
    found: list[ChatSession] = []
    cursor = None
    for _ in range(len(IDS) + 2):
        page = log.page_sessions(limit, cursor, **query)
        assert isinstance(page, SessionPage)
        assert len(page.sessions) <= limit
        found.extend(page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            return found
        assert page.sessions, "a page with a cursor after it holds sessions"
    raise AssertionError("paging did not end")


class CatalogContract(ContractBase):
    """``list_sessions``, ``page_sessions`` and ``count_sessions`` on every backend."""

    catalog_shared: ClassVar[bool] = True
    """Whether the catalog's entries outlive the store object (and process) that wrote them."""

    catalog_settings = settings(max_examples=40, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture])

    def test_a_new_store_object_lists_from_the_catalog_without_folding(self, url: str) -> None:
        """What the writer's folds saved serves the next reader, which folds nothing (the
        catalog is shared, not per process), and a damaged entry is folded again."""
        if not self.catalog_shared:
            pytest.skip("this backend's catalog lives in each process")
        with eventlog.open(url) as log:
            truth = _fill(log)
            head = log._state(IDS[0]).head
        with eventlog.open(url) as log:
            folded: list[str] = []
            state = log._state

            def counted(sid: str, upto: int | None = None) -> Any:
                folded.append(sid)
                return state(sid, upto)

            log._state = counted  # type: ignore[method-assign]
            assert log.list_sessions() == [truth[sid] for sid in sorted(IDS)]
            assert folded == []
            log.backend.catalog_write([(IDS[0], head, b"[damaged")])
            assert log.list_sessions() == [truth[sid] for sid in sorted(IDS)]
            assert folded == [IDS[0]]

    def test_verify_compares_the_catalog_with_the_logs(self, log: EventLog) -> None:
        """An entry that says something else than its log (made up here, for the session's
        real head) is a problem verify names, and replaces; reindex rebuilds them all."""
        truth = _fill(log)
        sid = IDS[1]
        head = log._state(sid).head
        log.list_sessions()
        wrong = b'[%d,"%s",1.0,2.0,99,["mallory"],{},null]' % (head.seq, head.digest.encode())
        log.backend.catalog_write([(sid, head, wrong)])
        shown = {s.session_id: s for s in log.list_sessions()}
        if shown[sid] != truth[sid]:  # this backend kept the made-up entry: verify must see it
            report = log.verify()
            assert not report.ok and any("catalog" in p and repr(sid) in p for p in report.problems)
        assert log.verify().ok
        assert log.list_sessions() == [truth[s] for s in sorted(IDS)]
        assert log.reindex() == len(IDS)
        assert log.list_sessions() == [truth[s] for s in sorted(IDS)]
        assert log.count_sessions(participant="mallory") == 0

    def test_list_sessions_without_arguments_is_every_session_by_id(self, log: EventLog) -> None:
        truth = _fill(log)
        assert log.list_sessions() == [truth[sid] for sid in sorted(IDS)]
        assert log.count_sessions() == len(IDS)

    def test_each_filter_and_order(self, log: EventLog) -> None:
        truth = _fill(log)
        cases: list[dict[str, Any]] = [
            {"participant": "bob"}, {"participant": "nobody"}, {"metadata": {"team": "red"}},
            {"metadata": {"team": "red", "n": 1}}, {"metadata": {"n": True}},
            {"metadata": {"missing": None}}, {"prefix": "a"}, {"prefix": "b-"}, {"prefix": ""},
            {"active_after": 1500}, {"active_before": 2001.0},
            {"active_after": 1001, "active_before": 2001.5},
            {"order": "last_activity"}, {"order": "last_activity", "descending": True},
            {"order": "created_at"}, {"order": "created_at", "descending": True},
            {"descending": True}, {"prefix": "a", "order": "created_at", "participant": "ann"},
        ]
        for case in cases:
            want = _expected(truth, **case)
            assert log.list_sessions(**case) == want, case
            assert log.list_sessions(**case, limit=2) == want[:2], case
            if "order" not in case and "descending" not in case:
                assert log.count_sessions(**case) == len(want), case
            assert _walk(log, 3, **case) == want, case

    def test_the_catalog_follows_the_logs_of_every_writer(self, url: str) -> None:
        """Entries are derived: another store object's (or process's) appends, deletes and
        ids created again show up in the next listing, whatever the catalog held."""
        with eventlog.open(url) as reader, eventlog.open(url) as writer:
            writer.create_session("s", participants=["a"], created_at=10.0)
            writer.create_session("t", participants=["b"], created_at=20.0)
            assert [s.session_id for s in reader.list_sessions(order="last_activity")] == ["s", "t"]
            writer.add_message(message("s", sender="z", timestamp=30.0))
            first = reader.list_sessions(order="last_activity")
            assert [s.session_id for s in first] == ["t", "s"]
            assert first[1] == writer.get_session("s")
            assert reader.list_sessions(participant="z") == [writer.get_session("s")]
            writer.delete_session("t")
            writer.create_session("t", participants=["c"], created_at=5.0)
            assert reader.list_sessions(order="last_activity") == [writer.get_session("t"),
                                                                    writer.get_session("s")]
            assert reader.list_sessions(participant="b") == []
        with eventlog.open(url) as again:  # what the writer left behind is current too
            assert [s.session_id for s in again.list_sessions(order="created_at")] == ["t", "s"]

    def test_a_session_active_while_paging_by_id_is_listed_once(self, log: EventLog) -> None:
        _fill(log)
        page = log.page_sessions(3)
        for sid in IDS:
            log.append(sid, "x.y", 1)
        rest = _walk_from(log, page)
        ids = [s.session_id for s in page.sessions + rest]
        assert ids == sorted(IDS)

    def test_cursors_are_checked(self, log: EventLog) -> None:
        _fill(log)
        page = log.page_sessions(2, order="last_activity")
        cursor = page.next_cursor
        assert cursor is not None
        log.page_sessions(2, cursor, order="last_activity")  # its own listing takes it
        foreign = [
            lambda: log.page_sessions(2, cursor),  # another order
            lambda: log.page_sessions(2, cursor, order="last_activity", descending=True),
            lambda: log.page_sessions(2, cursor, order="last_activity", prefix="a"),
            lambda: log.page_sessions(2, cursor, order="last_activity", participant="ann"),
        ]
        for call in foreign:
            with pytest.raises(InvalidCursorError):
                call()
        assert cursor.startswith("c")  # never "-": the command line takes cursors too
        body = cursor[1:]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        forged = [
            "", "x", "!!!", cursor[:-2], cursor + "A", cursor[::-1], body,
            "c" + base64.urlsafe_b64encode(raw[:8] + raw[8:].replace(b"[", b"{", 1)).decode(),
            "c" + base64.urlsafe_b64encode(b"\0" * 8 + raw[8:]).decode(),
            "c" + base64.urlsafe_b64encode(b'[1,"0000000000000000",[1,"a"]]').decode(),
            log.search("", limit=1).next_cursor or "y",  # a search's cursor
        ]
        for bad in forged:
            with pytest.raises(InvalidCursorError):
                log.page_sessions(2, bad, order="last_activity")
        for bad_type in (b"abc", 5, ["x"]):
            with pytest.raises(InvalidCursorError):
                log.page_sessions(2, bad_type, order="last_activity")  # type: ignore[arg-type]
        assert issubclass(InvalidCursorError, InvalidInputError)

    def test_bad_arguments_are_typed_errors(self, log: EventLog) -> None:
        _fill(log)
        calls = [
            lambda: log.list_sessions(order="size"), lambda: log.list_sessions(order=None),  # type: ignore[arg-type]
            lambda: log.list_sessions(descending="yes"),  # type: ignore[arg-type]
            lambda: log.list_sessions(limit=0), lambda: log.list_sessions(limit=-1),
            lambda: log.list_sessions(limit=True),
            lambda: log.list_sessions(metadata=["team"]),  # type: ignore[arg-type]
            lambda: log.list_sessions(metadata={1: "x"}),  # type: ignore[dict-item]
            lambda: log.list_sessions(metadata={"x": object()}),
            lambda: log.list_sessions(participant=""), lambda: log.list_sessions(participant=3),  # type: ignore[arg-type]
            lambda: log.list_sessions(prefix=b"a"),  # type: ignore[arg-type]
            lambda: log.list_sessions(active_after=float("nan")),
            lambda: log.list_sessions(active_before="today"),  # type: ignore[arg-type]
            lambda: log.page_sessions(0), lambda: log.page_sessions(10_001),
            lambda: log.page_sessions(None),  # type: ignore[arg-type]
            lambda: log.count_sessions(participant=""),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), {"deep": [-float("inf")]}])
    def test_a_metadata_filter_that_is_not_json_is_refused_naming_its_key(
            self, log: EventLog, value: object) -> None:
        """No metadata can hold NaN or an infinity (JSON has none), so such a filter was
        accepted and silently matched nothing (outside tester): it is bad input."""
        _fill(log)
        for call in (lambda: log.list_sessions(metadata={"team": "red", "score": value}),
                     lambda: log.count_sessions(metadata={"score": value}),
                     lambda: log.page_sessions(10, metadata={"score": value})):
            with pytest.raises(InvalidInputError, match=r"metadata\['score'\]"):
                call()

    def test_paging_with_random_filters_yields_the_filtered_ordered_list(self, log: EventLog) -> None:
        truth = _fill(log)

        @self.catalog_settings
        @given(participant=st.none() | st.sampled_from(PEOPLE),
               metadata=st.none() | st.fixed_dictionaries({}, optional={
                   "team": st.sampled_from(["red", "blue"]), "n": st.integers(0, 3)}),
               prefix=st.sampled_from(["", "a", "b", "c", "z", "a1"]),
               active_after=st.none() | st.sampled_from([0, 1001.0, 1999.5, 2001]),
               active_before=st.none() | st.sampled_from([1002, 2001.5, 4e9]),
               order=st.sampled_from(["session_id", "last_activity", "created_at"]),
               descending=st.booleans(), limit=st.integers(1, 12))
        def check(limit: int, **query: Any) -> None:
            want = _expected(truth, **{k: v for k, v in query.items() if k != "prefix"},
                             prefix=query["prefix"])
            walked = _walk(log, limit, **query)
            assert walked == want
            assert len({s.session_id for s in walked}) == len(walked)
            assert log.list_sessions(**query, limit=limit) == want[:limit]
            counted = {k: v for k, v in query.items() if k not in ("order", "descending")}
            assert log.count_sessions(**counted) == len(want)

        check()


def _walk_from(log: EventLog, page: SessionPage) -> list[ChatSession]:
    found: list[ChatSession] = []
    cursor = page.next_cursor
    while cursor is not None:
        page = log.page_sessions(3, cursor)
        found.extend(page.sessions)
        cursor = page.next_cursor
    return found
