"""What verify finds in a file store that the digest chain alone can't (issue 13): every
single-bit flip anywhere in an archive (item 6), and a log that ends before the head the
store recorded in its lock page (item 8)."""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.backends.files import _archive
from eventlog.store import _compaction

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


def inflated(archive: bytes) -> list[bytes]:
    """Every gzip member's content, in order (the index member's is empty)."""
    members = []
    while archive:
        d = zlib.decompressobj(31)
        members.append(d.decompress(archive))
        if not d.eof:
            raise zlib.error("truncated member")
        archive = d.unused_data
    return members


@pytest.mark.slow  # 26,000 verifies: a minute
def test_every_single_bit_flip_that_changes_the_archive_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every flip is reported unless it changes nothing that inflates: a back-reference
    flipped into another that copies the same bytes (repetitive text; seen in about one run
    in five: CI's run on Dec 3 met one), which no check of the content can see."""
    root = tmp_path / "store"
    archived = compacted_store(root, monkeypatch)
    pristine = archived.read_bytes()
    content = inflated(pristine)
    with eventlog.open(root) as log:
        assert log.verify().ok
    assert len(pristine) < 4000, len(pristine)
    missed: list[tuple[int, int]] = []
    checker_missed: list[tuple[int, int]] = []
    unchanged: list[tuple[int, int]] = []
    with eventlog.open(root) as log:
        for at in range(len(pristine)):
            for bit in range(8):
                damaged = bytearray(pristine)
                damaged[at] ^= 1 << bit
                archived.write_bytes(damaged)
                try:
                    same = inflated(bytes(damaged)) == content
                except zlib.error:
                    same = False
                if log.verify(SID).ok:
                    (unchanged if same else missed).append((at, bit))
                if (at * 8 + bit) % 5 == 0 and not check(root).problems and not same:
                    checker_missed.append((at, bit))  # the spec's checker
    archived.write_bytes(pristine)
    print(f"\n{len(pristine) * 8} single-bit flips in a {len(pristine)}-byte archive: "
          f"{len(missed)} unreported by verify, {len(checker_missed)} of a fifth of them by "
          f"tools/checkstore.py; {len(unchanged)} changed no byte of any member's content")
    assert missed == []
    assert checker_missed == []
    assert len(unchanged) < 20, unchanged  # rare: a flip almost always changes the parse


def compacted_chat(root: Path, contents: list[str], sid: str = SID) -> eventlog.VerifyReport:
    """A session of messages with ``contents``, compacted by the store itself; its verify report."""
    with eventlog.open(root) as log:
        log.create_session(sid, ["A"], created_at=1e9)
        for seq, text in enumerate(contents, start=2):
            log.add_message(eventlog.ChatMessage(sender="A", content=text, session_id=sid,
                                                 timestamp=1e9 + seq, id=f"m{seq}"))
        log.compact(sid)
        assert len(list((root / sid).glob("seg-*.jsonl.gz"))) == 1
        return log.verify(sid)


def test_a_healthy_archive_whose_deflate_stream_ends_on_a_byte_boundary_verifies(
        tmp_path: Path) -> None:
    """Member 0's stream ends exactly at a byte boundary (no padding bits); flipping the low
    set bit of its last byte reads another match that also ends the stream: not padding (the
    output changes), but verify called it "damaged padding bits" (outside tester's repro)."""
    contents = ["y" * 14 + "2957"] + ["x" * 1990] * 16
    report = compacted_chat(tmp_path / "store", contents, "p")
    assert report.ok, report.problems
    assert not check(tmp_path / "store").problems


# Long runs and short text, as chats hold: each message a piece repeated, then a few digits
# that make it unique (the shapes whose streams end in every way, found by the outside tester).
TEXTS = st.builds(lambda piece, n, tail: piece * n + str(tail),
                  st.sampled_from(["x", "y", "ab", "hello ", '{"a":1}', "é…"]),
                  st.integers(0, 2000), st.integers(0, 99999))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(contents=st.lists(TEXTS, min_size=1, max_size=20))
def test_a_freshly_compacted_archive_always_verifies(contents: list[str]) -> None:
    """What the store itself wrote and compacted is never reported as damaged, neither by
    verify nor by the spec's checker, whatever the content (small members: many of them,
    each a deflate stream whose last byte the padding check looks at)."""
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as tmp:
        patch.setattr(_archive, "MEMBER_BYTES", 1024)
        patch.setattr(_compaction, "COMPACT_MIN_BYTES", 0)  # small sessions are archived too
        root = Path(tmp) / "store"
        report = compacted_chat(root, contents)
        assert report.ok, report.problems
        assert not check(root).problems, check(root).problems


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
