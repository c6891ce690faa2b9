"""The JSONL file backend: one directory per session, append-only segment files.

Layout under the store's root::

    .eventlog.json                   format marker
    <session id>/lock                flock target; its inode names the session's life
    <session id>/seg-<first seq>.jsonl
    <session id>/seg-<first seq>.jsonl.gz   a sealed segment, archived by compaction
    <session id>/snap-<seq>.json     snapshots (written atomically, self-checking)
    <session id>/quarantine-*.bin    torn tails copied aside before truncation

Invariants kept here:
- Only a holder of the session's lock writes a segment, and only its newest one;
  it finds the head (and any torn tail) after taking the lock.
- A session directory appears whole (built under a hidden name, then renamed) and
  disappears whole (renamed to a hidden name under the lock, then removed), so a
  waiting appender finds the lock file gone or replaced and never writes to a
  session that was deleted under it.
- A segment is sealed by appending a trailer *before* the next segment is made,
  so a process still holding the old one sees its size change and moves on.
- Compaction (``archive``) only compresses sealed segments that have a successor,
  writes the archive beside the segment (temporary file, fsync, rename, fsync of the
  directory) and only then unlinks the segment, so at every instant each segment is
  readable under one of its two names; readers that find the plain name gone read
  the archive. It holds the session directory's flock, which ``delete`` takes too
  (see ``_files_archive``).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import mmap
import os
import resource
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from ...core._codec import (
    DIGEST_HEX,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    ChainReader,
    Head,
    Record,
    Unparseable,
    genesis,
    link,
    link2_payload,
    looks_like_record,
    parse,
    too_large,
)
from ...core._errors import (
    ConflictError,
    CorruptLogError,
    EventLogError,
    InvalidInputError,
    SessionExistsError,
    SessionNotFoundError,
    SessionPoisonedError,
    StorageError,
    StoreNotFoundError,
)
from ...core._validate import SESSION_ID_RE, check_mode, check_seconds
from .._base import (
    Appended,
    Archived,
    Backend,
    Build,
    Chunks,
    Lines,
    Replacement,
    Scan,
    Sealed,
    Watch,
    poll_until,
)
from ._archive import DEFAULT_LEVEL, ArchiveError, ArchiveReader, read_index
from ._archiving import archive_sealed_segments
from ._lock import acquire_flock, acquire_thread_lock, release_flock
from ._redaction import redact_segments
from ._segments import (
    SEGMENT_RE,
    Pread,
    SegmentReader,
    archive_name,
    header_line,
    lines_backward,
    parse_header,
    parse_trailer,
    segment_name,
    trailer_line,
)

# Hidden: "eventlog.json" is a valid session id, and the marker took its directory name
# (create_session("eventlog.json") raised SessionExistsError for a session that did not exist).
FORMAT_FILE = ".eventlog.json"
FORMAT = {"format": "eventlog-jsonl", "version": FORMAT_VERSION}
"""The marker of a new store; one of an older version in ``FORMAT_VERSIONS`` is read and
written in that version (see ``Backend.record_version``)."""
SNAPSHOTS_KEPT = 3


def _handles_kept() -> int:
    # Each open session handle holds three descriptors: keep them to an eighth of the
    # process's limit (128 handles at the usual 1024), between 16 and 256.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(16, min(256, soft // 8))


HANDLES_KEPT = _handles_kept()
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Builds a NamedTuple (Head) without the Python-level call of its __new__.
_new_tuple = tuple.__new__
_sha256 = hashlib.sha256
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Every open FileBackend, so a forked child can drop the descriptors (and flocks) it
# shares with its parent before it touches any session (see FileBackend._after_fork).
_LIVE: weakref.WeakSet[FileBackend] = weakref.WeakSet()


def _close_handles(handles: dict[str, _Handle]) -> None:
    # The dict is emptied in place: the finalizer and the backend share it.
    while handles:
        handles.popitem()[1].close()


def _after_fork_in_child() -> None:
    for backend in list(_LIVE):
        backend._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(method: Callable[Concatenate[FileBackend, str, _P], _R]
                ) -> Callable[Concatenate[FileBackend, str, _P], _R]:
    """Raise OS errors out of a backend hook as eventlog errors, in this one place: callers
    catch ``StorageError`` (an ``OSError`` too, keeping the errno), and a file that vanished
    with its session is that session's not-found error. The reading generators translate
    with ``_os_error`` themselves."""
    @functools.wraps(method)
    def hook(self: FileBackend, session_id: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, session_id, *args, **kwargs)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc
    return hook


def _holds_anything(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return any(True for _ in entries)


def _dir_mode(mode: int) -> int:
    # Give directories search permission wherever the files are readable.
    return mode | ((mode & 0o444) >> 2)


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


def _life_of(fd: int) -> object:
    """The incarnation of the session whose lock file ``fd`` is open on."""
    life = os.pread(fd, 16, LIFE_AT)
    if len(life) == 16 and any(life):
        return life
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


class _PageWatch:
    """``FileBackend.watch``: one life's shared page, held open."""

    def __init__(self, fd: int, page: mmap.mmap) -> None:
        self.fd = fd
        self.page = page
        self.shared = memoryview(page).cast("Q")
        self.life = _life_of(fd)
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


@dataclass(slots=True)
class _Handle:
    """A process's open state for one session; guarded by ``lock`` (and the flock)."""

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

    def adopt(self) -> bool:
        """Take the head from the shared page if it is published and still this segment's."""
        shared = self.shared
        if shared is None:
            return False
        generation = shared[0]
        if generation == self.generation:
            return True
        if generation & 1 or not generation or self.seg_fd < 0 or shared[1] != self.seg_first:
            return False
        assert self.mapped is not None
        self.size = shared[2]
        self.head = Head(shared[3], self.mapped[32:48].hex())
        self.generation = generation
        return True

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


