"""Redaction, part of the store contract: every backend erases the original bytes.

Each backend's test class says how to read every byte its store keeps (``raw_contents``):
by default every file under the store's root (a file store's directory, an SQLite
database's directory with its write-ahead log), with gzip archives inflated and SQLite's
compressed archive chunks read out too, so that a compressed copy of the erased data
could not hide from the grep. A backend that keeps no files (memory, Redis, PostgreSQL)
overrides it to dump what its server holds.
"""

from __future__ import annotations

import gzip
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import EventLog, RedactionError

from ._contract_base import ContractBase, contents, message


def file_contents(url: str) -> bytes:
    """Every byte under a file or SQLite store's root, archives inflated."""
    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///"):])
        root = database.parent
    elif "://" not in url:
        database, root = None, Path(url)
    else:
        raise NotImplementedError(f"{url}: say how to read this store's bytes (raw_contents)")
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        found.append(data)
        if path.name.endswith(".gz"):
            found.append(gzip.decompress(data))
    if database is not None and database.exists():
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            found += [zlib.decompress(row[0]) for row in db.execute("SELECT blob FROM archive")]
        finally:
            db.close()
    return b"\n".join(found)


class RedactionContract(ContractBase):
    """``redact`` on every backend: the data goes, the chain stays, the bytes are erased."""

    def raw_contents(self, url: str, log: EventLog) -> bytes:
        """Every byte the store keeps (see the module docstring)."""
        return file_contents(url)

    def _history(self, log: EventLog, secret: str, other: str) -> tuple[str, int, int]:
        """A session with ``secret`` in an early message (compacted away into archives where
        the backend has them) and ``other`` in a late custom event; their seqs."""
        sid = log.create_session(participants=["A"]).session_id
        log.add_messages([message(sid, "A", f"filler {i} " + "x" * 120) for i in range(40)])
        # Its sender is named nowhere else: the catalog's entry lists it until the redaction.
        early = log.add_message(message(sid, f"by-{secret}", f"my card is {secret}")).seq
        assert early is not None
        log.add_messages([message(sid, "A", f"more {i} " + "y" * 120) for i in range(40)])
        log.compact(sid)
        late = log.append(sid, "note.private", {"text": other, "n": 1}).seq
        log.add_message(message(sid, "A", "after"))
        return sid, early, late

    def test_redact_erases_the_original_bytes_and_keeps_the_chain(self, url: str) -> None:
        secret, other = f"SECRET-{uuid.uuid4().hex}", f"PRIVATE-{uuid.uuid4().hex}"
        with eventlog.open(url, snapshot_every=7) as log:
            sid, early, late = self._history(log, secret, other)
            before = log.get_session(sid)
            assert f"by-{secret}" in before.participants
            assert log.list_sessions() == [before]  # the catalog holds its entry now
            raw = self.raw_contents(url, log)
            assert secret.encode() in raw and other.encode() in raw  # the grep can see them
            event = log.redact(sid, [late, early], reason="erasure request")
            assert event.type == "session.redacted" and event.seq == before.last_seq + 1
            assert event.data == {"seqs": [early, late], "reason": "erasure request"}
            raw = self.raw_contents(url, log)
            assert secret.encode() not in raw and other.encode() not in raw
            assert log.verify(sid).ok
        with eventlog.open(url) as log:
            assert log.verify().ok
            events = {e.seq: e for e in log.events(sid)}
            for seq, kind in ((early, "message"), (late, "note.private")):
                tomb = events[seq].data["redacted"]
                assert events[seq].type == kind
                assert (tomb["reason"], tomb["seq"]) == ("erasure request", event.seq)
            kept = [m for m in log.get_messages(sid) if m.seq == early]
            assert kept and kept[0].message_type == "redacted" and kept[0].content == ""
            assert [m.seq for m in log.get_messages(sid, limit=200)] == \
                [m.seq for m in log.get_messages(sid)]
            after = log.get_session(sid)
            assert after.message_count == before.message_count
            assert f"by-{secret}" not in after.participants
            assert log.list_sessions() == [after]
            assert after.last_seq == event.seq
            assert secret.encode() not in self.raw_contents(url, log)

    def test_what_redact_refuses_changes_nothing(self, url: str) -> None:
        with eventlog.open(url) as log:
            sid = log.create_session(participants=["A"]).session_id
            log.add_participant(sid, "B")
            log.add_message(message(sid, "A", "hello"))
            log.append(sid, "x.y", {"v": 1})
            held = contents(log)
            for seqs in ([1], [2], [9], [0], [], [3, 3], ["3"], [True]):
                with pytest.raises(RedactionError):
                    log.redact(sid, seqs, reason="no")  # type: ignore[arg-type]
            with pytest.raises(eventlog.InvalidInputError):
                log.redact(sid, [3], reason="")
            with pytest.raises(eventlog.SessionNotFoundError):
                log.redact("nobody", [3], reason="r")
            assert contents(log) == held
            log.redact(sid, [3], reason="once")
            held = contents(log)
            with pytest.raises(RedactionError, match="already redacted"):
                log.redact(sid, [3, 4], reason="twice")
            assert contents(log) == held
            assert isinstance(RedactionError("x"), ValueError)

    def test_an_import_keeps_tombstones_and_checks_them(self, url: str) -> None:
        with eventlog.open(url) as log:
            sid = log.create_session(participants=["A"]).session_id
            log.add_messages([message(sid, "A", f"m{i}") for i in range(4)])
            redaction = log.redact(sid, [3], reason="r")
            history = list(log.events(sid))
            log.import_events("copy", history)
            assert log.verify("copy").ok
            assert [e.data for e in log.events("copy")] == [e.data for e in history]
            # A tombstone its redaction event does not name fails the import, which leaves nothing.
            forged = [e._replace(data={"seqs": [2], "reason": "r"}) if e.seq == redaction.seq
                      else e for e in history]
            with pytest.raises(eventlog.InvalidEventError, match="redactions"):
                log.import_events("forged", forged)
            assert not log.session_exists("forged")

    # Another store handle (another process) whose fold predates the erasure ----------------

    def _secret_session(self, log: EventLog, secret: str) -> tuple[str, int]:
        sid = log.create_session(participants=["A"]).session_id
        log.add_message(message(sid, "A", "hello"))
        seq = log.add_message(message(sid, f"by-{secret}", "hi")).seq
        assert seq is not None
        return sid, seq

    def test_a_fold_kept_from_before_a_redaction_never_brings_the_sender_back(self, url: str) -> None:
        """Another handle (as another process) read the session before the redaction and kept
        its fold; once more was appended, it folded on from that fold and saved a catalog
        entry naming the erased sender (and listed it)."""
        secret = f"SECRET-{uuid.uuid4().hex}"
        with eventlog.open(url) as mine, eventlog.open(url) as other:
            sid, seq = self._secret_session(mine, secret)
            assert f"by-{secret}" in other.get_session(sid).participants
            mine.redact(sid, [seq], reason="erasure request")
            mine.add_message(message(sid, "A", "after"))  # the redactor's new entry is stale now
            assert f"by-{secret}" not in other.list_sessions()[0].participants
            assert f"by-{secret}" not in other.get_session(sid).participants
            assert secret.encode() not in self.raw_contents(url, mine)
        with eventlog.open(url) as log:
            assert f"by-{secret}" not in log.list_sessions()[0].participants
            assert secret.encode() not in self.raw_contents(url, log)

    def test_a_fold_read_while_redacting_never_brings_the_sender_back(self, url: str) -> None:
        """Another handle folded the session between the redaction event and the erasure, then
        was held up before saving its catalog entry until the redaction had dropped and rebuilt
        the session's entry: its entry, for the same head, named the erased sender."""
        secret = f"SECRET-{uuid.uuid4().hex}"
        with eventlog.open(url) as mine, eventlog.open(url) as other:
            sid, seq = self._secret_session(mine, secret)
            folded, release = threading.Event(), threading.Event()
            saving = other.backend.catalog_write

            def held_up(entries: Any, keys: Any = None) -> None:
                folded.set()
                assert release.wait(30)
                saving(entries, keys)
            other.backend.catalog_write = held_up  # type: ignore[method-assign]
            listed: list[Any] = []
            erase = mine.backend.redact

            def redact(*args: Any, **kwargs: Any) -> None:
                # The redaction event is stored; the data is not erased yet.
                reader = threading.Thread(target=lambda: listed.append(other.list_sessions()))
                reader.start()
                # Until it saves its entry (and is held up there), or finishes without saving
                # one (a fold in doubt about a redaction is never saved: the fix): waiting the
                # whole 30 s for a save that never comes cost every backend 30 s.
                deadline = time.monotonic() + 30
                while not folded.wait(0.01) and reader.is_alive() and time.monotonic() < deadline:
                    pass
                erase(*args, **kwargs)
                readers.append(reader)
            readers: list[threading.Thread] = []
            mine.backend.redact = redact  # type: ignore[method-assign]
            mine.redact(sid, [seq], reason="erasure request")
            release.set()
            for reader in readers:
                reader.join(30)
            other.backend.catalog_write = saving  # type: ignore[method-assign]
            assert secret.encode() not in self.raw_contents(url, mine)
            assert f"by-{secret}" not in mine.list_sessions()[0].participants
        with eventlog.open(url) as log:
            assert f"by-{secret}" not in log.list_sessions()[0].participants
            assert f"by-{secret}" not in log.get_session(sid).participants
