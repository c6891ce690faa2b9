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
