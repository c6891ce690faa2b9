"""The store's directory tree: where each session's files are, and the small file operations
every part of the file backend shares (listing segments, opening one to read, atomic writes,
the per-session compaction lock).

``Dirs`` holds only what never changes after the store is opened (its root, the file modes
and the lock timeout), so the modules that read, write, check and archive a session take one
and never the ``FileBackend`` itself: they sit below it, and it composes them.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ...core._codec import FORMAT_VERSION
from ...core._errors import CorruptLogError, EventLogError, SessionNotFoundError, StorageError
from ._archive import ArchiveError, ArchiveReader, read_index
from ._lock import acquire_flock, release_flock
from ._names import dir_name, legacy_name
from ._segments import SEGMENT_RE, Pread, archive_name, lines_backward, segment_name

T = TypeVar("T")

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def dir_mode(mode: int) -> int:
    # Give directories search permission wherever the files are readable.
    return mode | ((mode & 0o444) >> 2)


@dataclass(slots=True)
class Source:
    """A segment opened for reading: plain, or archived and read through its index."""

    fd: int
    name: str
    size: int
    pread: Pread
    archive: ArchiveReader | None = None

    def backward(self) -> Iterator[tuple[int, bytes]]:
        """Complete lines from the end back, each with the offset it starts at."""
        if self.archive is not None:
            return self.archive.lines_backward()  # inflating only the members reached
        return lines_backward(self.fd, self.size)

    def close(self) -> None:
        os.close(self.fd)


class Dirs:
    """The store's root and how its files are made; one per ``FileBackend``."""

    __slots__ = ("dir_mode", "lock_timeout", "mode", "record_version", "root")

    def __init__(self, root: Path, mode: int, lock_timeout: float) -> None:
        self.root = root
        self.mode = mode
        self.dir_mode = dir_mode(mode)
        self.lock_timeout = lock_timeout
        # The store's record format (see Backend.record_version), set from its marker.
        self.record_version = FORMAT_VERSION

    def dir(self, session_id: str) -> Path:
        # A store written before issue 15 may hold this id under its legacy name (_names.py).
        legacy = legacy_name(session_id)
        if legacy is not None and os.path.isdir(self.root / legacy):
            return self.root / legacy
        return self.root / dir_name(session_id)

    def exists(self, session_id: str) -> bool:
        # The directory, not its lock file: a session appears whole (its directory renamed
        # into place with the lock inside) and leaves whole (renamed away before ``delete``
        # unlinks the lock), so the two differ only when the lock was removed behind the
        # store's back; that session is listed and its log reads, so it exists, damaged
        # (``lock_missing``).
        return os.path.isdir(self.dir(session_id))

    def lock_missing(self, session_id: str) -> EventLogError:
        """What to raise when the session's lock file can't be found: the session is gone,
        or (its directory still there without one) damaged.

        No writer recreates a missing lock, even under the directory lock (which keeps a
        ``delete`` out): a process that opened the lock before it was removed still holds
        its inode, and its fast append path takes the flock on that inode and checks the
        page and the segment, never the name. A recreated lock would be a second lock, and
        two writers would append to one segment at once. The page is also the only witness
        of the head the store acknowledged (``_recorded``): a new, empty one would vouch
        for a log that lost its end. So verify reports it and writes are refused until
        someone who knows no process has the store open recreates it (see the README)."""
        if self.lockless(session_id):
            return self.lock_damage(session_id)
        # Gone; or deleted and created anew since the caller looked (the new life has its
        # lock): the session the caller was working on is gone either way.
        return SessionNotFoundError(session_id)

    @staticmethod
    def lock_damage(session_id: str) -> CorruptLogError:
        return CorruptLogError(
            f"session {session_id!r}: its lock file is missing (its log reads, but nothing "
            "writes to it until the lock is recreated: see the README's lock page)",
            session_id=session_id, where="lock")

    def lockless(self, session_id: str) -> bool:
        """Whether the directory at the session's name holds no lock file: damage.

        Asked of one directory, opened once: by path, "no lock" then "a directory" can be
        two lives of the id (deleted between the two looks, then created anew), and a store
        that verifies would be reported damaged. A directory is at the name with its lock
        from its rename into place until ``delete`` renames it away, so one seen at the name
        both before and after its lock was found missing lost the lock to someone else."""
        path = self.dir(session_id)
        try:
            fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            os.stat("lock", dir_fd=fd)
            return False
        except FileNotFoundError:
            return _same_dir(fd, path)
        finally:
            os.close(fd)

    def os_error(self, session_id: str, exc: OSError) -> EventLogError:
        """An OS error out of a session's files as an eventlog error: a file that vanished
        with its session is that session's not-found error."""
        if isinstance(exc, FileNotFoundError) and not self.exists(session_id):
            return SessionNotFoundError(session_id)  # deleted while we read it
        return StorageError(exc.errno, f"session {session_id!r}: {exc}")

    # Listing and opening segments --------------------------------------------------------

    def listing(self, session_id: str) -> dict[int, tuple[bool, bool]]:
        """Each segment's first seq: (plain file exists, archive exists)."""
        try:
            names = os.listdir(self.dir(session_id))
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        found: dict[int, tuple[bool, bool]] = {}
        for name in names:
            match = SEGMENT_RE.fullmatch(name)
            if match:
                first = int(match.group(1))
                plain, archived = found.get(first, (False, False))
                found[first] = (True, archived) if match.group(2) is None else (plain, True)
        return found

    def segments(self, session_id: str) -> list[tuple[int, str]]:
        """Segments in order, each by the name to read it under. Both names exist only
        between an archive's rename and the plain file's unlink (or after a crash
        there); both hold the same bytes, and the plain one is cheaper to read."""
        return [(first, segment_name(first) if plain else archive_name(first))
                for first, (plain, _) in sorted(self.listing(session_id).items())]

    def read_lock_file(self, session_id: str, read: Callable[[int], T]) -> T:
        """``read`` of the session's lock file, open read-only (its page, its inode): no
        lock taken, nothing created; ``lock_missing``'s error when it is gone."""
        try:
            fd = os.open(self.dir(session_id) / "lock", os.O_RDONLY | O_CLOEXEC)
        except FileNotFoundError:
            raise self.lock_missing(session_id) from None
        try:
            return read(fd)
        finally:
            os.close(fd)

    def later_segments(self, session_id: str, first: int) -> bool:
        """Whether segments after segment ``first`` exist (a listing: only at the end of a scan)."""
        return any(other > first for other in self.listing(session_id))

    def open_read(self, session_id: str, first: int, name: str | None = None) -> Source:
        """Open segment ``first`` for reading under ``name`` (plain by default), or as its
        archive if the plain file was archived and unlinked since the listing.
        ``FileNotFoundError`` if neither exists (the session was deleted)."""
        directory = self.dir(session_id)
        if name is None or name == segment_name(first):
            try:
                fd = os.open(directory / segment_name(first), os.O_RDONLY | O_CLOEXEC)
                return Source(fd, segment_name(first), os.fstat(fd).st_size, os.pread)
            except FileNotFoundError:
                pass
        name = archive_name(first)
        fd = os.open(directory / name, os.O_RDONLY | O_CLOEXEC)
        try:
            reader = ArchiveReader(fd, read_index(fd), name, session_id)
        except (ArchiveError, OSError) as exc:
            os.close(fd)
            raise CorruptLogError(f"session {session_id!r}, {name}: unreadable archive: {exc}",
                                  session_id=session_id, where=name) from None
        return Source(fd, name, reader.size, reader.pread, reader)

    def open_listed(self, session_id: str, first: int, name: str) -> Source:
        """``open_read`` for a segment a listing showed: gone means deleted, or lost."""
        try:
            return self.open_read(session_id, first, name)
        except FileNotFoundError:
            if not self.exists(session_id):
                raise SessionNotFoundError(session_id) from None
            raise CorruptLogError(f"session {session_id!r}: segment {name} vanished",
                                  session_id=session_id, where=name) from None

    # Writing files -----------------------------------------------------------------------

    def write_new(self, path: Path, data: bytes, *, durable: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, self.mode)
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def write_atomic(self, directory: Path, name: str, data: bytes, *, durable: bool) -> None:
        temp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            self.write_new(temp, data, durable=durable)
            os.rename(temp, directory / name)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        if durable:
            fsync_dir(directory)

    # The compaction lock -----------------------------------------------------------------

    def lock_dir(self, session_id: str) -> int:
        """Open the session's directory and take its flock, the compaction lock; return
        the descriptor for ``unlock_dir``. Lock order: this one, then the append lock."""
        while True:
            try:
                fd = os.open(self.dir(session_id), os.O_RDONLY | _O_DIRECTORY | O_CLOEXEC)
            except FileNotFoundError:
                raise SessionNotFoundError(session_id) from None
            try:
                acquire_flock(fd, self.lock_timeout, f"session {session_id!r} (compaction lock)")
            except BaseException:
                os.close(fd)
                raise
            try:
                os.stat("lock", dir_fd=fd)
                return fd
            except FileNotFoundError:
                # Deleted while we waited (``delete`` renames the directory away and unlinks
                # its lock file before it lets go): look again, the id may have been created
                # anew. Unless the directory is still the one at the session's name: then no
                # delete moved it (it can't while we hold this lock), its lock was removed.
                here = _same_dir(fd, self.dir(session_id))
                unlock_dir(fd)
                if here:
                    raise self.lock_damage(session_id) from None


def _same_dir(fd: int, path: Path) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def unlock_dir(fd: int) -> None:
    try:
        release_flock(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than return 0
            raise OSError(errno.ENOSPC, "no progress writing")
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
