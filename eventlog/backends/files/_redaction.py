"""Redaction in a file store: the segments (plain or archived) that hold the redacted
records are rewritten whole, atomically, and the snapshots their folds saw are removed.

Only sealed segments are rewritten: an appender of any process may hold the active one
open and write to it, so a rewrite (a new file renamed over it) would take its later
appends with the old file. So a redaction that reaches into the active segment seals it
first, and everything then runs under the session's compaction lock, which ``archive``
and ``delete`` take too. Each rewrite writes a temporary file beside the old one, fsyncs
it, checks it, renames it over the old name and fsyncs the directory: a crash leaves the
old segment or the new one, each a readable session (the chain checks either way).

What this can't reach: a process that opened the old file before the rename reads it
until it closes it, and the file system's freed blocks keep the old bytes until reused.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

from ...core._errors import CorruptLogError, RedactionError
from .._base import Replacement
from ._archive import ArchiveError, ArchiveReader, read_index, write_archive
from ._dirs import unlock_dir
from ._segments import archive_name, segment_name

if TYPE_CHECKING:
    from ._backend import FileBackend

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def redact_segments(backend: FileBackend, session_id: str, replacements: list[Replacement],
                    durable: bool) -> None:
    """``FileBackend.redact`` (see the module docstring)."""
    dirs = backend._dirs
    newest = max(dirs.listing(session_id))
    if max(r.seq for r in replacements) >= newest:
        backend.seal(session_id, durable=True)  # the records now sit in sealed segments only
    dir_fd = dirs.lock_dir(session_id)
    try:
        listing = sorted(dirs.listing(session_id).items())
        groups: dict[int, list[Replacement]] = {}
        for replacement in replacements:
            holders = [first for first, _ in listing if first <= replacement.seq]
            if not holders or holders[-1] == listing[-1][0]:
                raise CorruptLogError(f"session {session_id!r}: no sealed segment holds seq "
                                      f"{replacement.seq}", session_id=session_id,
                                      seq=replacement.seq)
            groups.setdefault(holders[-1], []).append(replacement)
        found = dict(listing)
        # Every new file is written and checked before the first rename: a replacement
        # that does not match refuses the whole redaction with nothing changed.
        staged = []
        for first, group in sorted(groups.items()):
            plain, packed = found[first]
            content = _read(dir_fd, session_id, first, plain)
            content = _replaced(session_id, content, group)
            if plain:
                staged.append((_stage(dir_fd, segment_name(first), content, backend.mode,
                                      None), segment_name(first)))
            if packed:
                staged.append((_stage(dir_fd, archive_name(first), content, backend.mode,
                                      (first, backend.archive_level)), archive_name(first)))
        for temp, name in staged:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
        _drop_snapshots(dir_fd, min(r.seq for r in replacements))
        if durable or staged:
            os.fsync(dir_fd)
    finally:
        unlock_dir(dir_fd)


def _read(dir_fd: int, session_id: str, first: int, plain: bool) -> bytes:
    name = segment_name(first) if plain else archive_name(first)
    fd = os.open(name, os.O_RDONLY | _O_CLOEXEC, dir_fd=dir_fd)
    try:
        if plain:
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        try:
            return b"".join(ArchiveReader(fd, read_index(fd), name, session_id).content())
        except ArchiveError as exc:
            raise CorruptLogError(f"session {session_id!r}, {name}: {exc}",
                                  session_id=session_id, where=name) from None
    finally:
        os.close(fd)


def _replaced(session_id: str, content: bytes, group: list[Replacement]) -> bytes:
    """The segment's bytes with each replacement's line swapped whole (a batch member keeps
    its trailing space)."""
    for seq, old, new in group:
        hits = [content.count(b"\n" + old + end) for end in (b"\n", b" \n")]
        if sum(hits) != 1:
            raise RedactionError(f"session {session_id!r}, seq {seq}: changed meanwhile; nothing "
                                 "was redacted")
        end = b"\n" if hits[0] else b" \n"
        content = content.replace(b"\n" + old + end, b"\n" + new + end)
    return content


def _stage(dir_fd: int, name: str, content: bytes, mode: int,
           archive: tuple[int, int] | None) -> str:
    """Write ``content`` (as an archive when ``archive`` gives its first seq and level) to a
    temporary file beside ``name``, fsynced; return the temporary name."""
    temp = f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        if archive is None:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
        else:
            write_archive(fd, content, archive[0], archive[1])
            if b"".join(ArchiveReader(fd, read_index(fd), name).content()) != content:
                raise CorruptLogError(f"{name}: the rewritten archive does not read back")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp, dir_fd=dir_fd)
        raise
    os.close(fd)
    return temp


def _drop_snapshots(dir_fd: int, first: int) -> None:
    """Snapshots at or after ``first`` folded the erased data (a message's sender)."""
    for name in os.listdir(dir_fd):
        if name.startswith("snap-") and name.endswith(".json") and int(name[5:21]) >= first:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass

