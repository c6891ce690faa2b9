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
  (see ``_archiving``).

The parts, each a module of its own below this one, which composes them: ``_dirs`` (the
tree, listings, atomic writes, the compaction lock), ``_handle`` (the session handle, its
lock, shared head page and head state), ``_discovery`` (where the log ends, read from the
files), ``_writing`` (creating, sealing, the slow path of an append), ``_reading`` (forward
and backward reads), ``_waiting`` (wait and watch), ``_snapshots``, ``_checks`` (damage
checks) and ``_archiving``/``_archive`` (compressed segments). ``FileBackend`` keeps the
hooks' thin delegations and ``append_one``, the common append, one flat function on purpose.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from ...core._codec import (
    DATA_MEMBER,
    DIGEST_HEX,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    TOMB_START,
    Head,
    Record,
    payload_chain,
    too_large,
)
from ...core._errors import (
    ConflictError,
    EventLogError,
    InvalidInputError,
    SessionNotFoundError,
    StorageError,
    StoreNotFoundError,
)
from ...core._frames import chain_reaches
from ...core._validate import check_mode, check_seconds
from .._base import (
    Appended,
    Archived,
    Backend,
    Build,
    Guard,
    Lines,
    Refold,
    Replacement,
    Scan,
    Sealed,
    Unique,
    Watch,
)
from . import _checks, _reading, _snapshots, _waiting, _writing
from ._archive import DEFAULT_LEVEL
from ._archiving import archive_sealed_segments
from ._catalog import FileCatalog, Version, read_page
from ._catalog_format import PAGE_BYTES
from ._dirs import O_CLOEXEC, Dirs, unlock_dir
from ._discovery import sync
from ._handle import Handles, unlock
from ._names import ID_FILE, dir_name, id_of, is_long, legacy_name
from ._recorded import recorded_head
from ._redaction import redact_segments
from ._segments import SEGMENT_RE
from ._trash import Trash, remove_entry, rename_into
from ._writing import fsync_appended, head_for_append, write_at_end, write_failed, write_records

# Hidden: "eventlog.json" is a valid session id, and the marker took its directory name
# (create_session("eventlog.json") raised SessionExistsError for a session that did not exist).
FORMAT_FILE = ".eventlog.json"
FORMAT = {"format": "eventlog-jsonl", "version": FORMAT_VERSION}
"""The marker of a new store; one of an older version in ``FORMAT_VERSIONS`` is read and
written in that version (see ``Backend.record_version``)."""

# Builds a NamedTuple (Head) without the Python-level call of its __new__.
_new_tuple = tuple.__new__
_sha256 = hashlib.sha256
_TOMB_LEN = len(TOMB_START)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(method: Callable[Concatenate[FileBackend, str, _P], _R]
                ) -> Callable[Concatenate[FileBackend, str, _P], _R]:
    """Raise OS errors out of a backend hook as eventlog errors, in this one place: callers
    catch ``StorageError`` (an ``OSError`` too, keeping the errno), and a file that vanished
    with its session is that session's not-found error. The reading generators translate
    with ``Dirs.os_error`` themselves."""
    @functools.wraps(method)
    def hook(self: FileBackend, session_id: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, session_id, *args, **kwargs)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._dirs.os_error(session_id, exc) from exc
    return hook


def _move_away(directory: Path, trash: Path, session_id: str,
               keep: Callable[[int], None] | None, dir_mode: int) -> bool:
    """``delete``'s two steps, under the session's locks: rename the directory into the
    trash (out of the store), then unlink its lock file (which tells waiting writers that
    the session is gone). A delete that raises changed nothing: if the unlink fails, the
    directory goes back. Only if that fails too is the session gone all the same (True: it
    is no longer in the store). ``keep``: given a descriptor of the lock file, so that
    closing the session's handle frees nothing now (``_trash``, invariant 4)."""
    try:
        # (The trash itself may have been removed when it was emptied, by any process.)
        rename_into(directory, trash, trash.parent, dir_mode)
    except OSError as exc:
        raise StorageError(exc.errno, f"can't delete session {session_id!r}: {exc}") from exc
    keeper = -1
    if keep is not None:
        try:
            keeper = os.open(trash / "lock", os.O_RDONLY | O_CLOEXEC)
        except OSError:
            keeper = -1  # then the handle's close frees the lock file's block: only slower
    try:
        os.unlink(trash / "lock")
    except OSError as exc:
        if keeper >= 0:
            os.close(keeper)
        try:
            os.rename(trash, directory)
        except OSError:
            return True
        raise StorageError(exc.errno, f"can't delete session {session_id!r}: {exc}") from exc
    if keep is not None and keeper >= 0:
        keep(keeper)
    return True


