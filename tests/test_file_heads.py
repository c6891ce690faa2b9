"""Where a file store's writer takes the head it appends after (issue 13): a head transition
that failed is never trusted (item 1), the lock page is a cache checked against the log
(item 7), and an append is never acknowledged into files no longer in the store (item 9)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog

from ._tmpfs import tmpfs

SID = "s"


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB and 64 inodes of the test's own."""
    with tmpfs(tmp_path / "tmpfs", "size=8m,nr_inodes=64") as where:
        yield where


def use_up_inodes(directory: Path) -> list[Path]:
    directory.mkdir()
    made: list[Path] = []
    while True:
        path = directory / str(len(made))
        try:
            path.touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return made
        made.append(path)


def seqs(root: Path) -> list[int]:
    with eventlog.open(root) as fresh:
        return [e.seq for e in fresh.events(SID)]


def test_compaction_on_a_disk_out_of_inodes_loses_nothing(few_inodes: Path) -> None:
    """Item 1: compaction seals segment 1 and can't make segment 2. The appends after it
    must fail (no file to write to) or be stored where a fresh process reads them, never
    after the trailer; verify stays ok, and once there are inodes again the log goes on."""
    root = few_inodes / "store"
    acked = [1]
    with eventlog.open(root) as log:
        log.create_session(SID)
        for i in range(2):
            acked.append(log.append(SID, "x", {"i": i, "pad": "p" * 3000}).seq)
        filler = use_up_inodes(few_inodes / "filler")
        with pytest.raises(eventlog.StorageError):
            log.compact(SID)
        outcomes = []
        for i in range(4):
            try:
                acked.append(log.append(SID, "after", i).seq)
                outcomes.append("ok")
            except eventlog.StorageError as exc:
                outcomes.append(f"{type(exc).__name__}")
        assert seqs(root) == acked, outcomes
        with eventlog.open(root) as fresh:
            assert fresh.verify().ok, fresh.verify().problems
        for path in filler:
            path.unlink()
        acked.append(log.append(SID, "room", 1).seq)
        assert acked == list(range(1, len(acked) + 1)), (acked, outcomes)
    assert seqs(root) == acked
    with eventlog.open(root) as fresh:
        acked.append(fresh.append(SID, "fresh", 1).seq)
        assert [m.seq for m in fresh.get_messages(SID)] == []
        fresh.compact(SID)
        assert fresh.verify().ok
        assert [e.seq for e in fresh.events(SID)] == acked == list(range(1, len(acked) + 1))


def _page(root: Path) -> bytearray:
    return bytearray((root / SID / "lock").read_bytes())


def _forge(root: Path, seq: int, size: int | None = None) -> None:
    """Publish a head the log does not hold: generation even and moved on, the same segment."""
    page = _page(root)
    generation = int.from_bytes(page[0:8], "little")
    page[0:8] = ((generation | 1) + 1).to_bytes(8, "little")
    if size is not None:
        page[16:24] = size.to_bytes(8, "little")
    page[24:32] = seq.to_bytes(8, "little")
    page[32:48] = bytes(range(16))
    (root / SID / "lock").write_bytes(bytes(page))


def _segment(root: Path) -> Path:
    return max((root / SID).glob("seg-*.jsonl"))


@pytest.mark.parametrize("size", ["same", "other"])
def test_a_forged_lock_page_is_not_trusted(root: Path, size: str) -> None:
    """Item 7: a page claiming seq 41 (with the segment's true size, or another) must not make
    a writer that holds the segment open acknowledge seq 42 after seq 3."""
    with eventlog.open(root) as log:
        log.create_session(SID)
        log.append(SID, "x", 1)
        log.append(SID, "x", 2)
        _forge(root, 41, _segment(root).stat().st_size if size == "same" else 10)
        assert log.append(SID, "x", 3).seq == 4
        log.add_message(eventlog.ChatMessage(sender="a", content="c", session_id=SID))
        assert log.append_many(SID, [("b", 1), ("b", 2)])[-1].seq == 7
    assert seqs(root) == list(range(1, 8))
    with eventlog.open(root) as fresh:
        assert fresh.verify().ok


def test_a_stale_lock_page_is_not_trusted(root: Path) -> None:
    """Item 7: the segment goes back to an earlier copy (a restored backup) while the page
    still says where it was: the writer finds the end of the log, not the page's."""
    with eventlog.open(root) as log:
        log.create_session(SID)
        log.append(SID, "x", 1)
        early = _segment(root).read_bytes()
        for i in range(3):
            log.append(SID, "x", i)
        page = _page(root)
        with eventlog.open(root) as other:
            other.append(SID, "other", 1)  # moves the page on, so the next append reads it
        _segment(root).write_bytes(early)
        page[0:8] = (int.from_bytes(page[0:8], "little") + 4).to_bytes(8, "little")
        (root / SID / "lock").write_bytes(bytes(page))
        assert log.append(SID, "after", 1).seq == 3
    assert seqs(root) == [1, 2, 3]


def test_an_append_into_a_removed_session_is_refused(root: Path) -> None:
    """Item 9: after ``rm -rf`` of the session's directory, the store that had it open must
    not acknowledge appends into the unlinked files."""
    with eventlog.open(root) as log:
        log.create_session(SID)
        log.append(SID, "x", 1)
        shutil.rmtree(root / SID)
        for call in (lambda: log.append(SID, "x", 2),
                     lambda: log.append_many(SID, [("b", 1), ("b", 2)]),
                     lambda: log.add_message(eventlog.ChatMessage(sender="a", content="c",
                                                                  session_id=SID))):
            with pytest.raises((eventlog.SessionNotFoundError, eventlog.StorageError)):
                call()
        assert not log.session_exists(SID)
        # made again (by anyone): the same store appends to the new life
        with eventlog.open(root) as other:
            other.create_session(SID)
        assert log.append(SID, "x", 3).seq == 2
    assert seqs(root) == [1, 2]


def test_an_append_into_a_removed_segment_is_refused(root: Path) -> None:
    """Item 9, one file: the active segment unlinked under a store that holds it open."""
    with eventlog.open(root) as log:
        log.create_session(SID)
        log.append(SID, "x", 1)
        _segment(root).unlink()
        with pytest.raises((eventlog.CorruptLogError, eventlog.StorageError)):
            log.append(SID, "x", 2)


