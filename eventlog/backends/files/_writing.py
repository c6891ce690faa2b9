"""Writing a session's segments under its lock: creating a session, the slow path of an
append (finding the head, sealing a full segment first), writing records at the end of the
active segment and undoing a failed write, sealing, and the fsync after the lock is let go.

The common case of an append (``FileBackend.append_one``) is one flat function in
``_backend``; it falls back on ``head_for_append`` here for anything unusual.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ...core._codec import Head, Record, genesis
from ...core._errors import SessionExistsError, StorageError
from ._dirs import O_CLOEXEC, Dirs, fsync_dir, write_all
from ._discovery import next_segment, sync
from ._handle import LIFE_AT, SHARED_BYTES, Handle
from ._names import ID_FILE, is_long
from ._segments import header_line, segment_name, trailer_line


def create(dirs: Dirs, session_id: str, record: Record, *, durable: bool) -> None:
    """A session directory appears whole: built under a hidden name, then renamed."""
    def fill(temp: Path) -> None:
        segment = (header_line(session_id, genesis(session_id), dirs.record_version) + b"\n"
                   + record.line + b"\n")
        # The page is published from the start (generation 2, the first segment, its
        # size, seq 1 and its digest), as the first append would publish it: so the
        # head of a session nobody appended to is known without reading its log (the
        # catalog relies on it: _catalog.py). Written before the directory appears.
        _write_page(dirs, temp, 1, len(segment), Head(1, record.digest), durable)
        dirs.write_new(temp / segment_name(1), segment, durable=durable)

    _make(dirs, session_id, fill, durable)


def create_log(dirs: Dirs, session_id: str, batches: Iterable[list[Record]], *, durable: bool,
               limits: tuple[int, int]) -> dict[str, Any]:
    """A session whose whole log is ``batches`` (a fork's copy), written as an appender
    would have left it (segments sealed at ``limits``), its page published, and the
    directory renamed into place at once; the position after the last record."""
    position: dict[str, Any] = {}

    def fill(temp: Path) -> None:
        first, size, head = _write_segments(dirs, temp, session_id, batches, durable, limits)
        _write_page(dirs, temp, first, size, head, durable)
        position.update(segment=first, offset=size, seq=head.seq, h=head.digest)

    _make(dirs, session_id, fill, durable)
    return position


def _make(dirs: Dirs, session_id: str, fill: Callable[[Path], None], durable: bool) -> None:
    final = dirs.dir(session_id)
    if final.exists():
        raise SessionExistsError(session_id)
    temp = dirs.root / f".creating-{uuid.uuid4().hex}"
    try:
        os.mkdir(temp, dirs.dir_mode)
        try:
            if is_long(final.name):  # the name can't say the id: the id file does
                dirs.write_new(temp / ID_FILE, session_id.encode("utf-8"), durable=durable)
            fill(temp)
            if durable:
                fsync_dir(temp)
            os.rename(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise SessionExistsError(session_id) from None
        raise StorageError(exc.errno, f"can't create session {session_id!r}: {exc}") from exc
    if durable:
        fsync_dir(dirs.root)


def _write_page(dirs: Dirs, temp: Path, first: int, size: int, head: Head, durable: bool) -> None:
    page = struct.pack("<QQQQ", 2, first, size, head.seq) + bytes.fromhex(head.digest)
    dirs.write_new(temp / "lock", page + os.urandom(SHARED_BYTES - LIFE_AT), durable=durable)


def _write_segments(dirs: Dirs, temp: Path, session_id: str,
                    batches: Iterable[list[Record]], durable: bool,
                    limits: tuple[int, int]) -> tuple[int, int, Head]:
    """The segments of ``batches`` in ``temp``: each sealed where an appender would have
    sealed it (``head_for_append``); the active one's first seq and size, and the head."""
    head = genesis(session_id)
    first, size = 1, 0
    fd = -1
    try:
        for batch in batches:
            out: list[bytes] = []
            for record in batch:
                if fd < 0 or (head.seq >= first and (size >= limits[0]
                                                     or head.seq - first + 1 >= limits[1])):
                    if fd >= 0:
                        out.append(trailer_line(head) + b"\n")
                        write_all(fd, b"".join(out))
                        out = []
                        if durable:
                            os.fsync(fd)
                        os.close(fd)
                    first = head.seq + 1
                    fd = os.open(temp / segment_name(first),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, dirs.mode)
                    out.append(header_line(session_id, head, dirs.record_version) + b"\n")
                    size = len(out[0])
                line = record.line + b"\n"
                out.append(line)
                size += len(line)
                head = Head(record.seq, record.digest)
            write_all(fd, b"".join(out))
        if durable:
            os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    return first, size, head


def head_for_append(dirs: Dirs, session_id: str, handle: Handle, exact: bool, durable: bool,
                    limits: tuple[int, int]) -> Head:
    """Under the lock: the head to append after, with the active segment sealed first if
    full (``limits``: the segment's most bytes and events)."""
    if handle.poisoned:
        handle.check_poisoned(session_id)
    if exact:
        head = handle.head
    else:
        head = sync(dirs, session_id, handle, durable)  # from the files, then published
        handle.publish()
    assert head is not None
    if handle.size >= limits[0] or head.seq - handle.seg_first + 1 >= limits[1]:
        head = seal_full(dirs, session_id, handle, durable)
    return head


def seal_full(dirs: Dirs, session_id: str, handle: Handle, durable: bool) -> Head:
    """Seal the full active segment before an append writes: then everything that can
    fail does so before a record is written, and an append that raises has written
    nothing. (Sealing after the write raised for appends that were stored, and a
    half-done seal let the next append go after a trailer.)"""
    handle.begin()
    head = seal(dirs, session_id, handle, durable)
    handle.publish()
    return head


def seal(dirs: Dirs, session_id: str, handle: Handle, durable: bool) -> Head:
    """Write the trailer after the handle's head and move on to the next segment. If this
    fails the trailer may or may not be there: the transition forgets the head, so the
    next writer finds out afresh rather than write a second trailer (or records after
    the first)."""
    with handle.transition():
        assert handle.head is not None
        write_at_end(session_id, handle, trailer_line(handle.head) + b"\n",
                     failed=f"sealing segment {handle.seg_first}")
        if durable:
            os.fsync(handle.seg_fd)
        return next_segment(dirs, session_id, handle, handle.head, durable)


def write_records(session_id: str, handle: Handle, records: list[Record], durable: bool) -> int:
    """Write an append's records in one write; return a descriptor to fsync (or -1)."""
    data = (records[0].line + b"\n" if len(records) == 1 else
            b" \n".join([r.line for r in records]) + b"\n")
    sync_fd = os.dup(handle.seg_fd) if durable else -1  # before the write: see seal_full
    handle.begin()
    try:
        write_at_end(session_id, handle, data)
    except BaseException:
        if sync_fd >= 0:
            os.close(sync_fd)
        raise
    return sync_fd


def write_at_end(session_id: str, handle: Handle, data: bytes, done: int = 0, *,
                 failed: str = "") -> None:
    """Write ``data`` (of which ``done`` bytes already are) at the end of the segment;
    ``failed`` names what the write was for, if not an append (see ``write_failed``)."""
    try:
        if done:
            write_all(handle.seg_fd, memoryview(data)[done:])
        else:
            write_all(handle.seg_fd, data)
    except OSError as exc:
        raise write_failed(session_id, handle, exc, failed) from exc
    handle.size += len(data)


def write_failed(session_id: str, handle: Handle, exc: OSError, failed: str = "") -> StorageError:
    """The error of a write at the end of the segment, after undoing its part: an append's
    ("nothing appended"), or ``failed``'s, the operation it was for (a seal, which a
    compaction makes: "nothing appended" named an append nobody asked for)."""
    # Undo the part that made it, so the log ends at its last good record. If even
    # that fails, the cut bytes are a torn tail the next writer quarantines: a cut
    # batch never counts, because its last record is what completes it.
    try:
        os.ftruncate(handle.seg_fd, handle.size)
    except OSError:
        handle.forget()
    what = f"write failed {failed}, left as it was" if failed else "write failed, nothing appended"
    return StorageError(exc.errno, f"session {session_id!r}: {what}: {exc.strerror or exc}")


def fsync_appended(session_id: str, handle: Handle, sync_fd: int) -> None:
    # Outside the lock, so concurrent durable appenders share journal commits.
    try:
        os.fsync(sync_fd)
    except OSError as exc:
        # After a failed fsync the kernel may have dropped the dirty pages; a later
        # fsync could then "succeed" without them. Refuse writes from now on, and
        # make the next append look at the files (where the check lives).
        handle.poison()
        raise StorageError(exc.errno, f"session {session_id!r}: fsync failed: {exc}; the append "
                           "may not be durable and this session is now read-only "
                           "for this store") from exc
    finally:
        os.close(sync_fd)
