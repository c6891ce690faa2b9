"""Reading a session forward (``scan``: from a seq, or from a position kept from earlier once
it is anchored) and backward (``scan_back``, ``last_seq``), across sealed and archived
segments, without any lock: segments only grow at their end, are sealed before their
successor is made, and are archived before their plain file goes.
"""

from __future__ import annotations

import os
from typing import Any

from ...core._codec import Head, Unparseable, link, parse
from ...core._errors import CorruptLogError, EventLogError
from .._base import Chunks, Lines, Scan
from ._dirs import O_CLOEXEC, Dirs
from ._segments import SEGMENT_RE, SegmentReader, lines_backward, parse_header, parse_trailer, segment_name


def scan(dirs: Dirs, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
    segments = dirs.segments(session_id)
    if not segments:
        raise CorruptLogError(f"session {session_id!r}: no segment files", session_id=session_id)
    firsts = [first for first, _ in segments]
    index = firsts.index(position["segment"]) if (
        position is not None and position.get("seq") == after_seq
        and position.get("segment") in firsts) else -1
    if index >= 0 and _anchored(dirs, session_id, segments[index][1], position):
        assert position is not None
        offset = int(position["offset"])
        start = Head(after_seq, str(position["h"]))
    else:
        index = max((i for i, first in enumerate(firsts) if first <= after_seq + 1), default=0)
        offset, start = _start_of(dirs, session_id, *segments[index], after_seq)
    readers: list[SegmentReader] = []

    def chunks() -> Chunks:
        return _scan_chunks(dirs, session_id, *segments[index], offset, readers)

    def lines() -> Lines:
        for source, lineno, block in chunks():
            for index, line in enumerate(block):
                yield source, lineno + index, line

    def where() -> dict[str, Any] | None:
        if not readers:
            return {"segment": segments[index][0], "offset": offset}
        reader = readers[0]
        if reader.sealed is not None:
            # Read to the trailer but the next segment was not made yet: the position
            # to go on from is the next segment's start. (An offset past the trailer
            # would never see the trailer again, and a follower would stop there.)
            return {"segment": reader.sealed.seq + 1, "offset": 0}
        match = SEGMENT_RE.fullmatch(reader.name)
        assert match is not None
        return {"segment": int(match.group(1)), "offset": readers[0].good_end}

    return Scan(start, lines(), where, chunks())


def _anchored(dirs: Dirs, session_id: str, name: str, position: Any) -> bool:
    """Whether the line that ends at ``position``'s offset carries its digest.

    A position is a hint kept from earlier (a snapshot's, or a reader's cache); the
    session may have been deleted and made again since, or its segment archived.
    Checking the 40 bytes before the offset is enough to trust it; otherwise the
    read starts from the segment's header instead."""
    offset, digest = position.get("offset"), position.get("h")
    if not name.endswith(".jsonl") or type(offset) is not int or type(digest) is not str:
        return False
    try:
        fd = os.open(dirs.dir(session_id) / name, os.O_RDONLY | O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if offset == 0:
            return parse_header(os.pread(fd, 4096, 0).split(b"\n", 1)[0]) == Head(
                position.get("seq"), digest)
        prev = position.get("prev")
        if type(prev) is str:  # re-check the whole newest record against the one before
            last = next(lines_backward(fd, offset), (0, b""))[1].rstrip(b" ")
            try:
                obj, body, stated = parse(last)
            except Unparseable:
                return False
            return (stated == digest and obj["seq"] == position.get("seq")
                    and link(prev, body, dirs.record_version) == digest
                    and os.pread(fd, 1, offset - 1) == b"\n")
        tail = os.pread(fd, 40, max(0, offset - 40))
    finally:
        os.close(fd)
    return (offset >= 40 and tail.endswith(b"\n")
            and tail[:-1].rstrip(b" ").endswith(b'"' + digest.encode() + b'"}'))


def _scan_chunks(dirs: Dirs, session_id: str, first: int, name: str, offset: int,
                 readers: list[SegmentReader]) -> Chunks:
    """Blocks of lines from ``offset`` in segment ``first`` on through the following
    segments while each is sealed; ``readers`` holds the reader in use."""
    # Files are opened only once reading starts, so an unread Scan holds nothing.
    try:
        yield from _scan_segments(dirs, session_id, first, name, offset, readers)
    except EventLogError:
        raise
    except OSError as exc:
        raise dirs.os_error(session_id, exc) from exc


def _scan_segments(dirs: Dirs, session_id: str, first: int, name: str, offset: int,
                   readers: list[SegmentReader]) -> Chunks:
    source = dirs.open_listed(session_id, first, name)
    while True:
        try:
            reader = SegmentReader(source.fd, source.name, offset=offset, pread=source.pread)
            readers[:] = [reader]
            yield from reader.chunks()
            if reader.sealed is None and dirs.later_segments(session_id, first):
                # A sealer writes the trailer before it makes the next segment, so this
                # one is sealed: read on to its trailer (it may have come after we got
                # to the end). Without one the trailer is damaged, and stopping here
                # would quietly hide every later segment.
                reader = SegmentReader(source.fd, source.name, offset=reader.good_end,
                                       pread=source.pread)
                readers[:] = [reader]
                yield from reader.chunks()
                if reader.sealed is None:
                    raise CorruptLogError(
                        f"session {session_id!r}, {source.name}: later segments exist but "
                        "this one has no readable trailer", session_id=session_id,
                        where=source.name)
        finally:
            source.close()
        if reader.sealed is None:
            return  # the active segment
        # The trailer names the next segment: open it directly rather than list the
        # directory, which costs O(segments) per step.
        sealed_first, first = first, reader.sealed.seq + 1
        try:
            source = dirs.open_read(session_id, first)
        except FileNotFoundError:
            # Any segment after this one will do, not only after the one the trailer
            # names: a damaged trailer that names a later seq than it ends at would
            # otherwise hide the real successor, and the read would quietly stop short.
            if not dirs.later_segments(session_id, sealed_first):
                return  # sealed, and its successor not made yet
            try:
                # Made (and maybe sealed, with more after it) between our open and the
                # listing: segments are created whole, so a second look settles it.
                source = dirs.open_read(session_id, first)
            except FileNotFoundError:  # not "not made yet": lost
                raise CorruptLogError(
                    f"session {session_id!r}: {segment_name(first)} is missing, but later "
                    "segments exist", session_id=session_id, seq=first,
                    where=segment_name(first)) from None
        offset = 0


def _start_of(dirs: Dirs, session_id: str, first: int, name: str, after_seq: int) -> tuple[int, Head]:
    """Where to start reading segment ``first`` for the records after ``after_seq``."""
    source = dirs.open_listed(session_id, first, name)
    try:
        if source.archive is not None:
            # Seek by seq: inflate from the member holding ``after_seq + 1`` on.
            return source.archive.seek(after_seq)
        start = parse_header(source.pread(source.fd, 4096, 0).split(b"\n", 1)[0])
    finally:
        source.close()
    if start is None:
        raise CorruptLogError(f"session {session_id!r}, {name}: missing or damaged segment "
                              "header", session_id=session_id, where=name)
    return 0, start


def scan_back(dirs: Dirs, session_id: str) -> Lines:
    try:
        yield from _scan_back(dirs, session_id)
    except EventLogError:
        raise
    except OSError as exc:
        raise dirs.os_error(session_id, exc) from exc


def _scan_back(dirs: Dirs, session_id: str) -> Lines:
    segments = dirs.segments(session_id)
    newest = True
    for first, name in reversed(segments):
        try:
            source = dirs.open_read(session_id, first, name)
        except FileNotFoundError:
            continue
        try:
            for offset, raw in source.backward():
                if newest and raw.endswith(b" "):
                    continue  # the tail of a batch cut short
                newest = False
                if raw.startswith(b'{"seq":'):
                    yield source.name, -offset, raw.rstrip(b" ")
                elif (offset == 0 and parse_header(raw) is not None) or parse_trailer(raw) is not None:
                    continue
                else:
                    yield source.name, -offset, raw
        finally:
            source.close()


def last_seq(dirs: Dirs, session_id: str) -> int | None:
    """The last seq from the newest segment only: its last record, or its header when it is
    empty (just after compaction sealed the rest), without reading into archives. None if
    that segment can't say (the caller reads back further)."""
    segments = dirs.segments(session_id)
    if not segments:
        raise CorruptLogError(f"session {session_id!r}: no segment files", session_id=session_id)
    source = dirs.open_listed(session_id, *segments[-1])
    try:
        for offset, raw in source.backward():
            if raw.startswith(b'{"seq":') and not raw.endswith(b" "):
                try:
                    return int(parse(raw)[0]["seq"])
                except Unparseable:  # a whole record-shaped line: damage, not torn
                    raise CorruptLogError(f"session {session_id!r}, {source.name}: the last "
                                          "record can't be read", session_id=session_id,
                                          where=source.name) from None
            found = parse_trailer(raw) or (parse_header(raw) if offset == 0 else None)
            if found is not None:
                return found.seq
    finally:
        source.close()
    return None