@dataclass(slots=True)
class _Source:
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


class FileBackend(Backend):
    """JSONL files under ``root``. Safe across threads, processes and ``fork()``."""

    poll_interval = 0.02

    def __init__(  # noqa: PLR0913 - keyword-only options, each named as eventlog.open takes it
            self, root: str | os.PathLike[str], *, mode: int = 0o600, lock_timeout: float = 10.0,
            segment_max_bytes: int = 64 << 20, segment_max_events: int = 100_000,
            archive_level: int = DEFAULT_LEVEL, create: bool = True, adopt: bool = False) -> None:
        self.root = Path(root)
        self.mode = check_mode(mode)
        self.dir_mode = _dir_mode(mode)
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_events = segment_max_events
        if type(archive_level) is not int or not 1 <= archive_level <= 9:
            raise InvalidInputError(f"archive_level must be a zlib level from 1 to 9, not {archive_level!r}")
        self.archive_level = archive_level
        self._handles: dict[str, _Handle] = {}
        self._handles_lock = threading.Lock()
        _LIVE.add(self)
        # A store dropped without close() must not keep its descriptors (and mappings)
        # open: the finalizer closes them. It holds the dict, never the backend.
        self._finalizer = weakref.finalize(self, _close_handles, self._handles)
        try:
            if create:
                self.root.mkdir(parents=True, exist_ok=True, mode=self.dir_mode)
            elif not self.root.is_dir():
                raise StoreNotFoundError(str(self.root), "not a directory" if self.root.exists()
                                         else "no such directory")
            self._check_format(create, adopt)
        except OSError as exc:
            if isinstance(exc, EventLogError):
                raise
            raise StorageError(exc.errno, f"can't open store at {self.root}: {exc}") from exc

    def _check_format(self, create: bool, adopt: bool) -> None:
        marker = self.root / FORMAT_FILE
        try:
            found = orjson.loads(marker.read_bytes())
        except FileNotFoundError:
            if not create:
                raise StoreNotFoundError(str(self.root), f"a directory without {FORMAT_FILE}, "
                                         "so not an eventlog store") from None
            # A directory holding other things is someone else's: making a store of it would
            # list its subdirectories as damaged sessions (and a later delete could remove them).
            if not adopt and _holds_anything(self.root):
                raise StorageError(f"{self.root} is not empty and holds no eventlog store (no "
                                   f"{FORMAT_FILE}); open it with adopt=True to make it one") from None
            self._write_atomic(self.root, FORMAT_FILE, orjson.dumps(FORMAT), durable=False)
            return
        except orjson.JSONDecodeError:
            found = None
        if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
            raise StorageError(f"{marker} is not an eventlog store marker")
        version = found.get("version")
        if type(version) is not int or version not in FORMAT_VERSIONS:
            raise StorageError(f"{marker}: store format version {version!r} is not supported "
                               f"(this eventlog reads {', '.join(map(str, FORMAT_VERSIONS))})")
        self.record_version = version

    # Paths and handles -----------------------------------------------------------------

    def _dir(self, session_id: str) -> Path:
        return self.root / session_id

    def _os_error(self, session_id: str, exc: OSError) -> EventLogError:
        if isinstance(exc, FileNotFoundError) and not self.exists(session_id):
            return SessionNotFoundError(session_id)  # deleted while we read it
        return StorageError(exc.errno, f"session {session_id!r}: {exc}")

    def _listing(self, session_id: str) -> dict[int, tuple[bool, bool]]:
        """Each segment's first seq: (plain file exists, archive exists)."""
        try:
            names = os.listdir(self._dir(session_id))
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

    def _segments(self, session_id: str) -> list[tuple[int, str]]:
        """Segments in order, each by the name to read it under. Both names exist only
        between an archive's rename and the plain file's unlink (or after a crash
        there); both hold the same bytes, and the plain one is cheaper to read."""
        return [(first, segment_name(first) if plain else archive_name(first))
                for first, (plain, _) in sorted(self._listing(session_id).items())]

    def _handle(self, session_id: str) -> _Handle:
        handle = self._handles.get(session_id)
        if handle is not None:
            return handle
        path = self._dir(session_id) / "lock"
        try:
            fd = os.open(path, os.O_RDWR | _O_CLOEXEC)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        except OSError as exc:
            raise StorageError(exc.errno, f"can't open {path}: {exc}") from exc
        handle = _Handle(fd)
        try:
            handle.map_shared()
        except (OSError, ValueError):
            handle.close()
            raise
        with self._handles_lock:
            existing = self._handles.setdefault(session_id, handle)
            if len(self._handles) > HANDLES_KEPT:
                self._evict_idle()
        if existing is not handle:
            handle.close()
        return existing

    def _evict_idle(self) -> None:
        """Close the oldest handles nobody is using, so a process that touches many
        sessions keeps a bounded number of descriptors (three per handle) open.

        Called with ``_handles_lock`` held. A handle is closed only while holding its
        own thread lock, so a thread that looked it up just before finds it closed
        (``lock_fd < 0``) once it gets that lock, and starts over."""
        excess = len(self._handles) - HANDLES_KEPT // 2
        for session_id, handle in list(self._handles.items()):
            if excess <= 0:
                return
            if handle.lock.acquire(False):
                try:
                    del self._handles[session_id]
                    handle.close()
                finally:
                    handle.lock.release()
                excess -= 1

    def _drop(self, session_id: str, handle: _Handle) -> None:
        """Forget and close a handle. Call it holding ``handle.lock``: threads waiting for
        that lock then find the handle closed and start over, instead of using descriptors
        closed (or reused) under them."""
        with self._handles_lock:
            if self._handles.get(session_id) is handle:
                del self._handles[session_id]
        handle.close()

    def _after_fork(self) -> None:
        # A child shares its parent's open file descriptions, and so its flocks:
        # it must take its own descriptors. Thread locks held by parent threads at
        # fork time would never be released here, so they are replaced too.
        _close_handles(self._handles)
        self._handles_lock = threading.Lock()

    def _locked(self, session_id: str, *, appending: bool = False) -> tuple[_Handle, bool]:
        """Take the session's lock and return its live handle and whether the handle's
        cached head is known exact; the caller must ``_unlock``. Anyone but an appender
        (who republishes when done) leaves the shared generation odd: "look again"."""
        while True:
            handle = self._handle(session_id)
            acquire_thread_lock(handle.lock, self.lock_timeout, f"session {session_id!r}")
            if handle.lock_fd < 0:
                # Another thread closed this handle (a delete, an eviction, or it found it
                # stale) while we waited for its thread lock: look again.
                handle.lock.release()
                continue
            try:
                acquire_flock(handle.lock_fd, self.lock_timeout, f"session {session_id!r}")
            except BaseException:
                handle.lock.release()
                raise
            shared = handle.shared
            if appending and handle.adopt():
                return handle, True
            # ``delete`` unlinks the lock file while holding the lock, so a lock file
            # with no links means the session was deleted (and maybe created again)
            # while we waited: this handle is stale.
            try:
                linked = os.fstat(handle.lock_fd).st_nlink
            except BaseException:
                self._unlock(handle)  # an I/O error here must not leave the session locked
                raise
            if linked:
                handle.generation = -1
                if shared is not None and not appending:
                    shared[0] |= 1
                return handle, False
            self._drop(session_id, handle)
            self._unlock(handle)

    @staticmethod
    def _unlock(handle: _Handle) -> None:
        try:
            if handle.lock_fd >= 0:  # a dropped handle's flock went with its descriptor
                release_flock(handle.lock_fd)
        finally:
            handle.lock.release()

    # Creating ----------------------------------------------------------------------------

    @_translated
    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        final = self._dir(session_id)
        if final.exists():
            raise SessionExistsError(session_id)
        temp = self.root / f".creating-{session_id}-{uuid.uuid4().hex}"
        try:
            os.mkdir(temp, self.dir_mode)
            try:
                self._write_new(temp / "lock", bytes(LIFE_AT) + os.urandom(SHARED_BYTES - LIFE_AT),
                                durable=durable)
                self._write_new(temp / segment_name(1),
                                header_line(session_id, genesis(session_id), self.record_version) + b"\n"
                                + record.line + b"\n",
                                durable=durable)
                if durable:
                    self._fsync_dir(temp)
                os.rename(temp, final)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise SessionExistsError(session_id) from None
            raise StorageError(exc.errno, f"can't create session {session_id!r}: {exc}") from exc
        if durable:
            self._fsync_dir(self.root)

    def _write_new(self, path: Path, data: bytes, *, durable: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, self.mode)
        try:
            self._write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _write_atomic(self, directory: Path, name: str, data: bytes, *, durable: bool) -> None:
        temp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            self._write_new(temp, data, durable=durable)
            os.rename(temp, directory / name)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        if durable:
            self._fsync_dir(directory)

    @staticmethod
    def _write_all(fd: int, data: bytes | memoryview) -> None:
        written = os.write(fd, data)
        if written == len(data):
            return
        view = memoryview(data)[written:]
        while view:
            written = os.write(fd, view)
            if written <= 0:  # pragma: no cover - os.write raises rather than return 0
                raise OSError(errno.ENOSPC, "no progress writing")
            view = view[written:]

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # Appending -----------------------------------------------------------------------

    def _head_for_append(self, session_id: str, handle: _Handle, exact: bool, durable: bool) -> Head:
        """Under the lock: the head to append after, with the active segment sealed first if full."""
        if handle.poisoned:
            self._check_poisoned(session_id, handle)
        head = handle.head if exact else self._resync(session_id, handle, durable)
        assert head is not None
        if (handle.size >= self.segment_max_bytes
                or head.seq - handle.seg_first + 1 >= self.segment_max_events):
            head = self._seal_full(session_id, handle, durable)
        return head

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        # ``build`` runs once, under the session's flock, so ``rebuild`` never matters here.
        # (Not ``_translated``: it translates OS errors itself, as ``append_one`` must.)
        try:
            handle, exact = self._locked(session_id, appending=True)
            sync_fd = -1
            try:
                records = build(self._head_for_append(session_id, handle, exact, durable))
                if not records:
                    return Appended([], self._position(handle))
                sync_fd = self._write_records(session_id, handle, records, durable)
                handle.head = Head(records[-1].seq, records[-1].digest)
                handle.publish()
                position = self._position(handle)
            finally:
                self._unlock(handle)
            if sync_fd >= 0:
                self._fsync_appended(session_id, handle, sync_fd)
            return Appended(records, position)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc

    def append_one(  # noqa: C901 - one flat function on purpose: see below
            self, session_id: str, payload: bytes, max_bytes: int, expected_seq: int | None,
            durable: bool) -> tuple[Head, Head, dict[str, Any] | None]:
        # Every add_message comes this way, so the common case (an uncontended lock, nobody
        # else wrote since our last append, one whole write) is kept flat: each Python call
        # here costs about as much as a syscall. Sealing (``seal_one``) is inlined too, and
        # the line is built with its newline, so it is never copied again.
        try:
            # _locked(appending=True), with its common case inlined: an uncontended lock on a
            # live handle whose head nobody moved since this process last published it.
            handle = self._handles.get(session_id)
            exact = False
            if handle is not None and handle.lock.acquire(False):
                try:
                    fcntl.flock(handle.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    # adopt()'s first test: the page is as this handle last published it.
                    exact = handle.shared is not None and handle.shared[0] == handle.generation
                    if not exact:
                        fcntl.flock(handle.lock_fd, fcntl.LOCK_UN)
                except OSError:  # contended, or a handle closed by a delete (-1): the slow way
                    pass
                if not exact:
                    handle.lock.release()
            if handle is None or not exact:
                handle, exact = self._locked(session_id, appending=True)
            sync_fd = -1
            try:
                # _head_for_append's tests, inlined for the common case: its call alone cost
                # 2-5% of an append here. Anything else takes it, and it tests them again.
                head = (handle.head if exact and not handle.poisoned
                        and handle.size < self.segment_max_bytes else None)
                if head is None or head[0] - handle.seg_first + 1 >= self.segment_max_events:
                    head = self._head_for_append(session_id, handle, exact, durable)
                if expected_seq is not None and head[0] != expected_seq:
                    raise ConflictError(session_id, expected_seq, head[0])
                seq = head[0] + 1
                body = b'{"seq":%d,' % seq + payload[1:]
                if self.record_version == 1:
                    digest = _sha256(head[1].encode() + body).hexdigest()[:DIGEST_HEX]
                else:
                    digest = link2_payload(head[1], body, payload)
                data = b'%s,"h":"%s"}\n' % (body[:-1], digest.encode())
                if len(data) > max_bytes:  # the line and its newline must fit
                    raise too_large(len(data), max_bytes)
                if durable:
                    sync_fd = os.dup(handle.seg_fd)  # before the write: see _seal_full
                shared = handle.shared
                if shared is not None:
                    shared[0] |= 1  # in progress: a crash here leaves it odd
                handle.generation = -1
                try:
                    written = os.write(handle.seg_fd, data)
                except OSError as exc:
                    raise self._write_failed(session_id, handle, exc) from exc
                if written == len(data):
                    handle.size += written
                else:  # a short write: finish it the slow way
                    self._write_at_end(session_id, handle, data, written)
                handle.head = after = _new_tuple(Head, (seq, digest))
                position = {"segment": handle.seg_first, "offset": handle.size, "seq": seq, "h": digest}
                if shared is not None:  # handle.publish(), inlined
                    assert handle.mapped is not None
                    shared[1] = handle.seg_first
                    shared[2] = handle.size
                    shared[3] = seq
                    handle.mapped[32:48] = bytes.fromhex(digest)
                    shared[0] = handle.generation = (shared[0] | 1) + 1
            except BaseException:
                if sync_fd >= 0:
                    os.close(sync_fd)
                raise
            finally:
                fcntl.flock(handle.lock_fd, fcntl.LOCK_UN)
                handle.lock.release()
            if sync_fd >= 0:
                self._fsync_appended(session_id, handle, sync_fd)
            return after, head, position
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc

    def _seal_full(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        """Seal the full active segment before an append writes: then everything that can
        fail does so before a record is written, and an append that raises has written
        nothing. (Sealing after the write raised for appends that were stored, and a
        half-done seal let the next append go after a trailer.)"""
        if handle.shared is not None:
            handle.shared[0] |= 1  # in progress: a crash here leaves it odd
        handle.generation = -1
        head = self._seal(session_id, handle, durable)
        handle.publish()
        return head

    def _write_records(self, session_id: str, handle: _Handle, records: list[Record],
                       durable: bool) -> int:
        """Write an append's records in one write; return a descriptor to fsync (or -1)."""
        data = (records[0].line + b"\n" if len(records) == 1 else
                b" \n".join([r.line for r in records]) + b"\n")
        sync_fd = os.dup(handle.seg_fd) if durable else -1  # before the write: see _seal_full
        if handle.shared is not None:
            handle.shared[0] |= 1  # in progress: a crash here leaves it odd
        handle.generation = -1
        try:
            self._write_at_end(session_id, handle, data)
        except BaseException:
            if sync_fd >= 0:
                os.close(sync_fd)
            raise
        return sync_fd

    @staticmethod
    def _check_poisoned(session_id: str, handle: _Handle) -> None:
        if handle.poisoned:
            raise SessionPoisonedError(
                f"session {session_id!r}: an earlier fsync failed, so this store refuses to "
                "write to it (the kernel may have dropped unsynced data); reopen to retry")

    def _resync(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        """Read where the log stands from the files (under the lock) and publish it."""
        head = self._sync(session_id, handle, durable)
        handle.publish()
        return head

    @staticmethod
    def _fsync_appended(session_id: str, handle: _Handle, sync_fd: int) -> None:
        # Outside the lock, so concurrent durable appenders share journal commits.
        try:
            os.fsync(sync_fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages; a later
            # fsync could then "succeed" without them. Refuse writes from now on, and
            # make the next append look at the files (where the check lives).
            handle.poisoned = True
            handle.generation = -1
            raise StorageError(exc.errno, f"session {session_id!r}: fsync failed: {exc}; the append "
                               "may not be durable and this session is now read-only "
                               "for this store") from exc
        finally:
            os.close(sync_fd)

    def _position(self, handle: _Handle) -> dict[str, Any] | None:
        assert handle.head is not None
        return {"segment": handle.seg_first, "offset": handle.size,
                "seq": handle.head.seq, "h": handle.head.digest}

    def _write_at_end(self, session_id: str, handle: _Handle, data: bytes, done: int = 0) -> None:
        """Write ``data`` (of which ``done`` bytes already are) at the end of the segment."""
        try:
            if done:
                self._write_all(handle.seg_fd, memoryview(data)[done:])
            else:
                self._write_all(handle.seg_fd, data)
        except OSError as exc:
            raise self._write_failed(session_id, handle, exc) from exc
        handle.size += len(data)

    @staticmethod
    def _write_failed(session_id: str, handle: _Handle, exc: OSError) -> StorageError:
        # Undo the part that made it, so the log ends at its last good record. If even
        # that fails, the cut bytes are a torn tail the next writer quarantines: a cut
        # batch never counts, because its last record is what completes it.
        try:
            os.ftruncate(handle.seg_fd, handle.size)
        except OSError:
            handle.head = None
        return StorageError(exc.errno, f"session {session_id!r}: write failed, nothing appended: "
                            f"{exc}")

    def _sync(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        """Bring the handle's view of the active segment up to date, under the lock."""
        if handle.head is not None and handle.seg_fd >= 0:
            size = os.fstat(handle.seg_fd).st_size
            if size == handle.size:
                return handle.head
            if size > handle.size:
                return self._catch_up(session_id, handle, durable)
        return self._discover(session_id, handle, durable)

    def _open_segment(self, session_id: str, handle: _Handle, first: int) -> None:
        if handle.seg_fd >= 0:
            os.close(handle.seg_fd)
            handle.seg_fd = -1
        path = self._dir(session_id) / segment_name(first)
        handle.seg_fd = os.open(path, os.O_RDWR | os.O_APPEND | _O_CLOEXEC)
        handle.seg_first = first

    def _catch_up(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        """Read what other processes appended to the active segment since we last looked."""
        assert handle.head is not None
        return self._read_forward(session_id, handle, handle.head, handle.size, durable)

    def _read_forward(self, session_id: str, handle: _Handle, start: Head, offset: int,
                      durable: bool) -> Head:
        name = segment_name(handle.seg_first)
        reader = SegmentReader(handle.seg_fd, name, offset=offset, lineno=-1 if offset else 0)
        chain = ChainReader(session_id, start, self.record_version)
        for _ in chain.read(reader):
            pass
        if offset == 0 and reader.header != start:
            raise CorruptLogError(f"session {session_id!r}, {name}: header does not continue "
                                  "the previous segment", session_id=session_id, where=name)
        handle.head = chain.head
        handle.size = reader.good_end
        if reader.sealed is not None:
            if reader.sealed != chain.head:
                raise CorruptLogError(f"session {session_id!r}, {name}: trailer does not match "
                                      "the last record", session_id=session_id, where=name)
            return self._next_segment(session_id, handle, reader.sealed, durable)
        self._cut_torn_tail(session_id, handle, durable)
        return handle.head

    def _discover(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        """Find the active segment and its head from scratch, reading from the end."""
        segments = self._segments(session_id)
        if not segments:
            raise CorruptLogError(f"session {session_id!r}: no segment files",
                                  session_id=session_id)
        first, name = segments[-1]
        if name != segment_name(first):
            return self._follow_archive(session_id, handle, first, durable)
        self._open_segment(session_id, handle, first)
        end = os.fstat(handle.seg_fd).st_size
        newest: tuple[dict[str, Any], bytes, str, int] | None = None
        for offset, raw in lines_backward(handle.seg_fd, end):
            line = raw.rstrip(b" ")
            if newest is None:
                if raw.endswith(b" ") or not looks_like_record(line):
                    sealed = parse_trailer(raw)
                    if sealed is not None:
                        handle.size = offset + len(raw) + 1
                        handle.head = sealed
                        return self._next_segment(session_id, handle, sealed, durable)
                    header = parse_header(raw) if offset == 0 else None
                    if header is not None:
                        handle.head, handle.size = header, offset + len(raw) + 1
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
                    or link(before.digest, body, self.record_version) != digest):
                raise CorruptLogError(
                    f"session {session_id!r}, {name}: the last record (seq {obj.get('seq')}) "
                    "does not follow the one before it; refusing to append to a damaged log",
                    session_id=session_id, seq=obj.get("seq"), where=name)
            handle.head, handle.size = Head(obj["seq"], digest), newest_end
            break
        else:
            raise CorruptLogError(f"session {session_id!r}, {name}: no header and no records",
                                  session_id=session_id, where=name)
        self._cut_torn_tail(session_id, handle, durable)
        return handle.head

    def _cut_torn_tail(self, session_id: str, handle: _Handle, durable: bool) -> None:
        end = os.fstat(handle.seg_fd).st_size
        if end <= handle.size:
            return
        torn = os.pread(handle.seg_fd, end - handle.size, handle.size)
        name = f"quarantine-{time.time_ns()}-{segment_name(handle.seg_first)}.bin"
        self._write_new(self._dir(session_id) / name, torn, durable=True)
        os.ftruncate(handle.seg_fd, handle.size)
        if durable:
            os.fsync(handle.seg_fd)

    def _seal(self, session_id: str, handle: _Handle, durable: bool) -> Head:
        assert handle.head is not None
        try:
            self._write_at_end(session_id, handle, trailer_line(handle.head) + b"\n")
            if durable:
                os.fsync(handle.seg_fd)
            return self._next_segment(session_id, handle, handle.head, durable)
        except BaseException:
            # The trailer may or may not be there: find out afresh next time, rather than
            # write a second trailer (or records after the first).
            handle.head = None
            raise

    def _next_segment(self, session_id: str, handle: _Handle, sealed: Head, durable: bool) -> Head:
        first = sealed.seq + 1
        directory = self._dir(session_id)
        if not (directory / segment_name(first)).exists():
            if (directory / archive_name(first)).exists():
                # Our view is more than a segment behind: the next one is sealed and
                # archived already. Creating it again would fork the log; start afresh.
                return self._discover(session_id, handle, durable)
            # A sealer that died between trailer and new segment left this to us.
            self._write_atomic(directory, segment_name(first),
                               header_line(session_id, sealed, self.record_version) + b"\n", durable=durable)
        try:
            self._open_segment(session_id, handle, first)
        except FileNotFoundError:
            return self._discover(session_id, handle, durable)  # archived since we looked
        # Another process may have got here first and appended already.
        return self._read_forward(session_id, handle, sealed, 0, durable)

    def _follow_archive(self, session_id: str, handle: _Handle, first: int, durable: bool) -> Head:
        """The newest segment is archived, so it is sealed, and the process that sealed it
        died before making its successor (archiving normally skips the newest segment)."""
        source = self._open_read(session_id, first)
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
        handle.head = sealed
        return self._next_segment(session_id, handle, sealed, durable)

    # Reading ---------------------------------------------------------------------------

    def _open_read(self, session_id: str, first: int, name: str | None = None) -> _Source:
        """Open segment ``first`` for reading under ``name`` (plain by default), or as its
        archive if the plain file was archived and unlinked since the listing.
        ``FileNotFoundError`` if neither exists (the session was deleted)."""
        directory = self._dir(session_id)
        if name is None or name == segment_name(first):
            try:
                fd = os.open(directory / segment_name(first), os.O_RDONLY | _O_CLOEXEC)
                return _Source(fd, segment_name(first), os.fstat(fd).st_size, os.pread)
            except FileNotFoundError:
                pass
        name = archive_name(first)
        fd = os.open(directory / name, os.O_RDONLY | _O_CLOEXEC)
        try:
            reader = ArchiveReader(fd, read_index(fd), name, session_id)
        except (ArchiveError, OSError) as exc:
            os.close(fd)
            raise CorruptLogError(f"session {session_id!r}, {name}: unreadable archive: {exc}",
                                  session_id=session_id, where=name) from None
        return _Source(fd, name, reader.size, reader.pread, reader)

    def _open_listed(self, session_id: str, first: int, name: str) -> _Source:
        try:
            return self._open_read(session_id, first, name)
        except FileNotFoundError:
            if not self.exists(session_id):
                raise SessionNotFoundError(session_id) from None
            raise CorruptLogError(f"session {session_id!r}: segment {name} vanished",
                                  session_id=session_id, where=name) from None

    @_translated
    def scan(self, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
        segments = self._segments(session_id)
        if not segments:
            raise CorruptLogError(f"session {session_id!r}: no segment files", session_id=session_id)
        firsts = [first for first, _ in segments]
        index = firsts.index(position["segment"]) if (
            position is not None and position.get("seq") == after_seq
            and position.get("segment") in firsts) else -1
        if index >= 0 and self._anchored(session_id, segments[index][1], position):
            assert position is not None
            offset = int(position["offset"])
            start = Head(after_seq, str(position["h"]))
        else:
            index = max((i for i, first in enumerate(firsts) if first <= after_seq + 1), default=0)
            offset, start = self._start_of(session_id, *segments[index], after_seq)
        readers: list[SegmentReader] = []

        def chunks() -> Chunks:
            return self._scan_chunks(session_id, *segments[index], offset, readers)

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

    def _anchored(self, session_id: str, name: str, position: Any) -> bool:
        """Whether the line that ends at ``position``'s offset carries its digest.

        A position is a hint kept from earlier (a snapshot's, or a reader's cache); the
        session may have been deleted and made again since, or its segment archived.
        Checking the 40 bytes before the offset is enough to trust it; otherwise the
        read starts from the segment's header instead."""
        offset, digest = position.get("offset"), position.get("h")
        if not name.endswith(".jsonl") or type(offset) is not int or type(digest) is not str:
            return False
        try:
            fd = os.open(self._dir(session_id) / name, os.O_RDONLY | _O_CLOEXEC)
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
                        and link(prev, body, self.record_version) == digest
                        and os.pread(fd, 1, offset - 1) == b"\n")
            tail = os.pread(fd, 40, max(0, offset - 40))
        finally:
            os.close(fd)
        return (offset >= 40 and tail.endswith(b"\n")
                and tail[:-1].rstrip(b" ").endswith(b'"' + digest.encode() + b'"}'))

    def _scan_chunks(self, session_id: str, first: int, name: str, offset: int,
                     readers: list[SegmentReader]) -> Chunks:
        """Blocks of lines from ``offset`` in segment ``first`` on through the following
        segments while each is sealed; ``readers`` holds the reader in use."""
        # Files are opened only once reading starts, so an unread Scan holds nothing.
        try:
            yield from self._scan_segments(session_id, first, name, offset, readers)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc

    def _scan_segments(self, session_id: str, first: int, name: str, offset: int,
                       readers: list[SegmentReader]) -> Chunks:
        source = self._open_listed(session_id, first, name)
        while True:
            try:
                reader = SegmentReader(source.fd, source.name, offset=offset, pread=source.pread)
                readers[:] = [reader]
                yield from reader.chunks()
                if reader.sealed is None and self._later_segments(session_id, first):
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
                source = self._open_read(session_id, first)
            except FileNotFoundError:
                # Any segment after this one will do, not only after the one the trailer
                # names: a damaged trailer that names a later seq than it ends at would
                # otherwise hide the real successor, and the read would quietly stop short.
                if not self._later_segments(session_id, sealed_first):
                    return  # sealed, and its successor not made yet
                try:
                    # Made (and maybe sealed, with more after it) between our open and the
                    # listing: segments are created whole, so a second look settles it.
                    source = self._open_read(session_id, first)
                except FileNotFoundError:  # not "not made yet": lost
                    raise CorruptLogError(
                        f"session {session_id!r}: {segment_name(first)} is missing, but later "
                        "segments exist", session_id=session_id, seq=first,
                        where=segment_name(first)) from None
            offset = 0

    def _later_segments(self, session_id: str, first: int) -> bool:
        """Whether segments after segment ``first`` exist (a listing: only at the end of a scan)."""
        return any(other > first for other in self._listing(session_id))

    def _start_of(self, session_id: str, first: int, name: str, after_seq: int) -> tuple[int, Head]:
        """Where to start reading segment ``first`` for the records after ``after_seq``."""
        source = self._open_listed(session_id, first, name)
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

    def scan_back(self, session_id: str) -> Lines:
        try:
            yield from self._scan_back(session_id)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc

    def _scan_back(self, session_id: str) -> Lines:
        segments = self._segments(session_id)
        newest = True
        for first, name in reversed(segments):
            try:
                source = self._open_read(session_id, first, name)
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

    @_translated
    def last_seq(self, session_id: str) -> int:
        # Only the newest segment: its last record, or its header when it is empty (just
        # after compaction sealed the rest), without reading into archives.
        segments = self._segments(session_id)
        if not segments:
            raise CorruptLogError(f"session {session_id!r}: no segment files", session_id=session_id)
        source = self._open_listed(session_id, *segments[-1])
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
        return super().last_seq(session_id)

    @_translated
    def incarnation(self, session_id: str) -> object:
        try:
            fd = os.open(self._dir(session_id) / "lock", os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        try:
            return _life_of(fd)
        finally:
            os.close(fd)

    def watch(self, session_id: str) -> Watch | None:
        """The session's shared page, mapped: its generation moves with every append (odd
        while one is under way), and ``delete`` unlinks the lock file it belongs to, so a
        look costs a memory read and one ``fstat``."""
        try:
            fd = os.open(self._dir(session_id) / "lock", os.O_RDONLY | _O_CLOEXEC)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size >= SHARED_BYTES:
                return _PageWatch(fd, mmap.mmap(fd, SHARED_BYTES, access=mmap.ACCESS_READ))
        except OSError:
            pass
        os.close(fd)
        return None

    @_translated
    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        """Watch the session's shared page: a memory read per poll, no system call, until
        the generation moves; then the page (or, if unpublished, the log) says the seq.

        The watcher maps the lock file for itself rather than borrowing the append
        handle's mapping: another thread deleting the session closes that handle. The
        page belongs to one life of the session: a new life of the id has a lock file of
        its own, and ``delete`` unlinks this one."""
        try:
            fd = os.open(self._dir(session_id) / "lock", os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        try:
            life = _life_of(fd)
            if incarnation is not None and life != incarnation:
                raise SessionNotFoundError(session_id)  # deleted and created again
            if os.fstat(fd).st_size < SHARED_BYTES:
                return super().wait(session_id, after_seq, timeout, incarnation=life)
            with mmap.mmap(fd, SHARED_BYTES, access=mmap.ACCESS_READ) as page:
                shared = memoryview(page).cast("Q")
                try:
                    return self._watch(session_id, fd, shared, after_seq, timeout)
                finally:
                    shared.release()
        finally:
            os.close(fd)

    def _watch(self, session_id: str, fd: int, shared: memoryview, after_seq: int,
               timeout: float | None) -> bool:
        # The first look goes to the log, not the page: a page published in an earlier life
        # of the store (written back before the log at a power cut, or copied with a store)
        # can claim more than the log holds, and trusting it made follow() spin forever,
        # timeout or not. Changes seen after this come from live writers.
        seen = [shared[0]]
        if self._last_seq_of(session_id, fd) > after_seq:
            return True

        def passed(delay: float) -> bool:
            generation = shared[0]
            if generation != seen[0]:
                seen[0] = generation
                published = not generation & 1 and generation
                last = shared[3] if published else self._last_seq_of(session_id, fd)
                return bool(last > after_seq)
            if delay >= self.poll_interval and not os.fstat(fd).st_nlink:
                raise SessionNotFoundError(session_id)  # deleted: delete unlinks the lock file
            return False

        return poll_until(passed, timeout, first=0.0005, most=self.poll_interval)

    def _last_seq_of(self, session_id: str, fd: int) -> int:
        """The last seq in the log of the life whose lock file ``fd`` is, or
        ``SessionNotFoundError`` once the id names another life (or none).

        The log is read by its path, which may lead to a new life by now; so the lock file
        at that path is compared with ``fd`` after the read. A deleted session's directory
        never comes back to its path, so if the lock file there is still ours, the read
        was too; and while ``fd`` holds it open, no other file can have its inode."""
        last = self.last_seq(session_id)
        try:
            there = os.stat(self._dir(session_id) / "lock")
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        ours = os.fstat(fd)
        if (there.st_dev, there.st_ino) != (ours.st_dev, ours.st_ino):
            raise SessionNotFoundError(session_id)
        return last

    def exists(self, session_id: str) -> bool:
        return (self._dir(session_id) / "lock").exists()

    def session_ids(self) -> list[str]:
        ids = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if SESSION_ID_RE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                        ids.append(entry.name)
        except OSError as exc:
            raise StorageError(exc.errno, f"can't list the sessions in {self.root}: {exc}") from exc
        ids.sort()
        return ids

    @_translated
    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        # The directory lock first (the order ``archive`` uses too), so a session is
        # never moved away under a compactor writing into it.
        dir_fd = self._lock_dir(session_id)
        trash = self.root / f".deleted-{session_id}-{uuid.uuid4().hex}"
        try:
            handle, _ = self._locked(session_id)
            removed = False
            try:
                if if_head is not None and self._sync(session_id, handle, False) != if_head:
                    return False
                try:
                    os.rename(self._dir(session_id), trash)
                    os.unlink(trash / "lock")
                except OSError as exc:
                    raise StorageError(exc.errno, f"can't delete session {session_id!r}: {exc}") from exc
                removed = True
            finally:
                if removed:
                    self._drop(session_id, handle)  # still under the thread lock: see _drop
                self._unlock(handle)
        finally:
            self._unlock_dir(dir_fd)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # Snapshots -------------------------------------------------------------------------

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        try:
            yield from self._snapshots(session_id)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc

    def _snapshots(self, session_id: str) -> Iterator[bytes]:
        try:
            names = sorted((n for n in os.listdir(self._dir(session_id))
                            if n.startswith("snap-") and n.endswith(".json")), reverse=True)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        for name in names:
            try:
                yield (self._dir(session_id) / name).read_bytes()
            except FileNotFoundError:
                continue  # pruned meanwhile

    @_translated
    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        directory = self._dir(session_id)
        try:
            self._write_atomic(directory, f"snap-{seq:016d}.json", blob, durable=durable)
            names = sorted(n for n in os.listdir(directory)
                           if n.startswith("snap-") and n.endswith(".json"))
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        except OSError as exc:
            raise StorageError(exc.errno, f"can't write snapshot of {session_id!r}: {exc}") from exc
        for name in names[:-SNAPSHOTS_KEPT]:
            try:
                os.unlink(directory / name)
            except FileNotFoundError:
                pass

    # Upkeep ----------------------------------------------------------------------------

    def _lock_dir(self, session_id: str) -> int:
        """Open the session's directory and take its flock, the compaction lock; return
        the descriptor for ``_unlock_dir``. Lock order: this one, then the append lock."""
        while True:
            try:
                fd = os.open(self._dir(session_id), os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
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
                # Deleted while we waited (``delete`` unlinks the lock file before it lets
                # go): look again, the id may have been created anew.
                self._unlock_dir(fd)

    @staticmethod
    def _unlock_dir(fd: int) -> None:
        try:
            release_flock(fd)
        finally:
            os.close(fd)

    @_translated
    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        handle, _ = self._locked(session_id)
        try:
            self._check_poisoned(session_id, handle)
            head = self._sync(session_id, handle, durable)
            if head.seq >= handle.seg_first:  # the active segment holds records
                self._seal(session_id, handle, durable)
            position = self._position(handle)
            handle.publish()  # exact now, as after an append: the next appender needn't look
        finally:
            self._unlock(handle)
        return Sealed(head, position)

    @_translated
    def archive(self, session_id: str) -> Archived:
        return archive_sealed_segments(self, session_id)

    @_translated
    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        redact_segments(self, session_id, replacements, durable)

    @_translated
    def size(self, session_id: str) -> int:
        total = 0
        try:
            entries = os.scandir(self._dir(session_id))
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        with entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    # Pruned or archived between listing and stat: it no longer counts.
                    continue
        return total

    @_translated
    def check(self, session_id: str) -> list[str]:
        """Segment structure: names, headers and trailers continuing each other across
        segments, and each archive's own integrity (see ``ArchiveReader.check``)."""
        problems: list[str] = []
        listing = sorted(self._listing(session_id).items())
        previous = genesis(session_id)
        for i, (first, (plain, archived)) in enumerate(listing):
            names = ([segment_name(first)] if plain else []) + ([archive_name(first)] if archived else [])
            for name in names:
                where = f"session {session_id!r}, {name}"
                try:
                    source = self._open_read(session_id, first, name)
                except FileNotFoundError:
                    continue  # archived (the plain name) or the session deleted meanwhile
                except CorruptLogError as exc:
                    problems.append(str(exc))
                    continue
                try:
                    found = self._check_segment(source, first, previous, i == len(listing) - 1)
                    problems.extend(f"{where}: {problem}" for problem in found)
                except CorruptLogError as exc:
                    problems.append(str(exc))
                finally:
                    source.close()
            if plain and archived and not self._twins_agree(session_id, first):
                problems.append(f"session {session_id!r}, {segment_name(first)}: differs from "
                                f"its archive {archive_name(first)}")
            previous = Head(-1, "")  # unknown until a trailer is read
            if names:
                trailer = self._trailer(session_id, first)
                if trailer is not None:
                    previous = trailer
        return problems

    def _check_segment(self, source: _Source, first: int, previous: Head, newest: bool) -> list[str]:
        problems = []
        if source.archive is not None:
            problems.extend(source.archive.check(first, os.fstat(source.fd).st_size))
        header = parse_header(source.pread(source.fd, 4096, 0).split(b"\n", 1)[0])
        if header is None or header.seq + 1 != first:
            problems.append("header missing or does not match the file name")
        elif previous.seq >= 0 and header != previous:
            problems.append(f"header (after seq {header.seq}) does not continue the previous "
                            f"segment, sealed at seq {previous.seq}")
        if not newest:
            last = next(source.backward(), (0, b""))[1]
            if parse_trailer(last) is None:
                problems.append("not the newest segment, but not sealed")
        return problems

    def _twins_agree(self, session_id: str, first: int) -> bool:
        directory = self._dir(session_id)
        try:
            digest = hashlib.sha256()
            with open(directory / segment_name(first), "rb") as plain:
                while chunk := plain.read(1 << 20):
                    digest.update(chunk)
            fd = os.open(directory / archive_name(first), os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return True  # the twin was removed meanwhile
        try:
            return read_index(fd).sha256 == digest.digest()
        except ArchiveError:
            return False
        finally:
            os.close(fd)

    def _trailer(self, session_id: str, first: int) -> Head | None:
        try:
            source = self._open_read(session_id, first)
        except (FileNotFoundError, CorruptLogError):
            return None
        try:
            last = next(source.backward(), (0, b""))[1]
            return parse_trailer(last)
        except CorruptLogError:
            return None
        finally:
            source.close()

    def close(self) -> None:
        with self._handles_lock:
            self._finalizer()


