"""The archive format on its own: round trips, random access, limits and damage."""

from __future__ import annotations

import gzip
import os
import random
import struct

import pytest

from eventlog.backends.files import _archive
from eventlog.backends.files._archive import (
    ArchiveError,
    ArchiveReader,
    read_index,
    write_archive,
)
from eventlog.backends.files._segments import header_line, trailer_line
from eventlog.core._codec import FORMAT_VERSION, Head, encode_payload, genesis, seal
from eventlog.core._errors import CorruptLogError


def segment_bytes(count: int, *, first: int = 1, batch: int = 1, size: int = 40,
                  sealed: bool = True, seed: int = 0) -> bytes:
    """A sealed segment as the file backend writes it, batches and all."""
    rng = random.Random(seed)
    start = genesis("s") if first == 1 else Head(first - 1, "ab" * 16)
    head = start
    lines = [header_line("s", start, FORMAT_VERSION)]
    while head.seq - start.seq < count:
        n = min(batch, count - (head.seq - start.seq))
        payloads = [encode_payload("t", 1.5, {"x": "y" * rng.randint(0, size)}) for _ in range(n)]
        records = seal(payloads, head, 1 << 20)
        lines.extend(r.line + (b"" if i == n - 1 else b" ") for i, r in enumerate(records))
        head = Head(records[-1].seq, records[-1].digest)
    if sealed:
        lines.append(trailer_line(head))
    return b"\n".join(lines) + b"\n"


def archive(tmp_path, content: bytes, first: int = 1, level: int = 6) -> tuple[int, str]:
    path = tmp_path / "a.gz"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    write_archive(fd, content, first, level)
    return fd, str(path)


def test_round_trip_is_plain_gzip_of_the_segment(tmp_path) -> None:
    content = segment_bytes(3000, batch=7, size=200)
    fd, path = archive(tmp_path, content)
    try:
        with open(path, "rb") as f:
            assert gzip.decompress(f.read()) == content  # zcat prints the segment
        index = read_index(fd)
        assert index.size == len(content)
        assert len(index.u_offs) > 5  # really cut into members
        reader = ArchiveReader(fd, index, "a.gz", "s")
        assert reader.check(1, os.fstat(fd).st_size) == []
        rng = random.Random(1)
        for _ in range(300):
            offset = rng.randrange(len(content) + 10)
            size = rng.choice([1, 100, 70_000, 1 << 20])
            assert reader.pread(-1, size, offset) == content[offset:offset + size]
    finally:
        os.close(fd)


def test_seek_lands_on_a_member_whose_head_chains_to_the_record(tmp_path) -> None:
    content = segment_bytes(2000, batch=3, size=100)
    fd, _ = archive(tmp_path, content)
    try:
        reader = ArchiveReader(fd, read_index(fd), "a.gz", "s")
        lines = {int(line[7:line.index(b",")]): line.rstrip(b" ") for line in content.split(b"\n")
                 if line.startswith(b'{"seq":')}
        for after in (0, 1, 500, 1234, 1999, 2000):
            offset, head = reader.seek(after)
            assert head.seq <= after
            rest = reader.pread(-1, 1 << 30, offset)
            if head.seq:
                assert head.digest == lines[head.seq][-34:-2].decode()
            if after < 2000:
                assert b"\n%s" % lines[after + 1] in b"\n" + rest.replace(b" \n", b"\n")
    finally:
        os.close(fd)


def test_huge_segments_get_larger_members_so_the_index_fits(tmp_path, monkeypatch) -> None:
    # The real bound is 1600 members of 64 KiB; scaled down so the test stays fast.
    monkeypatch.setattr(_archive, "MAX_MEMBERS", 10)
    content = segment_bytes(5000, size=400, seed=3)
    assert len(content) > 10 * _archive.MEMBER_BYTES
    fd, _ = archive(tmp_path, content, level=1)
    try:
        index = read_index(fd)
        assert len(index.u_offs) <= 10
        reader = ArchiveReader(fd, index, "a.gz", "s")
        assert reader.pread(-1, 500, len(content) - 500) == content[-500:]
        assert reader.check(1, os.fstat(fd).st_size) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize("content, why", [
    (segment_bytes(10, sealed=False), "not sealed"),
    (segment_bytes(10) + b"junk\n", "after the trailer"),
    (segment_bytes(10, first=5), "does not match the file name"),
    (segment_bytes(10).replace(b'{"seq":4,', b'{"seq":44,'), "expected record seq 4"),
    (segment_bytes(10)[:-1], "newline"),
    (b"", "not sealed"),
])
def test_refuses_anything_but_a_clean_sealed_segment(tmp_path, content: bytes, why: str) -> None:
    fd = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(ArchiveError, match=why):
            write_archive(fd, content, 1)
    finally:
        os.close(fd)


def test_refuses_a_batch_cut_short_before_the_trailer(tmp_path) -> None:
    content = segment_bytes(9, batch=3)
    lines = content.split(b"\n")
    cut = b"\n".join([*lines[:-3], lines[-2]]) + b"\n"  # drop a batch's last record
    fd = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(ArchiveError, match="batch cut short"):
            write_archive(fd, cut, 1)
    finally:
        os.close(fd)


def damaged(tmp_path, mutate) -> list[str]:
    content = segment_bytes(3000, size=200)
    fd, path = archive(tmp_path, content)
    os.close(fd)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data = mutate(data, read_index_of(path))
    with open(path, "wb") as f:
        f.write(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            reader = ArchiveReader(fd, read_index(fd), "a.gz", "s")
        except ArchiveError as exc:
            return [str(exc)]
        return reader.check(1, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def read_index_of(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_index(fd)
    finally:
        os.close(fd)


def flip(at: int):
    def mutate(data: bytearray, index) -> bytearray:
        data[at if at >= 0 else index.c_offs[2] + 40] ^= 0x10
        return data
    return mutate


def test_check_finds_a_bit_flip_in_compressed_data(tmp_path) -> None:
    assert damaged(tmp_path, flip(-1))


def test_check_finds_a_truncated_archive(tmp_path) -> None:
    problems = damaged(tmp_path, lambda data, index: data[:index.c_offs[3] + 10])
    assert problems


def test_check_finds_an_index_that_lies(tmp_path) -> None:
    def shift_head(data: bytearray, index) -> bytearray:
        # Member 2's head seq lives in the third column of the index member's extra field.
        at = bytes(data).rindex(b"EI") + 4 + 45 + 2 * 8 * len(index.u_offs) + 2 * 8
        struct.pack_into("<Q", data, at, index.seqs[2] + 1)
        return data
    problems = damaged(tmp_path, shift_head)
    assert any("index entry 2" in p for p in problems)


def test_reading_a_damaged_member_raises_corrupt_log_error(tmp_path) -> None:
    content = segment_bytes(3000, size=200)
    fd, _ = archive(tmp_path, content)
    index = read_index(fd)
    os.pwrite(fd, b"\0\0\0\0", index.c_offs[1] + 30)
    try:
        reader = ArchiveReader(fd, index, "a.gz", "s")
        assert reader.pread(-1, 10, 0) == content[:10]
        with pytest.raises(CorruptLogError, match="member 1"):
            reader.pread(-1, 10, index.u_offs[1])
    finally:
        os.close(fd)


def test_not_an_archive(tmp_path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"hello\n"))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ArchiveError, match="not an eventlog archive"):
            read_index(fd)
    finally:
        os.close(fd)
