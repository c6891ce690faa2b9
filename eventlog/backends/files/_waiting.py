"""Waiting for and watching a session's appends through its shared head page (the mapped
lock file, see ``_handle.SHARED_BYTES``): a look costs a memory read, and ``delete``
unlinks the lock file the page belongs to, so one ``fstat`` tells a deleted life.
"""

from __future__ import annotations

import mmap
import os

from ...core._errors import SessionNotFoundError
from .._base import Backend, Watch, poll_until
from ._dirs import O_CLOEXEC, Dirs
from ._handle import SHARED_BYTES, life_of


class PageWatch:
    """``FileBackend.watch``: one life's shared page, held open."""

    def __init__(self, fd: int, page: mmap.mmap) -> None:
        self.fd = fd
        self.page = page
        self.shared = memoryview(page).cast("Q")
        self.life = life_of(fd)
        self.seen = self.shared[0]

    def changed(self) -> bool:
        generation = self.shared[0]
        # Odd: an append (or a seal) is under way or died; 0: never published. Either way
        # only the log can tell.
        if generation != self.seen or generation & 1 or not generation:
            self.seen = generation
            return True
        return not os.fstat(self.fd).st_nlink

    def close(self) -> None:
        self.shared.release()
        self.page.close()
        os.close(self.fd)


def incarnation(dirs: Dirs, session_id: str) -> object:
    return dirs.read_lock_file(session_id, life_of)


def watch(dirs: Dirs, session_id: str) -> Watch | None:
    """The session's shared page, mapped: its generation moves with every append (odd
    while one is under way), and ``delete`` unlinks the lock file it belongs to."""
    try:
        fd = os.open(dirs.dir(session_id) / "lock", os.O_RDONLY | O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size >= SHARED_BYTES:
            return PageWatch(fd, mmap.mmap(fd, SHARED_BYTES, access=mmap.ACCESS_READ))
    except OSError:
        pass
    os.close(fd)
    return None


def wait(dirs: Dirs, backend: Backend, session_id: str, after_seq: int,
         timeout: float | None, incarnation: object) -> bool:
    """Watch the session's shared page: a memory read per poll, no system call, until
    the generation moves; then the page (or, if unpublished, the log) says the seq.

    The watcher maps the lock file for itself rather than borrowing the append
    handle's mapping: another thread deleting the session closes that handle. The
    page belongs to one life of the session: a new life of the id has a lock file of
    its own, and ``delete`` unlinks this one. Without a page, ``Backend.wait`` polls."""
    try:
        fd = os.open(dirs.dir(session_id) / "lock", os.O_RDONLY | O_CLOEXEC)
    except FileNotFoundError:
        raise dirs.lock_missing(session_id) from None
    try:
        life = life_of(fd)
        if incarnation is not None and life != incarnation:
            raise SessionNotFoundError(session_id)  # deleted and created again
        if os.fstat(fd).st_size < SHARED_BYTES:
            return Backend.wait(backend, session_id, after_seq, timeout, incarnation=life)
        with mmap.mmap(fd, SHARED_BYTES, access=mmap.ACCESS_READ) as page:
            shared = memoryview(page).cast("Q")
            try:
                return _watch(dirs, backend, session_id, fd, shared, after_seq, timeout)
            finally:
                shared.release()
    finally:
        os.close(fd)


def _watch(dirs: Dirs, backend: Backend, session_id: str, fd: int, shared: memoryview,  # noqa: PLR0913
           after_seq: int, timeout: float | None) -> bool:
    # The first look goes to the log, not the page: a page published in an earlier life
    # of the store (written back before the log at a power cut, or copied with a store)
    # can claim more than the log holds, and trusting it made follow() spin forever,
    # timeout or not. Changes seen after this come from live writers.
    seen = [shared[0]]
    if _last_seq_of(dirs, backend, session_id, fd) > after_seq:
        return True

    def passed(delay: float) -> bool:
        generation = shared[0]
        if generation != seen[0]:
            seen[0] = generation
            published = not generation & 1 and generation
            last = shared[3] if published else _last_seq_of(dirs, backend, session_id, fd)
            return bool(last > after_seq)
        if delay >= backend.poll_interval and not os.fstat(fd).st_nlink:
            raise SessionNotFoundError(session_id)  # deleted: delete unlinks the lock file
        return False

    return poll_until(passed, timeout, first=0.0005, most=backend.poll_interval)


def _last_seq_of(dirs: Dirs, backend: Backend, session_id: str, fd: int) -> int:
    """The last seq in the log of the life whose lock file ``fd`` is, or
    ``SessionNotFoundError`` once the id names another life (or none).

    The log is read by its path, which may lead to a new life by now; so the lock file
    at that path is compared with ``fd`` after the read. A deleted session's directory
    never comes back to its path, so if the lock file there is still ours, the read
    was too; and while ``fd`` holds it open, no other file can have its inode."""
    last = backend.last_seq(session_id)
    try:
        there = os.stat(dirs.dir(session_id) / "lock")
    except FileNotFoundError:
        raise SessionNotFoundError(session_id) from None
    ours = os.fstat(fd)
    if (there.st_dev, there.st_ino) != (ours.st_dev, ours.st_ino):
        raise SessionNotFoundError(session_id)
    return last
