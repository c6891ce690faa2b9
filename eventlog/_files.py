"""The JSONL file backend: one directory per session, append-only segment files.

Layout under the store's root::

    .eventlog.json                   format marker
    <session id>/lock                flock target; its inode names the session's life
    <session id>/seg-<first seq>.jsonl
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
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from ._backend import Appended, Backend, Build, Lines, Scan
from ._codec import (ChainReader, Head, Record, Unparseable, genesis, link, looks_like_record,
                     parse)
from ._errors import (CorruptLogError, EventLogError, SessionExistsError, SessionNotFoundError,
                      SessionPoisonedError, StorageError)
from ._lock import acquire_flock, acquire_thread_lock, release_flock
from ._segments import (SEGMENT_RE, SegmentReader, header_line, lines_backward, parse_header,
                        parse_trailer, segment_name, trailer_line)
from ._validate import SESSION_ID_RE

# Hidden: "eventlog.json" is a valid session id, and the marker took its directory name
# (create_session("eventlog.json") raised SessionExistsError for a session that did not exist).
FORMAT_FILE = ".eventlog.json"
FORMAT = {"format": "eventlog-jsonl", "version": 1}
SNAPSHOTS_KEPT = 3
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(method: Callable[Concatenate[FileBackend, str, _P], _R]
                ) -> Callable[Concatenate[FileBackend, str, _P], _R]:
    """Raise OS errors out of a backend hook as eventlog errors, in this one place: the store's
    callers catch ``StorageError`` (an ``OSError`` too), and a file that vanished with its
    session is that session's not-found error. Generators translate in ``_os_error`` themselves."""
    @functools.wraps(method)
    def hook(self: FileBackend, session_id: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, session_id, *args, **kwargs)
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc
    return hook


