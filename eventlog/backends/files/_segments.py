"""Reading segment files: forward for replay, backward for the tail.

A segment is one JSONL file of a session's log::

    {"eventlog":1,"session":"s1","first_seq":1,"prev":"<hex>"}   header
    {"seq":1,...,"h":"<hex>"}                                  records
    {"seq":2,...,"h":"<hex>"} ⏎ ...
    {"sealed":9,"h":"<hex>"}                                    trailer, once sealed

A batch of several records is written in one ``write``; every record of it but the
last ends in a space before its newline. A kill can cut a large write between
pages, so a reader treats space-ended records as provisional until the batch's
last record arrives: a batch cut short is a torn tail, never half an append.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...core._codec import Head
from ...core._frames import header_line as header_line  # re-exported: the segment's own lines
from ...core._frames import header_version as header_version
from ...core._frames import parse_header as parse_header
from ...core._frames import parse_trailer as parse_trailer
from ...core._frames import trailer_line as trailer_line

SEGMENT_RE = re.compile(r"seg-(\d{16})\.jsonl(\.gz)?")
"""A segment file's name: plain, or archived (``.gz``, see ``_archive``)."""
CHUNK = 1 << 20
BACK_CHUNK = 1 << 16
_RECORD = b'{"seq":'
BROKEN_BATCH = b"<a batch cut short>"

Pread = Callable[[int, int, int], bytes]
"""``os.pread``, or an archive's reader of its uncompressed bytes (see ``_archive``)."""


def segment_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.jsonl"


def archive_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.jsonl.gz"


