"""The session handle: a process's open state for one session (its lock file, the shared head
page mapped from it, the active segment's descriptor) and the one owner of where this process
believes the session's log ends; and the table of handles a store keeps open.

The head a handle holds is in one of three states, and only the methods below move it:

- known: ``head`` is the log's last record and ``size`` the active segment's good end, as this
  handle last wrote or read them (another process may have appended since: ``exact`` in
  ``Handles.locked`` says whether the shared page proves it has not);
- re-discover: ``head`` is None, so the next writer reads where the log ends from the files;
- poisoned: an fsync failed, and this handle refuses to write until it is dropped.

Every change of segment (a seal, a catch-up, a discovery) runs inside ``transition()``, which
forgets the head if the change fails part way: a head kept after a failed transition (say, a
seal whose trailer may or may not have been written) can't outlive the failure.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import resource
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ...core._codec import Head
from ...core._errors import SessionPoisonedError, StorageError
from .._base import WouldBlock, take_nonblocking
from ._dirs import O_CLOEXEC, Dirs
from ._lock import acquire_flock, acquire_thread_lock, release_flock
from ._segments import parse_header

SHARED_BYTES = 64
"""Size of the lock file: a page of state shared by every process that has it mapped.

Only a holder of the session's lock changes it. Words: 0 a generation counter, 1 the
active segment's first seq, 2 its size, 3 the last seq; bytes 32-47 the last digest;
bytes 48-63 name the session's life (see ``LIFE_AT``).
An appender that finishes publishes all of them and an even generation. The next
lock holder that finds an even generation takes the head from the page instead of
reading the end of the log (with several writers, that read and its digest checks
would otherwise dominate each append). Anyone else holding the lock (delete,
compaction, an appender in the middle of its write, or one that died there) leaves
the generation odd, and the next appender reads the truth from the files and
republishes it.
"""

LIFE_AT = 48
"""Offset of 16 random bytes that ``create`` writes into the lock file and nothing changes:
the session's incarnation. The lock file's inode can't serve alone, since a file system
may give a deleted lock file's inode number to the next file made. Lock files made before
these bytes were written hold zeros there and fall back to their inode, which still
differs from the random bytes of any life made since."""


def life_of(fd: int) -> object:
    """The incarnation of the session whose lock file ``fd`` is open on."""
    life = os.pread(fd, 16, LIFE_AT)
    if len(life) == 16 and any(life):
        return life
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def still_there(fd: int, size: int) -> bool:
    """Whether the segment open as ``fd`` is still linked into the store and ``size`` long."""
    found = os.fstat(fd)
    return bool(found.st_nlink) and found.st_size == size


_TAIL = 4096


def log_ends_with(fd: int, first: int, size: int, head: Head) -> bool:
    """Whether segment ``first`` (open as ``fd``) is ``size`` bytes long and ends with the
    line of ``head``: its last record (seq and digest), or its header when it holds none.
    A last line longer than ``_TAIL`` is not confirmed: the writer then reads the files."""
    if size <= 0 or not still_there(fd, size):
        return False
    tail = os.pread(fd, min(size, _TAIL), max(0, size - _TAIL))
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    if not tail.endswith(b"\n") or (start == 0 and size > _TAIL):
        return False
    line = tail[start:-1]
    if head.seq < first:  # no records: the header is the head
        return start == 0 and size <= _TAIL and parse_header(line) == head
    return (line.startswith(b'{"seq":%d,' % head.seq)
            and line.endswith(b',"h":"%s"}' % head.digest.encode()))


def _handles_kept() -> int:
    # Each open session handle holds three descriptors: keep them to an eighth of the
    # process's limit (128 handles at the usual 1024), between 16 and 256.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(16, min(256, soft // 8))


HANDLES_KEPT = _handles_kept()


@dataclass(slots=True)
class Handle:
    """A process's open state for one session; guarded by ``lock`` (and the flock).

    ``head``, ``size`` and ``poisoned`` are the head state of the module doc: read them
    freely under the lock, change them only through the methods below (``append_one``
    inlines ``advance`` and ``publish``, and says so)."""

    lock_fd: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    seg_fd: int = -1
    seg_first: int = 0
    size: int = 0
    head: Head | None = None
    poisoned: bool = False
    mapped: mmap.mmap | None = None
    shared: memoryview | None = None  # the mapped lock file as 64-bit words
    generation: int = -1  # the even counter value this handle last published or verified

    # The head state ----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"poisoned"``, ``"re-discover"`` or ``"known"`` (see the module doc)."""
        if self.poisoned:
            return "poisoned"
        return "re-discover" if self.head is None else "known"

    def know(self, head: Head, size: int) -> None:
        """The log ends with ``head``, the active segment's good bytes at ``size``."""
        self.head = head
        self.size = size

    def advance(self, head: Head, written: int) -> None:
        """This handle appended ``written`` bytes ending with ``head``."""
        self.head = head
        self.size += written

    def forget(self) -> None:
        """Where the log ends must be read from the files again."""
        self.head = None
        self.generation = -1

    def poison(self) -> None:
        """An fsync failed: refuse writes until the handle is dropped (a reopen). Called
        outside the lock, so it leaves ``head`` alone: a writer holding the lock checks
        ``poisoned`` before it uses the head."""
        self.poisoned = True
        self.generation = -1

    def check_poisoned(self, session_id: str) -> None:
        if self.poisoned:
            raise SessionPoisonedError(
                f"session {session_id!r}: an earlier fsync failed, so this store refuses to "
                "write to it (the kernel may have dropped unsynced data); reopen to retry")

    @contextmanager
    def transition(self) -> Iterator[None]:
        """A change of where the log ends (seal, catch-up, discovery): if it fails part
        way, the head is forgotten, never kept."""
        try:
            yield
        except BaseException:
            self.forget()
            raise

    # The shared page ---------------------------------------------------------------------

    def since(self, position: Any) -> tuple[list[bytes], dict[str, Any] | None] | None:
        """``Since`` (see ``backends._base``) under the append lock: the lines after
        ``position`` in the active segment, read from its open descriptor (a ``scan`` lists
        and opens files: ten times dearer, and an append's guard reads what other writers
        appended before every append)."""
        if type(position) is not dict or position.get("segment") != self.seg_first:
            return None
        offset = position.get("offset")
        if type(offset) is not int or not 0 < offset <= self.size or self.head is None:
            return None
        data = os.pread(self.seg_fd, self.size - offset, offset)
        if len(data) != self.size - offset or (data and not data.endswith(b"\n")):
            return None
        return ([line.rstrip(b" ") for line in data.split(b"\n")[:-1]],
                {"segment": self.seg_first, "offset": self.size, "seq": self.head.seq,
                 "h": self.head.digest})

    def adopt(self) -> bool:
        """Take the head from the shared page if it is published, still this segment's, and
        the log confirms it. The page is a cache (issue 13): a stale or forged one made a
        writer acknowledge seq 42 after seq 2. So the head it names is confirmed against the
        segment itself, cheaply: its size and its last line (``log_ends_with``); and even a
        page as this handle last published it needs the segment still linked (an append is
        never acknowledged into a file removed from the store) at the size this handle
        left it. Refused, the head is forgotten: the writer reads the files."""
        shared = self.shared
        if shared is None:
            return False
        generation = shared[0]
        if generation == self.generation:
            if self.seg_fd >= 0 and still_there(self.seg_fd, self.size):
                return True
            self.forget()
            return False
        if generation & 1 or not generation or self.seg_fd < 0 or shared[1] != self.seg_first:
            return False
        assert self.mapped is not None
        head, size = Head(shared[3], self.mapped[32:48].hex()), shared[2]
        if not log_ends_with(self.seg_fd, self.seg_first, size, head):
            self.forget()
            return False
        self.know(head, size)
        self.generation = generation
        return True

    def begin(self) -> None:
        """A write is under way: a crash now leaves the shared generation odd."""
        if self.shared is not None:
            self.shared[0] |= 1
        self.generation = -1

    def publish(self) -> None:
        shared, mapped, head = self.shared, self.mapped, self.head
        if shared is None or mapped is None or head is None:
            return
        shared[1] = self.seg_first
        shared[2] = self.size
        shared[3] = head.seq
        mapped[32:48] = bytes.fromhex(head.digest)
        self.generation = (shared[0] | 1) + 1
        shared[0] = self.generation

    def position(self) -> dict[str, object]:
        assert self.head is not None
        return {"segment": self.seg_first, "offset": self.size,
                "seq": self.head.seq, "h": self.head.digest}

    def map_shared(self) -> None:
        if os.fstat(self.lock_fd).st_size >= SHARED_BYTES:
            self.mapped = mmap.mmap(self.lock_fd, SHARED_BYTES)
            self.shared = memoryview(self.mapped).cast("Q")

    def close(self) -> None:
        if self.shared is not None:
            self.shared.release()
            self.shared = None
        if self.mapped is not None:
            self.mapped.close()
            self.mapped = None
        for fd in (self.seg_fd, self.lock_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.seg_fd = self.lock_fd = -1


def close_all(handles: dict[str, Handle]) -> None:
    # The dict is emptied in place: the finalizer and the table share it.
    while handles:
        handles.popitem()[1].close()


# Every live table, so a forked child can drop the descriptors (and flocks) it shares with
# its parent before it touches any session (see Handles.after_fork).
_LIVE: weakref.WeakSet[Handles] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for table in list(_LIVE):
        table.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Handles:
    """The session handles one store keeps open, at most ``HANDLES_KEPT`` of them, and the
    session lock taken through them. Safe across threads, processes and ``fork()``."""

    def __init__(self, dirs: Dirs) -> None:
        self.dirs = dirs
        self.by_id: dict[str, Handle] = {}
        self.lock = threading.Lock()
        _LIVE.add(self)
        # A store dropped without close() must not keep its descriptors (and mappings)
        # open: the finalizer closes them. It holds the dict, never the table.
        self.finalizer = weakref.finalize(self, close_all, self.by_id)

    def get(self, session_id: str) -> Handle:
        handle = self.by_id.get(session_id)
        if handle is not None:
            return handle
        path = self.dirs.dir(session_id) / "lock"
        try:
            fd = os.open(path, os.O_RDWR | O_CLOEXEC)
        except FileNotFoundError:
            raise self.dirs.lock_missing(session_id) from None
        except OSError as exc:
            raise StorageError(exc.errno, f"can't open {path}: {exc}") from exc
        handle = Handle(fd)
        try:
            handle.map_shared()
        except (OSError, ValueError):
            handle.close()
            raise
        with self.lock:
            existing = self.by_id.setdefault(session_id, handle)
            if len(self.by_id) > HANDLES_KEPT:
                self._evict_idle()
        if existing is not handle:
            handle.close()
        return existing

    def _evict_idle(self) -> None:
        """Close the oldest handles nobody is using, so a process that touches many
        sessions keeps a bounded number of descriptors (three per handle) open.

        Called with ``self.lock`` held. A handle is closed only while holding its own
        thread lock, so a thread that looked it up just before finds it closed
        (``lock_fd < 0``) once it gets that lock, and starts over."""
        excess = len(self.by_id) - HANDLES_KEPT // 2
        for session_id, handle in list(self.by_id.items()):
            if excess <= 0:
                return
            if handle.lock.acquire(False):
                try:
                    del self.by_id[session_id]
                    handle.close()
                finally:
                    handle.lock.release()
                excess -= 1

    def drop(self, session_id: str, handle: Handle) -> None:
        """Forget and close a handle. Call it holding ``handle.lock``: threads waiting for
        that lock then find the handle closed and start over, instead of using descriptors
        closed (or reused) under them."""
        with self.lock:
            if self.by_id.get(session_id) is handle:
                del self.by_id[session_id]
        handle.close()

    def after_fork(self) -> None:
        # A child shares its parent's open file descriptions, and so its flocks:
        # it must take its own descriptors. Thread locks held by parent threads at
        # fork time would never be released here, so they are replaced too.
        close_all(self.by_id)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.finalizer()

    def locked(self, session_id: str, *, appending: bool = False) -> tuple[Handle, bool]:
        """Take the session's lock and return its live handle and whether the handle's
        cached head is known exact; the caller must ``unlock``. Anyone but an appender
        (who republishes when done) leaves the shared generation odd: "look again"."""
        timeout = self.dirs.lock_timeout
        tried = take_nonblocking()  # see _base.nonblocking: nothing is written yet
        while True:
            handle = self.get(session_id)
            if not _lock_handle(handle, session_id, timeout, tried):
                continue
            shared = handle.shared
            try:
                adopted = appending and handle.adopt()  # it reads the segment: I/O may fail
            except BaseException:
                unlock(handle)
                raise
            if adopted:
                return handle, True
            # ``delete`` unlinks the lock file while holding the lock, so a lock file
            # with no links means the session was deleted (and maybe created again)
            # while we waited: this handle is stale.
            try:
                linked = os.fstat(handle.lock_fd).st_nlink
            except BaseException:
                unlock(handle)  # an I/O error here must not leave the session locked
                raise
            if linked:
                handle.generation = -1
                if shared is not None and not appending:
                    shared[0] |= 1
                return handle, False
            self.drop(session_id, handle)
            unlock(handle)


def _lock_handle(handle: Handle, session_id: str, timeout: float, tried: bool) -> bool:
    """Take ``handle``'s thread lock and flock (``tried``: each tried once, else
    ``WouldBlock``); False if another thread closed the handle meanwhile (look again)."""
    if not tried:
        acquire_thread_lock(handle.lock, timeout, f"session {session_id!r}")
    elif not handle.lock.acquire(False):
        raise WouldBlock(session_id)
    if handle.lock_fd < 0:
        # Another thread closed this handle (a delete, an eviction, or it found it
        # stale) while we waited for its thread lock: look again.
        handle.lock.release()
        return False
    try:
        if not tried:
            acquire_flock(handle.lock_fd, timeout, f"session {session_id!r}")
        else:
            try:
                fcntl.flock(handle.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WouldBlock(session_id) from None
    except BaseException:
        handle.lock.release()
        raise
    return True


def unlock(handle: Handle) -> None:
    try:
        if handle.lock_fd >= 0:  # a dropped handle's flock went with its descriptor
            release_flock(handle.lock_fd)
    finally:
        handle.lock.release()
