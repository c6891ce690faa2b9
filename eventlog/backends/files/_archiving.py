"""Archiving a file store's sealed segments: the file operations, and their order.

Each step leaves a readable session if the process dies right after it: (1) a
temporary archive beside the segment, fsynced, then inflated again and compared byte
for byte with the segment; (2) its rename to ``seg-<first>.jsonl.gz`` and an fsync of
the directory (the segment now has two equal copies; readers use either); (3) the
unlink of the plain segment. A later run finishes what a dead one started: it removes
archive temporaries (only ever made under the compaction lock, so any found is dead)
and unlinks a plain segment whose archive proves equal.
"""

from __future__ import annotations

import mmap
import os
import time
import uuid

from ...core._errors import CorruptLogError, EventLogError, StorageError
from .._base import Archived
from ._archive import ArchiveError, ArchiveReader, read_index, write_archive
from ._dirs import Dirs, unlock_dir
from ._segments import archive_name, segment_name

STALE_TEMP_SECONDS = 3600.0
"""A temporary file of an atomic write (snapshot, new segment) older than this was left
by a process that died mid-write; a live writer renames its temp within milliseconds."""
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def archive_sealed_segments(dirs: Dirs, session_id: str, level: int) -> Archived:
    """``FileBackend.archive``: every sealed segment but the newest, one at a time, each
    under the session's compaction lock (which ``delete`` takes too), at zlib ``level``."""
    listing = sorted(dirs.listing(session_id).items())
    # Never the newest segment: it is the one appenders write, or (sealed by a process
    # that died before making its successor) the one the next appender continues from.
    todo = [first for first, (plain, _) in listing[:-1] if plain]
    segments = before = after = 0
    swept = False
    for first in todo:
        dir_fd = dirs.lock_dir(session_id)
        try:
            if not swept:
                _sweep_temps(dir_fd)
                swept = True
            done = _archive_segment(dirs, session_id, dir_fd, first, level)
        except EventLogError:
            raise
        except OSError as exc:
            raise StorageError(f"session {session_id!r}: can't archive "
                               f"{segment_name(first)}: {exc}") from exc
        finally:
            unlock_dir(dir_fd)
        if done is not None:
            segments += 1
            before += done[0]
            after += done[1]
    return Archived(segments, before, after)


def _archive_segment(dirs: Dirs, session_id: str, dir_fd: int, first: int,
                     level: int) -> tuple[int, int] | None:
    """Archive one sealed segment, holding the compaction lock (steps: module doc)."""
    plain, name = segment_name(first), archive_name(first)
    try:
        src = os.open(plain, os.O_RDONLY | _O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None  # archived meanwhile by another process
    try:
        size = os.fstat(src).st_size
        if size == 0:
            raise CorruptLogError(f"session {session_id!r}, {plain}: empty segment file",
                                  session_id=session_id, where=plain)
        with mmap.mmap(src, size, prot=mmap.PROT_READ) as content:
            try:
                twin = os.open(name, os.O_RDONLY | _O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                archived = _write_archive(dirs, session_id, dir_fd, first, content, level)
            else:
                # A compactor died between rename and unlink: finish its work, but
                # only if the archive really holds the segment's bytes.
                try:
                    archived = os.fstat(twin).st_size
                    _check_archive(session_id, twin, name, content)
                finally:
                    os.close(twin)
    finally:
        os.close(src)
    os.unlink(plain, dir_fd=dir_fd)
    return size, archived


def _write_archive(dirs: Dirs, session_id: str, dir_fd: int, first: int,
                   content: mmap.mmap, level: int) -> int:
    name = archive_name(first)
    temp = f".{name}.{uuid.uuid4().hex}.tmp"
    out = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, dirs.mode, dir_fd=dir_fd)
    try:
        try:
            write_archive(out, content, first, level)
        except ArchiveError as exc:
            raise CorruptLogError(f"session {session_id!r}, {segment_name(first)}: can't "
                                  f"archive it: {exc}", session_id=session_id,
                                  where=segment_name(first)) from None
        os.fsync(out)
        _check_archive(session_id, out, name, content)
        written = os.fstat(out).st_size
    except BaseException:
        os.close(out)
        os.unlink(temp, dir_fd=dir_fd)
        raise
    os.close(out)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    # The archive's name must be durable before the plain file's can go.
    os.fsync(dir_fd)
    return written


def _check_archive(session_id: str, fd: int, name: str, content: mmap.mmap) -> None:
    """Inflate the archive and compare it byte for byte with the segment."""
    def bad(why: str) -> CorruptLogError:
        return CorruptLogError(f"session {session_id!r}, {name}: {why}; the segment was "
                               "left as it is", session_id=session_id, where=name)

    try:
        reader = ArchiveReader(fd, read_index(fd), name, session_id)
        at = 0
        for data in reader.content():
            if content[at:at + len(data)] != data:
                raise bad(f"archive differs from the segment at byte {at}")
            at += len(data)
    except ArchiveError as exc:
        raise bad(f"archive unreadable: {exc}") from None
    if at != len(content):
        raise bad("archive is shorter than the segment")


def _sweep_temps(dir_fd: int) -> None:
    """Remove temporary files left by processes that died mid-write. Archive temps are
    only made under the compaction lock, which the caller holds, so any found is
    dead; other temps (snapshots, new segments) only once they are old."""
    now = time.time()
    for name in os.listdir(dir_fd):
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            age = now - os.stat(name, dir_fd=dir_fd).st_mtime
            if ".jsonl.gz." not in name and age < STALE_TEMP_SECONDS:
                continue
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