@dataclass(slots=True)
class SegmentReader:
    """Reads one segment forward from ``offset``.

    Iterating it yields complete record lines one by one (what writers use); ``chunks``
    yields them in blocks, which replay uses: the records of a block go to the chain
    check as one list (a batch's members once the batch is whole), and only the header
    and what follows a line that is not a record are taken apart line by line.

    After (or during) reading: ``good_end`` is the offset just past the last line
    handed out whole (a batch counts when complete); ``header`` and ``sealed`` hold
    the structural lines met; ``end`` where reading stopped. ``pread`` reads the bytes:
    ``os.pread`` for a plain segment, an ``ArchiveReader``'s for an archived one.
    """

    fd: int
    name: str
    offset: int = 0
    lineno: int = 0
    good_end: int = 0
    header: Head | None = None
    sealed: Head | None = None
    end: int = 0
    _pending: list[tuple[int, int, bytes]] = field(default_factory=list)
    pread: Pread = os.pread
    # Members of a batch whose last record is not read yet (a batch of thousands spans many
    # blocks), like ``_careful``'s pending ones: ``chunks`` hands them out once it ends.
    _held: list[bytes] = field(default_factory=list)
    _held_raw: list[bytes] = field(default_factory=list)  # the same lines as read, space and all

    def _blocks(self) -> Iterator[tuple[int, bytes]]:
        """``(offset, block)``: runs of complete lines, newline included, in file order."""
        pos = self.good_end = self.end = self.offset
        rest = b""
        while True:
            chunk = self.pread(self.fd, CHUNK, pos + len(rest))
            if not chunk:
                return
            buf = rest + chunk if rest else chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf
                continue
            # The bytes after the last newline are read again with the next block: cheaper
            # than joining them to it (a copy of the whole block).
            block, rest = (buf if cut == len(buf) else buf[:cut]), b""
            self.end = pos + cut
            yield pos, block
            pos += cut

    def __iter__(self) -> Iterator[tuple[str, int, bytes]]:
        for pos, block in self._blocks():
            yield from self._careful(block, pos)
            if self.sealed is not None:
                return

    def chunks(self) -> Iterator[tuple[str, int, list[bytes]]]:
        for pos, block in self._blocks():
            if pos == 0:  # the header line: take it apart alone, so the rest can go fast
                cut = block.index(b"\n") + 1
                yield from self._careful_chunks(block[:cut], 0)
                pos, block = cut, block[cut:]
                if not block:
                    continue
            cut = 0 if self._pending else len(block)  # careful inside a batch: it reads it on
            if cut:
                lines = block.split(b"\n")
                lines.pop()  # the empty string after the last newline
                # What ``_careful`` makes of a run of records, in one pass: batch members lose
                # the space they end in. A look at each line costs less than a few scans over
                # the block's bytes would. From the first line that is not a record (a
                # trailer, damage) on, the block goes the careful way.
                records = [line.rstrip(b" ") if line[-1] == 32 else line
                           for line in lines if line.startswith(_RECORD)]
                if len(records) != len(lines):
                    cut = _records_first(lines, records)
                run = self._run(lines, records, pos + cut)
                if run is not None:
                    yield self.name, *run
            if cut < len(block):
                self._hand_over()
                yield from self._careful_chunks(block[cut:], pos + cut)
                if self.sealed is not None:
                    return

    def _run(self, lines: list[bytes], records: list[bytes], end: int
             ) -> tuple[int, list[bytes]] | None:
        """``records`` (read as ``lines``, which end at offset ``end``) after the batch
        members held before them, as ``(first line number, records)``; the members of a
        batch going on past them are held back (``None`` if that is all of them)."""
        held = self._held
        first = self.lineno + 1 - len(held)
        self.lineno += len(lines)
        members = _members_at_end(lines)
        if held:
            held += records
            records = held
        if members == len(lines):
            self._held = records
            self._held_raw += lines
            return None
        self._held = records[len(records) - members:]
        del records[len(records) - members:]
        self._held_raw = lines[len(lines) - members:]
        self.good_end = end - sum(map(len, self._held_raw)) - members
        return first, records

    def _hand_over(self) -> None:
        """Give the batch members held to ``_careful``, as its pending ones."""
        if self._held:
            lineno, end = self.lineno - len(self._held), self.good_end
            for record, raw in zip(self._held, self._held_raw, strict=True):
                lineno += 1
                end += len(raw) + 1
                self._pending.append((lineno, end, record))
            self._held, self._held_raw = [], []

    def _careful_chunks(self, block: bytes, pos: int) -> Iterator[tuple[str, int, list[bytes]]]:
        for source, lineno, line in self._careful(block, pos):
            yield source, lineno, [line]

    def _careful(self, block: bytes, pos: int) -> Iterator[tuple[str, int, bytes]]:
        """One block, line by line: header, trailer, batch framing, garbage."""
        name, pending = self.name, self._pending
        lines = block.split(b"\n")
        lines.pop()
        for line in lines:
            self.lineno += 1
            pos += len(line) + 1
            if line.startswith(_RECORD):
                if line[-1] == 32:  # a record inside a batch: hold until the batch ends
                    pending.append((self.lineno, pos, line.rstrip(b" ")))
                    continue
                if pending:
                    for member_lineno, member_end, member in pending:
                        self.good_end = member_end
                        yield name, member_lineno, member
                    pending.clear()
                self.good_end = pos
                yield name, self.lineno, line
                continue
            if pending:
                # Something other than the batch's last record: the batch never completed.
                yield name, pending[0][0], BROKEN_BATCH
                pending.clear()
            if self.lineno == 1 and (head := parse_header(line)) is not None:
                self.header = head
                self.good_end = pos
            elif (sealed := parse_trailer(line)) is not None:
                self.sealed = sealed
                self.good_end = self.end = pos
                return
            else:
                yield name, self.lineno, line


def _records_first(lines: list[bytes], records: list[bytes]) -> int:
    """Cut ``lines`` and ``records`` (those of them that are records) to the lines before the
    first that is not one; return the length in bytes of what is left of ``lines``."""
    stop = next(i for i, line in enumerate(lines) if not line.startswith(_RECORD))
    del lines[stop:], records[stop:]
    return sum(map(len, lines)) + stop


def _members_at_end(lines: list[bytes]) -> int:
    """How many of ``lines`` at the end are members of a batch going on past them."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index][-1] != 32:
            return len(lines) - 1 - index
    return len(lines)


def lines_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines (each with the offset it starts at) from ``end`` back to the start.

    Bytes after the last newline before ``end`` (a write in flight, or torn) are skipped.
    """
    pos = end
    while pos > 0:  # find the last newline
        size = min(BACK_CHUNK, pos)
        newline = os.pread(fd, size, pos - size).rfind(b"\n")
        if newline >= 0:
            pos = pos - size + newline
            break
        pos -= size
    else:
        return
    # Invariant: a newline stands at ``pos + len(buf)``; ``carry`` ends just before one.
    carry = b""
    while pos > 0:
        size = min(BACK_CHUNK, pos)
        pos -= size
        buf = os.pread(fd, size, pos) + carry
        parts = buf.split(b"\n")
        carry = parts[0]
        offset = pos + len(buf) + 1
        for index in range(len(parts) - 1, 0, -1):
            line = parts[index]
            offset -= len(line) + 1
            yield offset, line
    yield 0, carry
