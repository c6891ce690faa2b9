"""Claims the README makes that no other test pins down, each checked as a user would see it."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventlog
from eventlog.store._compaction import COMPACT_MIN_BYTES


@pytest.mark.parametrize("url", ["files", "sqlite", "memory://"])
def test_compaction_leaves_a_session_under_4_kib_alone(tmp_path: Path, url: str) -> None:
    location = {"files": str(tmp_path / "s"), "sqlite": f"sqlite:///{tmp_path}/s.db"}.get(url, url)
    assert COMPACT_MIN_BYTES == 4096  # the README says 4 KiB
    with eventlog.open(location) as log:
        log.create_session("tiny", ["A"])
        log.add_message(eventlog.ChatMessage(sender="A", content="hi", session_id="tiny"))
        size = log.size("tiny")
        report = log.compact("tiny")
        assert (report.sessions, report.segments_archived) == (1, 0)
        assert report.bytes_before == report.bytes_after == size == log.size("tiny")
        big = log.create_session("big", ["A"]).session_id
        log.add_messages([eventlog.ChatMessage(sender="A", content=f"message {i} " * 10, session_id=big)
                          for i in range(60)])
        assert log.size(big) >= COMPACT_MIN_BYTES
        report = log.compact(big)
        if url != "memory://":  # memory archives nothing: there is no disk to save
            assert report.segments_archived >= 1 and report.bytes_after < report.bytes_before
        assert log.verify().ok
