"""The session catalog and history operations: a forked and rewound session's entry says what
the fold of its log says (``verify`` compares them), through compaction and a fresh store."""

from __future__ import annotations

from pathlib import Path

import eventlog
from eventlog import ChatMessage


def talk(log: eventlog.EventLog, sid: str, *contents: str) -> None:
    for content in contents:
        log.add_message(ChatMessage(sender="A", content=content, session_id=sid))


def test_the_catalog_keeps_rewinds_and_forks(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    with eventlog.open(url, snapshot_every=2) as log:
        log.create_session("s", ["A"])
        talk(log, "s", *"abcdefg")
        log.rewind("s", 4)
        talk(log, "s", *"hij")
        log.fork("s", "f", at_seq=10)
        listed = {s.session_id: s for s in log.list_sessions(order="last_activity")}
        assert listed["s"].rewinds == log.get_session("s").rewinds != ()
        assert listed["f"].forked_from == ("s", 10)
        log.compact()
        assert log.verify().ok, log.verify().problems
    with eventlog.open(url) as again:
        page = again.page_sessions(limit=10, prefix="s")
        assert [s.rewinds for s in page.sessions] == [again.get_session("s").rewinds]
        report = again.verify()
        assert report.ok, report.problems