_BUSY = object()
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class _Unsure(Exception):
    """A deferred delete's quick check could not vouch for the log: nothing was done."""


def _holds_anything(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return any(True for _ in entries)


class FileBackend(Backend):
    """JSONL files under ``root``. Safe across threads, processes and ``fork()``."""

    poll_interval = 0.02
    inline_appends = True  # a non-durable append is a write(2) to the page cache, under its flock

    def __init__(  # noqa: PLR0913 - keyword-only options, each named as eventlog.open takes it
            self, root: str | os.PathLike[str], *, mode: int = 0o600, lock_timeout: float = 10.0,
            segment_max_bytes: int = 64 << 20, segment_max_events: int = 100_000,
            archive_level: int = DEFAULT_LEVEL, create: bool = True, adopt: bool = False) -> None:
        self.root = Path(root)
        self.mode = check_mode(mode)
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_events = segment_max_events
        self._limits = (segment_max_bytes, segment_max_events)
        if type(archive_level) is not int or not 1 <= archive_level <= 9:
            raise InvalidInputError(f"archive_level must be a zlib level from 1 to 9, not {archive_level!r}")
        self.archive_level = archive_level
        self._dirs = Dirs(self.root, self.mode, self.lock_timeout)
        self.dir_mode = self._dirs.dir_mode
        self._table = Handles(self._dirs)
        self._handles = self._table.by_id  # read directly by append_one's common case
        self._catalog = FileCatalog(self.root, self.mode, self._dir_str)
        self._trash = Trash(self.root, self.dir_mode)
        self._deferred: list[tuple[str, bytes | None]] = []  # deleted, not yet forgotten
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
        if self._trash.waiting():  # left by a crash, or by a process that exited first
            self._trash.empty_later()

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
            self._dirs.write_atomic(self.root, FORMAT_FILE, orjson.dumps(FORMAT), durable=False)
            return
        except orjson.JSONDecodeError:
            found = None
        if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
            raise StorageError(f"{marker} is not an eventlog store marker")
        version = found.get("version")
        if type(version) is not int or version not in FORMAT_VERSIONS:
            raise StorageError(f"{marker}: store format version {version!r} is not supported "
                               f"(this eventlog reads {', '.join(map(str, FORMAT_VERSIONS))})")
        self.record_version = self._dirs.record_version = version

    # Writing -----------------------------------------------------------------------------

    @_translated
    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        self._catalog.mark(session_id, durable=durable)  # before the session exists: _catalog
        _writing.create(self._dirs, session_id, record, durable=durable)

    @_translated
    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        # Marked as ``create`` does: a listing trusts the entry of an unmarked session
        # (an entry of an earlier life of this id, whose forgetting failed, included).
        self._catalog.mark(session_id, durable=durable)
        return _writing.create_log(self._dirs, session_id, batches, durable=durable,
                                   limits=self._limits)

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        # ``build`` runs once, under the session's flock, so ``rebuild`` never matters here.
        # (Not ``_translated``: it translates OS errors itself, as ``append_one`` must.)
        try:
            handle, exact = self._table.locked(session_id, appending=True)
            sync_fd = -1
            try:
                if session_id not in self._catalog.marked:  # under the lock: see _catalog
                    self._catalog.mark(session_id, durable=durable)
                records = build(head_for_append(self._dirs, session_id, handle, exact, durable,
                                                self._limits))
                if not records:
                    return Appended([], handle.position())
                sync_fd = write_records(session_id, handle, records, durable)
                handle.advance(Head(records[-1].seq, records[-1].digest), 0)  # write_records counted them
                handle.publish()
                position = handle.position()
            finally:
                unlock(handle)
            if sync_fd >= 0:
                fsync_appended(session_id, handle, sync_fd)
            return Appended(records, position)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._dirs.os_error(session_id, exc) from exc

    def append_one(  # noqa: C901, PLR0913 - one flat function on purpose: see below
            self, session_id: str, payload: bytes, max_bytes: int, expected_seq: int | None,
            durable: bool, guard: Guard | None = None, checked: Head | None = None,
            unique: Unique | None = None) -> tuple[Head, Head, dict[str, Any] | None]:
        # Every add_message comes this way, so the common case (an uncontended lock, nobody
        # else wrote since our last append, one whole write) is kept flat: each Python call
        # here costs about as much as a syscall. Sealing (``seal_one``) is inlined too, and
        # the line is built with its newline, so it is never copied again. What the chain
        # hashes of the payload (its data's hash, in version 2) is computed before the lock.
        if self.record_version == 1:
            chain = payload[1:]
        elif payload[-2:] != b'"}':
            # payload_chain(), inlined for a payload without a key (its call was about 2% of
            # an add_message): the data runs from the first ``,"data":`` to the payload's
            # last byte but one (see payload_chain). A tombstone's digest is the one it
            # states: payload_chain tells it apart.
            # (partition, not find and slices: find parses its arguments.)
            before, _, rest = payload.partition(DATA_MEMBER)
            if rest[:_TOMB_LEN] == TOMB_START:
                chain = payload_chain(payload)
            else:
                chain = b'%s,"data":"%s"}' % (before[1:], _sha256(rest[:-1]).hexdigest().encode())
        else:
            chain = payload_chain(payload)
        try:
            # _locked(appending=True), with its common case inlined: an uncontended lock on a
            # live handle whose head nobody moved since this process last published it.
            handle = self._handles.get(session_id)
            exact = False
            if handle is not None and handle.lock.acquire(False):
                try:
                    fcntl.flock(handle.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # contended, or a handle closed by a delete (-1): the slow way
                    pass
                else:
                    # adopt()'s first test: the page is as this handle last published it,
                    # and the segment still in the store at the size this handle left it.
                    # (still_there, inlined: an append into a segment removed from the store,
                    # by rm -rf of the session, must never be acknowledged.)
                    try:
                        if handle.shared is not None and handle.shared[0] == handle.generation:
                            found = os.fstat(handle.seg_fd)
                            exact = found.st_size == handle.size and found.st_nlink > 0
                    except OSError:  # the fstat failed: the slow way says why (and unlocks)
                        exact = False
                    if not exact:
                        fcntl.flock(handle.lock_fd, fcntl.LOCK_UN)
                if not exact:
                    handle.lock.release()
            if handle is None or not exact:
                handle, exact = self._table.locked(session_id, appending=True)
                # The slow path only: the first append of this process, or the first after
                # its catalog mark was cleared (which left ``generation`` stale on purpose).
                if session_id not in self._catalog.marked:
                    try:
                        self._catalog.mark(session_id, durable=durable)
                    except BaseException:
                        unlock(handle)
                        raise
            sync_fd = -1
            try:
                # head_for_append's tests, inlined for the common case: its call alone cost
                # 2-5% of an append here. Anything else takes it, and it tests them again.
                head = (handle.head if exact and not handle.poisoned
                        and handle.size < self.segment_max_bytes else None)
                if head is None or head[0] - handle.seg_first + 1 >= self.segment_max_events:
                    head = head_for_append(self._dirs, session_id, handle, exact, durable, self._limits)
                if guard is not None and head != checked:
                    guard(head, handle.since)
                if expected_seq is not None and head[0] != expected_seq:
                    raise ConflictError(session_id, expected_seq, head[0])
                seq = head[0] + 1
                digest = _sha256(b'%s{"seq":%d,%s' % (head[1].encode(), seq, chain)
                                 ).hexdigest()[:DIGEST_HEX]
                data = b'{"seq":%d,%s,"h":"%s"}\n' % (seq, payload[1:-1], digest.encode())
                if len(data) > max_bytes:  # the line and its newline must fit
                    raise too_large(len(data), max_bytes)
                if durable:
                    sync_fd = os.dup(handle.seg_fd)  # before the write: see seal_full
                shared = handle.shared
                if shared is not None:
                    shared[0] |= 1  # handle.begin(), inlined: a crash here leaves it odd
                handle.generation = -1
                try:
                    written = os.write(handle.seg_fd, data)
                except OSError as exc:
                    raise write_failed(session_id, handle, exc) from exc
                if written == len(data):
                    handle.size += written
                else:  # a short write: finish it the slow way
                    write_at_end(session_id, handle, data, written)
                # handle.advance(), inlined (the head state's one other writer: see _handle)
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
                fsync_appended(session_id, handle, sync_fd)
            return after, head, position
        except EventLogError:
            raise
        except OSError as exc:
            raise self._dirs.os_error(session_id, exc) from exc

    @_translated
    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        handle, _ = self._table.locked(session_id)
        try:
            handle.check_poisoned(session_id)
            head = sync(self._dirs, session_id, handle, durable)
            if head.seq >= handle.seg_first:  # the active segment holds records
                _writing.seal(self._dirs, session_id, handle, durable)
            position = handle.position()
            handle.publish()  # exact now, as after an append: the next appender needn't look
        finally:
            unlock(handle)
        return Sealed(head, position)

    @_translated
    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        moved = self._take_away(session_id, if_head, defer=False)
        if moved is None:
            return False
        try:
            self._catalog.forget_many([moved[1]])
        except OSError:
            pass  # derived data: readers find the session gone by its page
        remove_entry(moved[0])  # its space, now (what is left is the trash's: see _trash)
        self._trash.tidy()
        return True

    @_translated
    def delete_deferred(self, session_id: str, *, if_head: Head) -> bool | None:
        # Gone from the store at once (one rename); its catalog line and its space wait for
        # settle_deletes (one append for the batch; the trash emptied by a thread). Only a
        # log whose every record checks out up to ``if_head``, with nothing after it, goes
        # this way; None for any other (the caller reads it the thorough way).
        try:
            moved = self._take_away_quick(session_id, if_head)
            if moved is _BUSY:  # a handle of this process, or a lock held: the common way
                moved = self._take_away(session_id, if_head, defer=True)
        except _Unsure:
            return None
        if moved is None:
            return False
        self._deferred.append(moved[1])
        return True

    def _take_away_quick(self, session_id: str, head: Head) -> Any:
        """``_take_away(defer=True)`` of a session this process holds no handle of, with
        its locks taken without waiting and everything read through the directory's
        descriptor (a cleanup removes thousands: this is most of its cost). The same steps
        under the same two locks: the page made odd (another process's appender then looks
        again, and finds the lock file unlinked), the log checked up to ``head``, the
        rename, the unlink. ``_BUSY``: a lock was held, or this process has a handle."""
        if session_id in self._handles:
            return _BUSY
        path = self._dir_str(session_id)
        try:
            dir_fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | O_CLOEXEC)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        lock_fd = -1
        try:
            try:
                fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                lock_fd = os.open("lock", os.O_RDWR | O_CLOEXEC, dir_fd=dir_fd)
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, FileNotFoundError):
                return _BUSY  # the common way waits, and tells a gone session from damage
            if os.fstat(lock_fd).st_nlink == 0:
                return _BUSY  # deleted while we opened it: the common way says so
            page = os.pread(lock_fd, PAGE_BYTES, 0)
            if len(page) == PAGE_BYTES:
                generation = int.from_bytes(page[0:8], "little")
                if not generation & 1:  # "look again", as the common way's lock leaves it
                    os.pwrite(lock_fd, (generation | 1).to_bytes(8, "little"), 0)
            if not self._log_is(session_id, head, dir_fd):
                raise _Unsure
            trash = str(self._trash.place())
            rename_into(path, trash, self._trash.path, self.dir_mode)
            try:
                os.unlink(trash + "/lock")
            except OSError:
                try:
                    os.rename(trash, path)
                except OSError:
                    return Path(trash), (session_id,
                                         page[48:64] if len(page) == PAGE_BYTES else None)
                raise
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            self._trash.keep(lock_fd)  # closed by the emptier: its close frees the page's block
            lock_fd = -1
            return Path(trash), (session_id, page[48:64] if len(page) == PAGE_BYTES else None)
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)
            os.close(dir_fd)

    def _log_is(self, session_id: str, head: Head, dir_fd: int | None = None) -> bool:
        """Whether the session's log, read whole, chains to exactly ``head`` (plain
        segments only: an archived one is left to the thorough way). Under its lock."""
        if dir_fd is None:
            directory = self._dir_str(session_id)
            names = [name for _first, name in self._dirs.segments(session_id)]
        else:
            names = sorted(n for n in os.listdir(dir_fd) if SEGMENT_RE.fullmatch(n))
        runs = []
        for name in names:
            if not name.endswith(".jsonl"):
                return False
            fd = (os.open(f"{directory}/{name}", os.O_RDONLY | O_CLOEXEC) if dir_fd is None
                  else os.open(name, os.O_RDONLY | O_CLOEXEC, dir_fd=dir_fd))
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0)
            finally:
                os.close(fd)
            if len(data) != size:
                return False
            runs.append(data)
        return bool(runs) and chain_reaches(session_id, runs, head, self.record_version)

    def settle_deletes(self) -> None:
        deferred, self._deferred = self._deferred, []
        try:
            if deferred:
                self._catalog.forget_many(deferred)
        except OSError:
            pass  # derived data: readers find the sessions gone by their pages
        finally:
            self._trash.empty_later()

    def _take_away(self, session_id: str, if_head: Head | None, *,
                   defer: bool) -> tuple[Path, tuple[str, bytes | None]] | None:
        """Move the session into the trash if its head is ``if_head`` (any, if None): where
        it went, and its id and life (what the catalog forgets); None if it stays."""
        # The directory lock first (the order ``archive`` uses too), so a session is
        # never moved away under a compactor writing into it.
        dirs = self._dirs
        dir_fd = dirs.lock_dir(session_id)
        try:
            trash = Path(self._trash.place())
            handle, _ = self._table.locked(session_id)
            removed = False
            try:
                if defer and if_head is not None and not self._log_is(session_id, if_head):
                    raise _Unsure
                if not defer and if_head is not None and sync(dirs, session_id, handle,
                                                              False) != if_head:
                    return None
                life = None if handle.mapped is None else bytes(handle.mapped[48:64])
                removed = _move_away(dirs.dir(session_id), trash, session_id,
                                     self._trash.keep if defer else None, self.dir_mode)
            finally:
                if removed:
                    self._table.drop(session_id, handle)  # still under the thread lock: see drop
                unlock(handle)
        finally:
            unlock_dir(dir_fd)
        return trash, (session_id, life)

    def empty_trash(self, *, wait: bool = True) -> None:
        """Free the space of the sessions deleted by ``delete_deferred`` (in a thread of this
        process; ``wait``: until it is done)."""
        self._trash.empty_later()
        if wait:
            self._trash.wait()

    @_translated
    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        _snapshots.save_snapshot(self._dirs, session_id, seq, blob, durable=durable)

    @_translated
    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        # Marked first (so ordered reads refold it) and its entry forgotten after: the
        # entries named what the redaction erased.
        self._catalog.mark(session_id, durable=durable)
        redact_segments(self, session_id, replacements, durable)
        self._catalog.forget(session_id, deleted=False)

    @_translated
    def archive(self, session_id: str) -> Archived:
        return archive_sealed_segments(self._dirs, session_id, self.archive_level)

    # Reading -----------------------------------------------------------------------------

    @_translated
    def scan(self, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
        return _reading.scan(self._dirs, session_id, after_seq, position)

    def scan_back(self, session_id: str) -> Lines:
        return _reading.scan_back(self._dirs, session_id)

    @_translated
    def last_seq(self, session_id: str) -> int:
        found = _reading.last_seq(self._dirs, session_id)
        return super().last_seq(session_id) if found is None else found

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        return _snapshots.snapshots(self._dirs, session_id)

    @_translated
    def incarnation(self, session_id: str) -> object:
        return _waiting.incarnation(self._dirs, session_id)

    def watch(self, session_id: str) -> Watch | None:
        return _waiting.watch(self._dirs, session_id)

    @_translated
    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        return _waiting.wait(self._dirs, self, session_id, after_seq, timeout, incarnation)

    def exists(self, session_id: str) -> bool:
        return self._dirs.exists(session_id)

    def session_ids(self) -> list[str]:
        return sorted(self._sessions())

    def _sessions(self) -> dict[str, str]:
        """Every session's id and directory (a legacy-named one first: see ``Dirs.dir``)."""
        found: dict[str, str] = {}
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                        continue
                    sid = id_of(entry.name)
                    if sid is None and is_long(entry.name):
                        sid = self._long_id(entry.name)
                    if sid is not None and (sid not in found or entry.name == legacy_name(sid)):
                        found[sid] = entry.path
        except OSError as exc:
            raise StorageError(exc.errno, f"can't list the sessions in {self.root}: {exc}") from exc
        return found

    def _dir_str(self, session_id: str) -> str:
        """``Dirs.dir`` as a str, without pathlib where no legacy name can apply (the
        catalog reads a lock page per session it shows: pathlib cost as much as the read)."""
        legacy = legacy_name(session_id)
        if legacy is not None and os.path.isdir(f"{self.root}/{legacy}"):
            return f"{self.root}/{legacy}"  # as Dirs.dir: a store written before issue 15
        return f"{self.root}/{dir_name(session_id)}"

    def _long_id(self, name: str) -> str | None:
        """The id in a long-named directory's ``id`` file, if it is the one for that name."""
        try:
            sid = (self.root / name / ID_FILE).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None  # being created or deleted, or not a session's
        return sid if dir_name(sid) == name else None

    # The session catalog (_catalog.py) ------------------------------------------------------

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        found = self._sessions()
        listed = sorted((sid, path) for sid, path in found.items() if sid.startswith(prefix))
        return self._catalog.read(listed, whole=not prefix)

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        try:
            self._catalog.write([(sid, head, blob, None if keys is None else keys[i])
                                 for i, (sid, head, blob) in enumerate(entries)], self._clear_mark)
        except OSError as exc:
            raise StorageError(exc.errno, f"can't save catalog entries in {self.root}: {exc}") from exc

    def _clear_mark(self, session_id: str, version: Version, unmark: Callable[[], bool]) -> bool:
        """``unmark`` under the session's lock if its page still shows ``version`` (the
        catalog's invariant 2); without waiting: a busy session keeps its mark."""
        try:
            fd = os.open(str(self._dirs.dir(session_id) / "lock"), os.O_RDONLY | O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if read_page(str(self._dirs.dir(session_id))) != version:
                return False
            handle = self._handles.get(session_id)
            if handle is not None:
                # This process's next append takes the slow path, which marks again.
                handle.generation = -1
            return unmark()
        except OSError:
            return False
        finally:
            os.close(fd)  # and its flock

    def catalog_walk(self, order: str, descending: bool, start: float | None,
                     refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        try:
            return self._catalog.walk(order, descending, start, refold)
        except OSError as exc:
            raise StorageError(exc.errno, f"can't read the catalog in {self.root}: {exc}") from exc

    def catalog_wants_rebuild(self, *, listed: int | None = None) -> bool:
        return self._catalog.wants_rebuild(listed)

    def catalog_rebuild(self, entries: list[tuple[str, Head, bytes, tuple[float, float]]]) -> None:
        try:
            self._catalog.rebuild(entries)
        except OSError as exc:
            raise StorageError(exc.errno, f"can't save the catalog in {self.root}: {exc}") from exc

    def catalog_reset(self) -> None:
        try:
            self._catalog.remove()
        except OSError as exc:
            raise StorageError(exc.errno, f"can't remove the catalog in {self.root}: {exc}") from exc

    @_translated
    def recorded_head(self, session_id: str) -> Head | None:
        return recorded_head(self._dirs, session_id)

    @_translated
    def size(self, session_id: str) -> int:
        total = 0
        try:
            entries = os.scandir(self._dirs.dir(session_id))
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
        """Segment structure (see ``_checks``)."""
        return _checks.check(self._dirs, session_id)

    def close(self) -> None:
        if self._deferred:
            self.settle_deletes()
        self._table.close()
        self._catalog.close()
