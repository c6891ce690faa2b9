"""What verify finds in a file store that the digest chain alone can't (issue 13): every
single-bit flip anywhere in an archive (item 6), and a log that ends before the head the
store recorded in its lock page (item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventlog
from eventlog.backends.files import _archive

from .test_checkstore import check

SID = "s"


def compacted_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session compacted into an archive of a few members (small members, so that every
    kind of member is there in a small file), and a newer active segment; returns the archive."""
    monkeypatch.setattr(_archive, "MEMBER_BYTES", 1024)
    with eventlog.open(root) as log:
        log.create_session(SID, participants=["a", "b"])
        log.append_many(SID, [("x", {"i": i, "text": f"line {i} " * (i % 7 + 1)}) for i in range(60)])
        log.compact(SID)
        log.append(SID, "after", 1)
    [archived] = (root / SID).glob("seg-*.jsonl.gz")
    return archived


@pytest.mark.slow  # 26,000 verifies: a minute
def test_every_single_bit_flip_in_an_archive_is_reported(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    archived = compacted_store(root, monkeypatch)
    pristine = archived.read_bytes()
    with eventlog.open(root) as log:
        assert log.verify().ok
    assert len(pristine) < 4000, len(pristine)
    missed, checker_missed = [], []
    with eventlog.open(root) as log:
        for at in range(len(pristine)):
            for bit in range(8):
                damaged = bytearray(pristine)
                damaged[at] ^= 1 << bit
                archived.write_bytes(damaged)
                if log.verify(SID).ok:
                    missed.append((at, bit))
                if (at * 8 + bit) % 5 == 0 and not check(root).problems:  # the spec's checker
                    checker_missed.append((at, bit))
    archived.write_bytes(pristine)
    print(f"\n{len(pristine) * 8} single-bit flips in a {len(pristine)}-byte archive: "
          f"{len(missed)} unreported by verify, {len(checker_missed)} of a fifth of them by "
          "tools/checkstore.py")
    assert missed == []
    assert checker_missed == []


def _cut_records(segment: Path, count: int) -> None:
    """Remove the last ``count`` lines of ``segment``, whole: what's left is a clean log."""
    data = segment.read_bytes()
    end = len(data)
    for _ in range(count):
        end = data.rindex(b"\n", 0, end - 1) + 1
    segment.write_bytes(data[:end])


@pytest.mark.parametrize("count", [1, 3])
def test_a_log_cut_short_at_a_record_boundary_is_reported(root: Path, count: int) -> None:
    with eventlog.open(root) as log:
        log.create_session(SID)
        for i in range(5):
            log.append(SID, "x", i)
    [segment] = (root / SID).glob("seg-*.jsonl")
    _cut_records(segment, count)
    with eventlog.open(root) as log:
        report = log.verify()
        assert not report.ok
        [problem] = report.problems
        assert f"ends at seq {6 - count}" in problem and "seq 6" in problem, problem
        assert "missing" in problem


def test_a_removed_active_segment_is_reported(root: Path) -> None:
    with eventlog.open(root, segment_max_events=4) as log:
        log.create_session(SID)
        for i in range(6):
            log.append(SID, "x", i)
    newest = max((root / SID).glob("seg-*.jsonl"))
    assert newest.name != "seg-0000000000000001.jsonl"
    newest.unlink()
    with eventlog.open(root) as log:
        report = log.verify()
        assert not report.ok
        assert any("ends at seq 4" in p and "seq 7" in p for p in report.problems), report.problems


def test_a_tail_replaced_by_other_records_is_reported(root: Path) -> None:
    """The same number of records, but not the ones the store recorded last: cut two records
    and append two others behind the store's back (a stale page would do the same)."""
    with eventlog.open(root) as log:
        log.create_session(SID)
        for i in range(4):
            log.append(SID, "x", i)
    lock = root / SID / "lock"
    page = lock.read_bytes()
    [segment] = (root / SID).glob("seg-*.jsonl")
    _cut_records(segment, 2)
    with eventlog.open(root) as log:
        for i in range(2):
            log.append(SID, "other", i)
    lock.write_bytes(page)  # as the store had it before
    with eventlog.open(root) as log:
        report = log.verify()
        assert any("seq 5" in p and "another" in p for p in report.problems), report.problems


def test_a_healthy_log_and_an_unpublished_page_are_ok(root: Path) -> None:
    with eventlog.open(root, segment_max_events=3) as log:
        log.create_session(SID)
        for i in range(7):
            log.append(SID, "x", i)
        log.compact(SID)
        assert log.verify().ok
    lock = root / SID / "lock"
    page = bytearray(lock.read_bytes())
    page[0] |= 1  # odd: "read the files", nothing recorded
    lock.write_bytes(bytes(page))
    with eventlog.open(root) as log:
        assert log.verify().ok
