"""Archived segments: a sealed segment as independent gzip members plus an index.

Why this shape: a compacted session's newest events sit at the end of its newest
archive, and ``get_messages(limit=50)`` must reach them without inflating the whole
file. A single gzip stream can only be read from its start, so the segment is cut
at line boundaries into members of about ``MEMBER_BYTES``, each a complete gzip
member (deflate restarts per member; its 32 KiB window means little is lost), and an
index records where each member starts. Reading backward or seeking by seq then
inflates one member.

Layout of ``seg-<first seq>.jsonl.gz``::

    member 0       gzip header with extra subfield "EL": version, offset of the index member
                   payload: the segment's first lines (the header line and some records)
    member 1..n-1  plain gzip members, each a run of whole lines
    index member   gzip header with extra subfield "EI" holding the index; empty payload

Every part is a standard gzip member, so ``zcat seg-*.jsonl.gz`` prints exactly the
bytes of the sealed segment, and ``gzip -t`` checks every member's CRC. The index
(little-endian) is: version u8, member count n u32, uncompressed size u64, SHA-256
of the uncompressed bytes, then four columns of n entries: the uncompressed offset
(u64) and compressed offset (u64) of each member, and the chain head just before the
member's first line: its seq (u64) and digest (16 bytes).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from ...core._codec import DIGEST_HEX, SUFFIX_LEN, Head
from ...core._errors import CorruptLogError
from ._segments import parse_header, parse_trailer

ARCHIVE_VERSION = 1
MEMBER_BYTES = 32 << 10
"""Least uncompressed size of a member (but the first): what a tail read inflates, about
0.15 ms here; compressed size within 2-3% of 256 KiB members (deflate's window is 32 KiB)."""
MAX_MEMBERS = 1600
"""The index must fit a gzip extra field (65535 bytes, 40 per member), so huge
segments get proportionally larger members."""
DEFAULT_LEVEL = 6

_GZIP_ID = b"\x1f\x8b\x08"
_FEXTRA = 0x04
_POINTER_TAG = b"EL"
_INDEX_TAG = b"EI"
_POINTER = struct.Struct("<BQ")
_INDEX_HEAD = struct.Struct("<BIQ32s")
_POINTER_AT = 17  # offset of the u64 in member 0: 10 header + 2 XLEN + 4 subfield head + 1 version
_EMPTY_DEFLATE = b"\x03\x00"
_RECORD = b'{"seq":'
_SUFFIX_OPEN = b',"h":"'
_BIG_ENDIAN = sys.byteorder == "big"


class ArchiveError(Exception):
    """An archive (or the segment given to make one) is not what it should be."""


@dataclass(frozen=True, slots=True)
class ArchiveIndex:
    """Where each member of an archive starts, and the chain head before it."""

    size: int
    sha256: bytes
    u_offs: array[int]
    c_offs: array[int]
    seqs: array[int]
    digests: bytes
    end: int
    """Compressed offset of the index member (the end of the last content member)."""

    def head(self, member: int) -> Head:
        return Head(self.seqs[member], self.digests[member * 16:member * 16 + 16].hex())

    def encode(self) -> bytes:
        columns = [self.u_offs, self.c_offs, self.seqs]
        if _BIG_ENDIAN:
            columns = [array("Q", c) for c in columns]
            for column in columns:
                column.byteswap()
        return (_INDEX_HEAD.pack(ARCHIVE_VERSION, len(self.u_offs), self.size, self.sha256)
                + b"".join(c.tobytes() for c in columns) + self.digests)

    @staticmethod
    def decode(data: bytes, end: int) -> ArchiveIndex:
        if len(data) < _INDEX_HEAD.size:
            raise ArchiveError("index too short")
        version, count, size, sha = _INDEX_HEAD.unpack_from(data)
        if version != ARCHIVE_VERSION:
            raise ArchiveError(f"archive format version {version} is not supported")
        if count < 1 or len(data) != _INDEX_HEAD.size + count * 40:
            raise ArchiveError("index length does not match its member count")
        columns = []
        at = _INDEX_HEAD.size
        for _ in range(3):
            column = array("Q")
            column.frombytes(data[at:at + count * 8])
            if _BIG_ENDIAN:
                column.byteswap()
            columns.append(column)
            at += count * 8
        return ArchiveIndex(size, sha, columns[0], columns[1], columns[2], data[at:], end)


def _member_header(extra: bytes = b"") -> bytes:
    """A member's gzip header as written: MTIME 0 (equal input gives equal bytes), XFL 0,
    OS 255 (unknown), and an extra field if given."""
    if extra:
        return _GZIP_ID + bytes([_FEXTRA]) + b"\0\0\0\0\0\xff" + struct.pack("<H", len(extra)) + extra
    return _GZIP_ID + b"\0\0\0\0\0\0\xff"


def _padding_set(raw: bytes, body: int) -> bool:
    """Whether the deflate stream of the member ``raw`` (starting at ``body``) ends in a
    padding bit that is set. The bits after the end-of-block code up to the byte boundary
    are never read by inflate, so a flip there changes no byte of the content and no CRC.
    Python's zlib does not say where the stream ended within its last byte, so each bit of
    that byte is flipped, from the top (deflate fills a byte from its low bit up, so the
    padding is the top bits): a padding bit leaves what that byte inflates to, and the end of
    the stream, exactly as they were. The first bit from the top that changes either is the
    last one inflate read, and every bit below it is read too, so the scan stops there. That
    last read bit always changes something: it ends the end-of-block code (its sibling code is
    another symbol, more output or none valid) or a stored block's last byte (other output).
    A read bit lower down can be flipped into another parse that also ends the stream (a
    match at another distance, say), which is why "inflate still ends" alone is not a test
    for padding: it reported healthy archives as damaged. The inflater's state before that
    byte is copied, so each try inflates one byte, not the member."""
    last = raw[-9]
    inflater = zlib.decompressobj(-15)
    try:
        inflater.decompress(raw[body:-9])
        whole = inflater.copy()
        expected = whole.decompress(bytes([last]))
    except zlib.error:
        return False  # damaged otherwise: inflating the member reports it
    if not whole.eof or whole.unused_data:
        return False  # likewise
    for bit in range(7, -1, -1):
        trial = inflater.copy()
        try:
            same = trial.decompress(bytes([last ^ (1 << bit)])) == expected
        except zlib.error:
            return False
        if not (same and trial.eof and not trial.unused_data):
            return False  # the last bit inflate read: none above it is set
        if last >> bit & 1:
            return True
    return False


def _member(data: bytes, level: int, extra: bytes = b"") -> bytes:
    """One gzip member (RFC 1952): ``_member_header`` and the deflated data."""
    header = _member_header(extra)
    if data:
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = deflate.compress(data) + deflate.flush()
    else:
        body = _EMPTY_DEFLATE
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _subfield(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<H", len(data)) + data


class SegmentWalk:
    """Checks, line by line and without parsing JSON, that bytes form one clean sealed
    segment: a header naming ``first_seq``, records with consecutive seqs, complete
    batches, and a trailer matching the last record, with nothing after it.

    It does not check digests (``verify`` does): compaction must keep bytes exactly,
    not certify them, and a full chain check would double its cost. It tracks the
    chain head so the index can say where each member starts in the chain.
    """

    __slots__ = ("_digest", "_seq", "first_seq", "in_batch", "lines", "sealed")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self._seq = -1  # no header yet
        self._digest = b""
        self.in_batch = False
        self.sealed: Head | None = None
        self.lines = 0

    @property
    def head(self) -> Head | None:
        """The chain head after the lines fed so far (None before the header)."""
        return None if self._seq < 0 else Head(self._seq, self._digest.decode("ascii", "replace"))

    def feed(self, data: bytes) -> None:
        """Take the next run of whole lines (ending in a newline)."""
        lines = data.split(b"\n")
        lines.pop()  # after the last newline
        seq, digest, in_batch = self._seq, self._digest, self.in_batch
        start = self.lines
        # Runs once per stored event in a compaction: kept flat, no call per line.
        for number, line in enumerate(lines, start + 1):
            if line.startswith(_RECORD) and seq >= 0 and self.sealed is None:
                in_batch = line[-1] == 32
                if in_batch:
                    line = line.rstrip(b" ")
                seq += 1
                if (line[7:line.find(b",", 7)] != b"%d" % seq
                        or line[-SUFFIX_LEN:-DIGEST_HEX - 2] != _SUFFIX_OPEN):
                    raise ArchiveError(f"line {number}: expected record seq {seq}")
                digest = line[-DIGEST_HEX - 2:-2]
                continue
            self._seq, self._digest, self.in_batch, self.lines = seq, digest, in_batch, number
            self._structure(line)
            seq, digest = self._seq, self._digest
        self._seq, self._digest, self.in_batch = seq, digest, in_batch
        self.lines = start + len(lines)

    def _structure(self, line: bytes) -> None:
        """A line that is not a record in the middle: the header, the trailer, or damage."""
        if self.sealed is not None:
            raise ArchiveError(f"line {self.lines}: data after the trailer")
        if self._seq < 0:
            header = parse_header(line)
            if header is None or header.seq + 1 != self.first_seq:
                raise ArchiveError("missing header, or it does not match the file name")
            self._seq, self._digest = header.seq, header.digest.encode()
            return
        sealed = None if self.in_batch else parse_trailer(line)
        if sealed is None:
            raise ArchiveError(f"line {self.lines}: neither a record nor a trailer"
                               + (" (a batch cut short)" if self.in_batch else ""))
        if sealed != self.head:
            raise ArchiveError(f"trailer (seq {sealed.seq}) does not match the last record")
        self.sealed = sealed

    def finish(self) -> Head:
        if self.sealed is None:
            raise ArchiveError("the segment is not sealed (no trailer at its end)")
        return self.sealed


def _cuts(content: bytes | mmap.mmap, member_bytes: int) -> list[tuple[int, int]]:
    """Member spans, cut at line starts from the end backward: every member but the first
    holds at least ``member_bytes`` (so the count stays bounded), and the newest lines,
    which tail reads want, sit in one full member rather than a stub."""
    end = len(content)
    if end and content[end - 1:end] != b"\n":
        raise ArchiveError("the segment does not end with a newline")
    spans = []
    while end > 0:
        start = content.rfind(b"\n", 0, max(end - member_bytes, 0)) + 1
        spans.append((start, end))
        end = start
    spans.reverse()
    return spans


def write_archive(out_fd: int, content: bytes | mmap.mmap, first_seq: int,
                  level: int = DEFAULT_LEVEL) -> ArchiveIndex:
    """Write ``content`` (a whole sealed segment) to ``out_fd`` as an archive.

    ``content`` may be an mmap. Raise ``ArchiveError`` if it is not a clean sealed segment.
    """
    member_bytes = max(MEMBER_BYTES, -(-len(content) // (MAX_MEMBERS - 1)))
    walk = SegmentWalk(first_seq)
    sha = hashlib.sha256()
    u_offs, c_offs, seqs = array("Q"), array("Q"), array("Q")
    digests = []
    written = 0
    for start, end in _cuts(content, member_bytes):
        data = content[start:end]
        head = walk.head or Head(first_seq - 1, "0" * DIGEST_HEX)
        walk.feed(data)
        sha.update(data)
        u_offs.append(start)
        c_offs.append(written)
        seqs.append(head.seq)
        digests.append(bytes.fromhex(head.digest))
        extra = b"" if start else _subfield(_POINTER_TAG, _POINTER.pack(ARCHIVE_VERSION, 0))
        member = _member(data, level, extra)
        _write_all(out_fd, member)
        written += len(member)
    walk.finish()
    # Member 0 was written as the header line's member, before its header existed in
    # the walk: its head is the segment header's, which the walk now knows.
    header = parse_header(content[:content.find(b"\n")])
    assert header is not None
    seqs[0], digests[0] = header.seq, bytes.fromhex(header.digest)
    index = ArchiveIndex(len(content), sha.digest(), u_offs, c_offs, seqs, b"".join(digests), written)
    _write_all(out_fd, _member(b"", 0, _subfield(_INDEX_TAG, index.encode())))
    os.pwrite(out_fd, struct.pack("<Q", written), _POINTER_AT)
    return index


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _extra_field(raw: bytes, tag: bytes) -> bytes | None:
    """The ``tag`` subfield of the gzip member header at the start of ``raw``."""
    if raw[:3] != _GZIP_ID or len(raw) < 12 or not raw[3] & _FEXTRA:
        return None
    (xlen,) = struct.unpack_from("<H", raw, 10)
    extra = raw[12:12 + xlen]
    at = 0
    while at + 4 <= len(extra):
        (length,) = struct.unpack_from("<H", extra, at + 2)
        if extra[at:at + 2] == tag:
            return extra[at + 4:at + 4 + length]
        at += 4 + length
    return None


def read_index(fd: int) -> ArchiveIndex:
    """Read an archive's index: two small reads, at the start and near the end."""
    pointer = _extra_field(os.pread(fd, 32, 0), _POINTER_TAG)
    if pointer is None or len(pointer) != _POINTER.size:
        raise ArchiveError("not an eventlog archive (no index pointer in the first gzip header)")
    version, end = _POINTER.unpack(pointer)
    if version != ARCHIVE_VERSION:
        raise ArchiveError(f"archive format version {version} is not supported")
    if end >= os.fstat(fd).st_size:  # (a flipped high bit made pread raise OverflowError)
        raise ArchiveError("the index pointer points past the end of the file")
    raw = os.pread(fd, 12 + 65535 + 10, end)
    data = _extra_field(raw, _INDEX_TAG)
    if data is None:
        raise ArchiveError("index member missing or damaged")
    index = ArchiveIndex.decode(data, end)
    if index.c_offs[0] != 0 or index.u_offs[0] != 0:
        raise ArchiveError("index does not start at the first member")
    # Offsets out of order would make the reads below ask for negative sizes (EINVAL).
    if any(a >= b for a, b in zip(index.c_offs, [*index.c_offs[1:], end], strict=True)) or any(
            a >= b for a, b in zip(index.u_offs, [*index.u_offs[1:], index.size], strict=True)):
        raise ArchiveError("the index's member offsets are out of order")
    return index


class ArchiveReader:
    """Random access to an archive's uncompressed bytes, inflating only the members read.

    Keeps the last few members inflated, so forward and backward reads in chunks that
    straddle member boundaries inflate each member once. One per reader: not shared.
    """

    __slots__ = ("_cache", "fd", "index", "name", "session_id")

    def __init__(self, fd: int, index: ArchiveIndex, name: str, session_id: str = "") -> None:
        self.fd = fd
        self.index = index
        self.name = name
        self.session_id = session_id
        self._cache: dict[int, bytes] = {}

    @property
    def size(self) -> int:
        return self.index.size

    def member(self, i: int) -> bytes:
        """Member ``i`` inflated; ``CorruptLogError`` if it is damaged."""
        data = self._cache.get(i)
        if data is None:
            try:
                data = self._inflate(i)
            except ArchiveError as exc:
                raise CorruptLogError(f"session {self.session_id!r}, {self.name}: archive {exc}",
                                      session_id=self.session_id, where=self.name) from None
            if len(self._cache) >= 4:
                del self._cache[next(iter(self._cache))]
            self._cache[i] = data
        return data

    def _inflate(self, i: int) -> bytes:
        index = self.index
        count = len(index.u_offs)
        c_end = index.c_offs[i + 1] if i + 1 < count else index.end
        u_end = index.u_offs[i + 1] if i + 1 < count else index.size
        raw = os.pread(self.fd, c_end - index.c_offs[i], index.c_offs[i])
        try:
            # wbits 31: a gzip member, with its CRC-32 and length checked by zlib.
            inflater = zlib.decompressobj(31)
            data = inflater.decompress(raw)
            if not inflater.eof or inflater.unused_data:
                raise zlib.error("member boundaries do not match the index")
        except zlib.error as exc:
            raise ArchiveError(f"member {i} is damaged: {exc}") from None
        if len(data) != u_end - index.u_offs[i]:
            raise ArchiveError(f"member {i} inflates to {len(data)} bytes, "
                               f"the index says {u_end - index.u_offs[i]}")
        return data

    def pread(self, _fd: int, size: int, offset: int) -> bytes:
        """``os.pread`` over the uncompressed bytes (the fd argument is ignored)."""
        index = self.index
        if offset >= index.size or size <= 0:
            return b""
        i = bisect_right(index.u_offs, offset) - 1
        start = offset - index.u_offs[i]
        first = self.member(i)
        if len(first) - start >= size or i + 1 == len(index.u_offs):
            return first[start:start + size]
        parts = [first[start:]]
        got = len(parts[0])
        i += 1
        while got < size and i < len(index.u_offs):
            part = self.member(i)[:size - got]
            parts.append(part)
            got += len(part)
            i += 1
        return b"".join(parts)

    def seek(self, after_seq: int) -> tuple[int, Head]:
        """The uncompressed offset of the last member starting at or before seq
        ``after_seq + 1``, and the chain head just before it."""
        i = max(bisect_right(self.index.seqs, after_seq) - 1, 0)
        return self.index.u_offs[i], self.index.head(i)

    def lines_backward(self) -> Iterator[tuple[int, bytes]]:
        """Like ``_segments.lines_backward``, member by member: a line never spans two."""
        u_offs = self.index.u_offs
        for i in range(len(u_offs) - 1, -1, -1):
            data = self.member(i)
            lines = data.split(b"\n")
            lines.pop()  # after the last newline
            offset = u_offs[i] + len(data)
            for line in reversed(lines):
                offset -= len(line) + 1
                yield offset, line

    def _framing_problems(self) -> list[str]:
        """What inflating does not check in the content members: their headers (MTIME,
        XFL, OS and the pointer are not covered by any CRC) and their final padding bits."""
        index = self.index
        problems = []
        for i, start in enumerate(index.c_offs):
            end = index.c_offs[i + 1] if i + 1 < len(index.c_offs) else index.end
            raw = os.pread(self.fd, end - start, start)
            if i == 0:
                head = _member_header(_subfield(_POINTER_TAG, _POINTER.pack(ARCHIVE_VERSION, index.end)))
            else:
                head = _member_header(b"")
            if not raw.startswith(head):
                problems.append(f"member {i}'s gzip header is damaged")
            elif len(raw) > len(head) + 8 and _padding_set(raw, len(head)):
                problems.append(f"member {i}'s deflate stream ends in damaged padding bits")
        return problems

    def content(self) -> Iterator[bytes]:
        """Every member's bytes in order, for whole-archive passes (not cached);
        ``ArchiveError`` if one is damaged."""
        for i in range(len(self.index.u_offs)):
            yield self._inflate(i)

    def check(self, first_seq: int, file_size: int) -> list[str]:
        """Problems with the archive itself: every member's CRC and length, the content
        hash, and that the index matches the content (re-derived line by line); and every
        byte that gzip does not check: each member's header is exactly what ``_member``
        writes, the index member is exactly the index re-encoded, and no deflate stream
        ends in padding bits that are set (zlib writes zeros; inflating ignores them)."""
        index = self.index
        problems = []
        if file_size != index.end + 12 + 4 + _INDEX_HEAD.size + 40 * len(index.u_offs) + 10:
            problems.append("bytes after the index member, or the index member is damaged")
        elif os.pread(self.fd, file_size - index.end, index.end) != _member(
                b"", 0, _subfield(_INDEX_TAG, index.encode())):
            problems.append("the index member's gzip framing is damaged")
        problems.extend(self._framing_problems())
        walk = SegmentWalk(first_seq)
        sha = hashlib.sha256()
        try:
            for i, data in enumerate(self.content()):
                before = walk.head if i else parse_header(data[:data.find(b"\n")])
                if before is not None and index.head(i) != before:
                    problems.append(f"index entry {i} does not match the chain head before it")
                walk.feed(data)
                sha.update(data)
            walk.finish()
        except ArchiveError as exc:
            problems.append(str(exc))
            return problems
        if sha.digest() != index.sha256:
            problems.append("content does not match the SHA-256 recorded when it was archived")
        return problems
