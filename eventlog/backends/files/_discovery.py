"""Where a session's log ends, read from the files by the holder of its lock: catching up
with what other processes appended, finding the active segment and its last record from
scratch, cutting a torn tail aside, and following a sealed segment to its successor.

Every function here runs under the session's lock on a handle whose head it moves; ``sync``
is the way in, and runs as one ``Handle.transition`` (see ``_handle``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from ...core._codec import ChainReader, Head, Unparseable, link, looks_like_record, parse
from ...core._errors import CorruptLogError
from ._dirs import O_CLOEXEC, Dirs
from ._handle import Handle
from ._segments import (
    SegmentReader,
    archive_name,
    header_line,
    lines_backward,
    parse_header,
    parse_trailer,
    segment_name,
)


def sync(dirs: Dirs, session_id: str, handle: Handle, durable: bool) -> Head:
    """Bring the handle's view of the active segment up to date, under the lock."""
    with handle.transition():
        if handle.head is not None and handle.seg_fd >= 0:
            found = os.fstat(handle.seg_fd)
            size = found.st_size if found.st_nlink else -1  # unlinked: no longer in the store
            if size == handle.size:
                return handle.head
            if size > handle.size:
                # Read what other processes appended since we last looked.
                return _read_forward(dirs, session_id, handle, handle.head, handle.size, durable)
        return _discover(dirs, session_id, handle, durable)


def next_segment(dirs: Dirs, session_id: str, handle: Handle, sealed: Head, durable: bool) -> Head:
    """Move the handle to the segment after one sealed at ``sealed``, making it if the
    sealer died between its trailer and the new segment."""
    first = sealed.seq + 1
    directory = dirs.dir(session_id)
    if not (directory / segment_name(first)).exists():
        if (directory / archive_name(first)).exists():
            # Our view is more than a segment behind: the next one is sealed and
            # archived already. Creating it again would fork the log; start afresh.
            return _discover(dirs, session_id, handle, durable)
        # A sealer that died between trailer and new segment left this to us.
        dirs.write_atomic(directory, segment_name(first),
                          header_line(session_id, sealed, dirs.record_version) + b"\n", durable=durable)
    try:
        _open_segment(dirs, session_id, handle, first)
    except FileNotFoundError:
        return _discover(dirs, session_id, handle, durable)  # archived since we looked
    # Another process may have got here first and appended already.
    return _read_forward(dirs, session_id, handle, sealed, 0, durable)


def _open_segment(dirs: Dirs, session_id: str, handle: Handle, first: int) -> None:
    if handle.seg_fd >= 0:
        os.close(handle.seg_fd)
        handle.seg_fd = -1
    path = dirs.dir(session_id) / segment_name(first)
    handle.seg_fd = os.open(path, os.O_RDWR | os.O_APPEND | O_CLOEXEC)
    handle.seg_first = first


def _read_forward(dirs: Dirs, session_id: str, handle: Handle, start: Head, offset: int,
                  durable: bool) -> Head:
    name = segment_name(handle.seg_first)
    reader = SegmentReader(handle.seg_fd, name, offset=offset, lineno=-1 if offset else 0)
    chain = ChainReader(session_id, start, dirs.record_version)
    for _ in chain.read(reader):
        pass
    if offset == 0 and reader.header != start:
        raise CorruptLogError(f"session {session_id!r}, {name}: header does not continue "
                              "the previous segment", session_id=session_id, where=name)
    handle.know(chain.head, reader.good_end)
    if reader.sealed is not None:
        if reader.sealed != chain.head:
            raise CorruptLogError(f"session {session_id!r}, {name}: trailer does not match "
                                  "the last record", session_id=session_id, where=name)
        return next_segment(dirs, session_id, handle, reader.sealed, durable)
    _cut_torn_tail(dirs, session_id, handle, durable)
    return chain.head


def _discover(dirs: Dirs, session_id: str, handle: Handle, durable: bool) -> Head:
    """Find the active segment and its head from scratch, reading from the end."""
    segments = dirs.segments(session_id)
    if not segments:
        raise CorruptLogError(f"session {session_id!r}: no segment files",
                              session_id=session_id)
    first, name = segments[-1]
    if name != segment_name(first):
        return _follow_archive(dirs, session_id, handle, first, durable)
    _open_segment(dirs, session_id, handle, first)
    end = os.fstat(handle.seg_fd).st_size
    newest: tuple[dict[str, Any], bytes, str, int] | None = None
    for offset, raw in lines_backward(handle.seg_fd, end):
        line = raw.rstrip(b" ")
        if newest is None:
            if raw.endswith(b" ") or not looks_like_record(line):
                sealed = parse_trailer(raw)
                if sealed is not None:
                    handle.know(sealed, offset + len(raw) + 1)
                    return next_segment(dirs, session_id, handle, sealed, durable)
                header = parse_header(raw) if offset == 0 else None
                if header is not None:
                    handle.know(header, offset + len(raw) + 1)
                    break
                continue  # torn: a cut batch, garbage or NUL bytes after the last record
            try:
                obj, body, digest = parse(line)
            except Unparseable:
                # A whole record that can't be read is damage, not a torn tail: cutting
                # it off would drop an acknowledged event (see looks_like_record).
                raise CorruptLogError(
                    f"session {session_id!r}, {name} byte {offset}: the last record can't be "
                    "read; refusing to append to a damaged log", session_id=session_id,
                    where=name) from None
            newest = (obj, body, digest, offset + len(raw) + 1)
            continue
        obj, body, digest, newest_end = newest
        if offset == 0:
            before = parse_header(raw)
        else:
            try:
                prev_obj, _, prev_digest = parse(line)
                before = Head(prev_obj["seq"], prev_digest)
            except Unparseable:
                before = None
        if (before is None or obj["seq"] != before.seq + 1
                or link(before.digest, body, dirs.record_version) != digest):
            raise CorruptLogError(
                f"session {session_id!r}, {name}: the last record (seq {obj.get('seq')}) "
                "does not follow the one before it; refusing to append to a damaged log",
                session_id=session_id, seq=obj.get("seq"), where=name)
        handle.know(Head(obj["seq"], digest), newest_end)
        break
    else:
        raise CorruptLogError(f"session {session_id!r}, {name}: no header and no records",
                              session_id=session_id, where=name)
    _cut_torn_tail(dirs, session_id, handle, durable)
    assert handle.head is not None
    return handle.head


def _cut_torn_tail(dirs: Dirs, session_id: str, handle: Handle, durable: bool) -> None:
    end = os.fstat(handle.seg_fd).st_size
    if end <= handle.size:
        return
    torn = os.pread(handle.seg_fd, end - handle.size, handle.size)
    name = f"quarantine-{time.time_ns()}-{segment_name(handle.seg_first)}.bin"
    dirs.write_new(dirs.dir(session_id) / name, torn, durable=True)
    os.ftruncate(handle.seg_fd, handle.size)
    if durable:
        os.fsync(handle.seg_fd)


def _follow_archive(dirs: Dirs, session_id: str, handle: Handle, first: int, durable: bool) -> Head:
    """The newest segment is archived, so it is sealed, and the process that sealed it
    died before making its successor (archiving normally skips the newest segment)."""
    source = dirs.open_read(session_id, first)
    try:
        for _offset, raw in source.backward():
            sealed = parse_trailer(raw)
            if sealed is not None:
                break
        else:
            sealed = None
    finally:
        source.close()
    if sealed is None:
        raise CorruptLogError(f"session {session_id!r}, {source.name}: archived but not sealed",
                              session_id=session_id, where=source.name)
    return next_segment(dirs, session_id, handle, sealed, durable)
