"""SessionTail: new events since the last read, each once, across processes' appends, deletes
and ids made again; the file backend's watch skips reads only when nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventlog
from eventlog.store._tail import SessionTail


@pytest.fixture(params=["files", "sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {"files": str(tmp_path / "store"), "sqlite": f"sqlite:///{tmp_path / 's.db'}",
            "memory": f"memory://tail-{tmp_path.name}"}[request.param]


def test_reads_each_event_once_and_notices_a_new_life(url: str) -> None:
    with eventlog.open(url) as log, eventlog.open(url) as other:
        tail = SessionTail(log, "s")
        assert tail.read() == (False, [])
        other.create_session("s")
        other.append("s", "x.y", 1)
        restarted, events = tail.read()
        assert not restarted and [e.seq for e in events] == [1, 2]
        assert tail.read() == (False, [])
        for n in range(3):
            other.append("s", "x.y", n)
        assert [e.data for e in tail.read()[1]] == [0, 1, 2]
        other.delete_session("s")
        assert tail.read() == (True, [])
        other.create_session("s")
        other.append("s", "x.y", "new life")
        restarted, events = tail.read()  # the restart was reported with the delete
        assert not restarted and [e.seq for e in events] == [1, 2]
        assert [e.data for e in events][1:] == ["new life"]
        # Deleted and made again between two reads, to the same length: still noticed.
        other.delete_session("s")
        other.create_session("s")
        other.append("s", "x.y", "third life")
        restarted, events = tail.read()
        assert restarted and [e.data for e in events][1:] == ["third life"]
        tail.close()


def test_the_file_watch_sees_every_append_by_any_handle(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "store") as log, eventlog.open(tmp_path / "store") as other:
        other.create_session("s")
        tail = SessionTail(log, "s")
        tail.read()
        assert tail.watch is not None  # the file backend has one
        seen = 1
        for n in range(50):
            other.append("s", "x.y", n)
            if n % 7 == 0:
                other.append_many("s", [("x.y", "a"), ("x.y", "b")])
            events = tail.read()[1]
            assert events and events[0].seq == seen + 1
            seen = events[-1].seq
            assert tail.read() == (False, [])
        assert seen == other.get_session("s").last_seq
        tail.close()
        assert tail.watch is None
