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
from dataclasses import dataclass

import orjson

from ._codec import Head

SEGMENT_RE = re.compile(r"seg-(\d{16})\.jsonl(\.gz)?")
"""A segment file's name: plain, or archived (``.gz``, see ``_archive``)."""
CHUNK = 1 << 20
BACK_CHUNK = 1 << 16
_RECORD = b'{"seq":'
_HEADER = b'{"eventlog":'
_TRAILER = b'{"sealed":'
BROKEN_BATCH = b"<a batch cut short>"

Pread = Callable[[int, int, int], bytes]
"""``os.pread``, or an archive's reader of its uncompressed bytes (see ``_archive``)."""


def segment_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.jsonl"


def archive_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.jsonl.gz"


def header_line(session_id: str, start: Head) -> bytes:
    return orjson.dumps({"eventlog": 1, "session": session_id, "first_seq": start.seq + 1,
                         "prev": start.digest})


def trailer_line(head: Head) -> bytes:
    return orjson.dumps({"sealed": head.seq, "h": head.digest})


def parse_header(line: bytes) -> Head | None:
    """The head before a segment's first record, from its header line."""
    if not line.startswith(_HEADER):
        return None
    try:
        obj = orjson.loads(line)
        return Head(int(obj["first_seq"]) - 1, str(obj["prev"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def parse_trailer(line: bytes) -> Head | None:
    if not line.startswith(_TRAILER):
        return None
    try:
        obj = orjson.loads(line)
        return Head(int(obj["sealed"]), str(obj["h"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class SegmentReader:
    """Reads one segment forward from ``offset``, yielding complete record lines.

    After (or during) iteration: ``good_end`` is the offset just past the last line
    yielded whole (a batch counts when complete); ``header`` and ``sealed`` hold the
    structural lines met; ``end`` where reading stopped. ``pread`` reads the bytes:
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
    pread: Pread = os.pread

    def __iter__(self) -> Iterator[tuple[str, int, bytes]]:
        fd, name = self.fd, self.name
        pos = self.offset
        self.good_end = pos
        lineno = self.lineno
        rest = b""
        pending: list[tuple[int, int, bytes]] = []
        read = self.pread
        while True:
            chunk = read(fd, CHUNK, pos + len(rest))
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                lineno += 1
                pos += len(line) + 1
                if line.startswith(_RECORD):
                    if line[-1] == 32:  # a record inside a batch: hold until the batch ends
                        pending.append((lineno, pos, line.rstrip(b" ")))
                        continue
                    if pending:
                        for member_lineno, member_end, member in pending:
                            self.good_end = member_end
                            yield name, member_lineno, member
                        pending.clear()
                    self.good_end = pos
                    yield name, lineno, line
                    continue
                if pending:
                    # Something other than the batch's last record: the batch never completed.
                    yield name, pending[0][0], BROKEN_BATCH
                    pending.clear()
                if lineno == 1 and (head := parse_header(line)) is not None:
                    self.header = head
                    self.good_end = pos
                elif (sealed := parse_trailer(line)) is not None:
                    self.sealed = sealed
                    self.good_end = pos
                    self.end = pos
                    self.lineno = lineno
                    return
                else:
                    yield name, lineno, line
        self.end = pos
        self.lineno = lineno


def lines_backward(fd: int, end: int, pread: Pread = os.pread) -> Iterator[tuple[int, bytes]]:
    """Complete lines (each with the offset it starts at) from ``end`` back to the start.

    Bytes after the last newline before ``end`` (a write in flight, or torn) are skipped.
    """
    pos = end
    while pos > 0:  # find the last newline
        size = min(BACK_CHUNK, pos)
        newline = pread(fd, size, pos - size).rfind(b"\n")
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
        buf = pread(fd, size, pos) + carry
        parts = buf.split(b"\n")
        carry = parts[0]
        offset = pos + len(buf) + 1
        for index in range(len(parts) - 1, 0, -1):
            line = parts[index]
            offset -= len(line) + 1
            yield offset, line
    yield 0, carry
