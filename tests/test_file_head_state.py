"""The file backend's per-session head state (issue 14): known, to be re-discovered from the
files, or poisoned; a change of segment that fails part way never keeps the head it had."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.backends.files._handle import Handle
from eventlog.core._codec import Head


def test_a_failed_transition_forgets_the_head() -> None:
    handle = Handle(-1)
    assert handle.state == "re-discover"
    handle.know(Head(3, "ab" * 16), 120)
    assert handle.state == "known"
    with pytest.raises(OSError), handle.transition():
        handle.know(Head(4, "cd" * 16), 160)  # moved part way, then failed
        raise OSError(errno.EIO, "EIO")
    assert handle.state == "re-discover"
    assert (handle.head, handle.generation) == (None, -1)
    handle.know(Head(3, "ab" * 16), 120)
    with handle.transition():  # one that succeeds keeps what it found
        handle.advance(Head(4, "cd" * 16), 40)
    assert (handle.state, handle.head, handle.size) == ("known", Head(4, "cd" * 16), 160)
    handle.poison()
    assert handle.state == "poisoned"
    with pytest.raises(eventlog.SessionPoisonedError):
        handle.check_poisoned("s")


def test_a_seal_that_fails_before_the_next_segment_leaves_a_log_that_goes_on(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The trailer is written, then making the next segment fails: the append raises, and the
    # next one finds the sealed segment from the files instead of writing after its trailer.
    real = os.rename
    calls: list[Any] = []

    def rename(src: Any, dst: Any, **kwargs: Any) -> None:
        if str(dst).endswith("seg-0000000000000004.jsonl") and not calls:
            calls.append(dst)
            raise OSError(errno.ENOSPC, "injected: no space")
        real(src, dst, **kwargs)

    with eventlog.open(root, segment_max_events=3) as log:
        log.create_session("s")
        log.append("s", "x", 2)
        log.append("s", "x", 3)
        monkeypatch.setattr(os, "rename", rename)
        with pytest.raises(eventlog.StorageError):
            log.append("s", "x", 4)
        assert calls, "the fault never fired"
        assert log.append("s", "x", 4).seq == 4
        assert log.append("s", "x", 5).seq == 5
        assert [e.seq for e in log.events("s")] == [1, 2, 3, 4, 5]
        assert log.verify().ok
    # One trailer, not a second one written by a seal that trusted the head it had kept.
    lines = (root / "s" / "seg-0000000000000001.jsonl").read_bytes().splitlines()
    assert len(lines) == 5, lines  # header, records 1-3, trailer
    assert lines[-1].startswith(b'{"sealed":3,')