def _dir_mode(mode: int) -> int:
    # Give directories search permission wherever the files are readable.
    return mode | ((mode & 0o444) >> 2)


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

    def close(self) -> None:
        for fd in (self.seg_fd, self.lock_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.seg_fd = self.lock_fd = -1


class FileBackend(Backend):
    """JSONL files under ``root``. Safe across threads, processes and ``fork()``."""

    poll_interval = 0.02

    def __init__(self, root: str | os.PathLike[str], *, mode: int = 0o600, lock_timeout: float = 10.0,
                 segment_max_bytes: int = 64 << 20, segment_max_events: int = 100_000) -> None:
        self.root = Path(root)
        self.mode = mode
        self.dir_mode = _dir_mode(mode)
        self.lock_timeout = lock_timeout
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_events = segment_max_events
        self._pid = os.getpid()
        self._handles: dict[str, _Handle] = {}
        self._handles_lock = threading.Lock()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=self.dir_mode)
            self._check_format()
        except OSError as exc:
            raise StorageError(exc.errno, f"can't open store at {self.root}: {exc}") from exc

    def _check_format(self) -> None:
        marker = self.root / FORMAT_FILE
        try:
            found = orjson.loads(marker.read_bytes())
        except FileNotFoundError:
            self._write_atomic(self.root, FORMAT_FILE, orjson.dumps(FORMAT), durable=False)
            return
        except orjson.JSONDecodeError:
            found = None
        if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
            raise StorageError(f"{marker} is not an eventlog store marker")
        if found.get("version") != FORMAT["version"]:
            raise StorageError(f"{marker}: store format version {found.get('version')} "
                               f"is not supported (this eventlog reads {FORMAT['version']})")

    # Paths and handles -----------------------------------------------------------------

    def _dir(self, session_id: str) -> Path:
        return self.root / session_id

    def _os_error(self, session_id: str, exc: OSError) -> EventLogError:
        if isinstance(exc, FileNotFoundError) and not self.exists(session_id):
            return SessionNotFoundError(session_id)  # deleted while we read it
        return StorageError(exc.errno, f"session {session_id!r}: {exc}")

    def _segments(self, session_id: str) -> list[tuple[int, str]]:
        try:
            names = os.listdir(self._dir(session_id))
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        found = []
        for name in names:
            match = SEGMENT_RE.fullmatch(name)
            if match:
                found.append((int(match.group(1)), name))
        found.sort()
        return found

    def _handle(self, session_id: str) -> _Handle:
        if os.getpid() != self._pid:
            self._after_fork()
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
        with self._handles_lock:
            existing = self._handles.setdefault(session_id, handle)
        if existing is not handle:
            handle.close()
        return existing

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
        for handle in self._handles.values():
            handle.close()
        self._handles = {}
        self._handles_lock = threading.Lock()
        self._pid = os.getpid()

    def _locked(self, session_id: str) -> _Handle:
        """Take the session's lock and return its live handle; the caller must ``_unlock``."""
        while True:
            handle = self._handle(session_id)
            acquire_thread_lock(handle.lock, self.lock_timeout, f"session {session_id!r}")
            if handle.lock_fd < 0:
                # Another thread dropped this handle (a delete, or found it stale) while we
                # waited for its thread lock: its descriptors are closed, so look again.
                handle.lock.release()
                continue
            try:
                acquire_flock(handle.lock_fd, self.lock_timeout, f"session {session_id!r}")
            except BaseException:
                handle.lock.release()
                raise
            # ``delete`` unlinks the lock file while holding the lock, so a lock file
            # with no links means the session was deleted (and maybe created again)
            # while we waited: this handle is stale.
            try:
                linked = os.fstat(handle.lock_fd).st_nlink
            except BaseException:
                self._unlock(handle)  # an I/O error here must not leave the session locked
                raise
            if linked:
                return handle
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
                self._write_new(temp / "lock", b"", durable=durable)
                self._write_new(temp / segment_name(1),
                                header_line(session_id, genesis(session_id)) + b"\n"
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
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
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

    @_translated
    def append(self, session_id: str, build: Build, *, durable: bool) -> Appended:
        handle = self._locked(session_id)
        sync_fd = -1
        try:
            if handle.poisoned:
                raise SessionPoisonedError(
                    f"session {session_id!r}: an earlier fsync failed, so this store refuses to "
                    "write to it (the kernel may have dropped unsynced data); reopen to retry")
            head = self._sync(session_id, handle, durable)
            # Seal a full segment now, before writing, rather than after the write: then
            # everything that can fail does so before a record is written, and an append
            # that raises has written nothing (sealing after the write raised for appends
            # that were stored, and a half-done seal let the next append go after a trailer).
            if (handle.size >= self.segment_max_bytes
                    or head.seq - handle.seg_first + 1 >= self.segment_max_events):
                head = self._seal(session_id, handle, durable)
            records = build(head)
            if not records:
                return Appended([], self._position(handle))
            last = len(records) - 1
            data = b"".join(r.line + (b"\n" if i == last else b" \n") for i, r in enumerate(records))
            if durable:
                sync_fd = os.dup(handle.seg_fd)  # before the write, for the same reason
            try:
                self._write_at_end(session_id, handle, data)
            except BaseException:
                if sync_fd >= 0:
                    os.close(sync_fd)
                raise
            handle.head = Head(records[-1].seq, records[-1].digest)
            position = self._position(handle)
        finally:
            self._unlock(handle)
        if sync_fd >= 0:
            # Outside the lock, so concurrent durable appenders share journal commits.
            try:
                os.fsync(sync_fd)
            except OSError as exc:
                handle.poisoned = True
                raise StorageError(exc.errno, f"session {session_id!r}: fsync failed: {exc}; the "
                                   "append may not be durable and this session is now read-only "
                                   "for this store") from exc
            finally:
                os.close(sync_fd)
        return Appended(records, position)

    def _position(self, handle: _Handle) -> dict[str, Any] | None:
        assert handle.head is not None
        return {"segment": handle.seg_first, "offset": handle.size,
                "seq": handle.head.seq, "h": handle.head.digest}

    def _write_at_end(self, session_id: str, handle: _Handle, data: bytes) -> None:
        try:
            self._write_all(handle.seg_fd, data)
        except OSError as exc:
            # Undo the part that made it, so the log ends at its last good record. If even
            # that fails, the cut bytes are a torn tail the next writer quarantines: a cut
            # batch never counts, because its last record is what completes it.
            try:
                os.ftruncate(handle.seg_fd, handle.size)
            except OSError:
                handle.head = None
            raise StorageError(exc.errno, f"session {session_id!r}: write failed, nothing "
                               f"appended: {exc}") from exc
        handle.size += len(data)

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
        chain = ChainReader(session_id, start)
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
            if before is None or link(before.digest, body) != digest or obj["seq"] != before.seq + 1:
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
            # A sealer that died between trailer and new segment left this to us.
            self._write_atomic(directory, segment_name(first),
                               header_line(session_id, sealed) + b"\n", durable=durable)
        self._open_segment(session_id, handle, first)
        # Another process may have got here first and appended already.
        return self._read_forward(session_id, handle, sealed, 0, durable)

    # Reading ---------------------------------------------------------------------------

    def _open_read(self, session_id: str, name: str) -> int:
        return os.open(self._dir(session_id) / name, os.O_RDONLY | _O_CLOEXEC)

    @_translated
    def scan(self, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
        segments = self._segments(session_id)
        if not segments:
            raise CorruptLogError(f"session {session_id!r}: no segment files", session_id=session_id)
        index, offset, start = 0, 0, None
        firsts = [first for first, _ in segments]
        if (position is not None and position.get("seq") == after_seq
                and position.get("segment") in firsts):
            index = firsts.index(position["segment"])
            offset = int(position["offset"])
            start = Head(after_seq, str(position["h"]))
        else:
            for i, first in enumerate(firsts):
                if first <= after_seq + 1:
                    index = i
        if start is None:
            fd = self._open_read(session_id, segments[index][1])
            try:
                start = parse_header(os.pread(fd, 4096, 0).split(b"\n", 1)[0])
            finally:
                os.close(fd)
            if start is None:
                raise CorruptLogError(f"session {session_id!r}, {segments[index][1]}: "
                                      "missing or damaged segment header",
                                      session_id=session_id, where=segments[index][1])
        current: list[SegmentReader] = []

        def where() -> dict[str, Any] | None:
            if not current:
                return {"segment": segments[index][0], "offset": offset}
            reader = current[0]
            match = SEGMENT_RE.fullmatch(reader.name)
            assert match is not None
            return {"segment": int(match.group(1)), "offset": reader.good_end}

        # The segment is opened when reading starts, not here: a scan that is never read
        # (``events()`` called and dropped) must not leave a descriptor open.
        return Scan(start, self._scan_lines(session_id, segments[index], offset, current), where)

    def _scan_lines(self, session_id: str, segment: tuple[int, str], offset: int,
                    current: list[SegmentReader]) -> Lines:
        first, name = segment
        fd = -1
        try:
            fd = self._open_read(session_id, name)
            while True:
                reader = SegmentReader(fd, name, offset=offset)
                current[:] = [reader]
                yield from reader
                following = [s for s in self._segments(session_id) if s[0] > first]
                if reader.sealed is None and following:
                    # A sealer writes the trailer before it makes the next segment, so this
                    # one is sealed: read on to its trailer (it may have come after we got
                    # to the end). Without one the trailer is damaged, and stopping here
                    # would quietly hide every later segment.
                    reader = SegmentReader(fd, name, offset=reader.good_end)
                    current[:] = [reader]
                    yield from reader
                    if reader.sealed is None:
                        raise CorruptLogError(
                            f"session {session_id!r}, {name}: later segments exist but this "
                            "one has no readable trailer", session_id=session_id, where=name)
                if reader.sealed is None or not following:
                    return  # the newest segment, or sealed and the next one not made yet
                os.close(fd)
                fd = -1
                first, name = following[0]
                fd = self._open_read(session_id, name)
                offset = 0
        except EventLogError:
            raise
        except OSError as exc:
            raise self._os_error(session_id, exc) from exc
        finally:
            if fd >= 0:
                os.close(fd)

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
        for _first, name in reversed(segments):
            try:
                fd = self._open_read(session_id, name)
            except FileNotFoundError:
                continue
            try:
                end = os.fstat(fd).st_size
                for offset, raw in lines_backward(fd, end):
                    if newest and raw.endswith(b" "):
                        continue  # the tail of a batch cut short
                    newest = False
                    if raw.startswith(b'{"seq":'):
                        yield name, -offset, raw.rstrip(b" ")
                    elif offset == 0 and parse_header(raw) is not None:
                        continue
                    elif parse_trailer(raw) is not None:
                        continue
                    else:
                        yield name, -offset, raw
            finally:
                os.close(fd)

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
        handle = self._locked(session_id)
        trash = self.root / f".deleted-{session_id}-{uuid.uuid4().hex}"
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
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # Snapshots -------------------------------------------------------------------------

    def snapshots(self, session_id: str) -> Iterator[bytes]:
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

    @_translated
    def size(self, session_id: str) -> int:
        total = 0
        try:
            with os.scandir(self._dir(session_id)) as entries:
                for entry in entries:
                    total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        return total

    @_translated
    def check(self, session_id: str) -> list[str]:
        problems = []
        segments = self._segments(session_id)
        for i, (first, name) in enumerate(segments):
            fd = self._open_read(session_id, name)
            try:
                header = parse_header(os.pread(fd, 4096, 0).split(b"\n", 1)[0])
                if header is None or header.seq + 1 != first:
                    problems.append(f"session {session_id!r}, {name}: header missing or "
                                    "does not match the file name")
                if i < len(segments) - 1:
                    last = next(lines_backward(fd, os.fstat(fd).st_size), (0, b""))[1]
                    if parse_trailer(last) is None:
                        problems.append(f"session {session_id!r}, {name}: not the newest "
                                        "segment, but not sealed")
            finally:
                os.close(fd)
        return problems

    def close(self) -> None:
        with self._handles_lock:
            handles, self._handles = self._handles, {}
        for handle in handles.values():
            handle.close()


