"""The file backend's session catalog: summaries of every session, kept beside the logs,
with an index that reads the first page by ``last_activity`` or ``created_at`` without
loading the rest.

The file ``<root>/.catalog`` is an optional **base** followed by a **journal**:

- The base (written only by a rebuild or a compaction, which know every session) is a
  header line ``{"eventlog_catalog": 2, ...}``, one JSON line per session sorted by id
  (``[id, life, seq, digest, entry, created_at, last_activity]``), then three binary
  tables: each entry line's offset, and the entries ordered by ``(last_activity, id)`` and
  by ``(created_at, id)`` (a float64 key and the entry's number each).
- The journal is JSON lines appended with ``O_APPEND``, each batch one ``write`` that starts
  with a newline (a torn line never swallows the next batch's first line): ``["e", id,
  life, seq, digest, entry, created_at, last_activity, [tokens]]`` an entry (clearing the
  writer's own marks named), ``["m", id, token]`` a mark, ``["f", id, [tokens]]`` forget
  the session's entry (deleted, or redacted).

Invariants (what every reader and writer relies on):

1. **Derived, never trusted over the logs.** An entry names the head it was made for (the
   session's life, last seq and head digest). A reader uses it only if the session's lock
   page says, right now, that the head is exactly that one (published: an even, non-zero
   generation); otherwise the store folds the session from its log. So a missing, stale,
   damaged or foreign catalog costs time, never a wrong answer about a head the page
   vouches for.
2. **Marks say where to look.** A process writes a mark for a session before it first
   creates or appends to it (and again after each time its mark was cleared), under the
   session's lock, and clears its own mark only with an entry for the head the lock page
   shows while it holds that lock again. So a session that is in the index and has no
   outstanding mark has the entry the index holds (checked by invariant 1 all the same),
   and an ordered read only checks the pages of the marked sessions, not of every session:
   a writer killed after its mark leaves the mark (the session is checked and refolded),
   never a stale entry that nobody checks. The mark is in the file before the write it
   announces; only a store written without marks (another release) needs a rebuild, which
   a file without a base gets on the first ordered read.
3. **One file, replaced whole.** Writers append under a shared ``flock`` of the file and
   check, once they hold it, that the path still names the file they opened (else they
   open it again); a compaction holds it exclusively, reads the journal to its end, writes
   the new base (carrying every outstanding mark) to a temporary file and renames it over
   ``.catalog``. No mark is ever lost, and a reader sees the old file or the new one.
4. **Cheap on the append path.** Appends write nothing: the mark is written on an append's
   slow path (the first one of a process, and the first after a clear, which leaves the
   page's generation odd so that the next append takes that path), entries behind the
   writers (at ``close``, before a listing, in batches).
5. **Nothing outside the store.** The file and its temporaries live in the store's root and
   start with ``.``; ``eventlog reindex`` removes them and builds the catalog again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import heapq
import os
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...core._codec import Head
from .._base import CatalogUnusable

CATALOG_FILE = ".catalog"
COMPACT_AT = 2048
"""Journal lines after which a reader folds the journal into a new base (a cold ordered
read parses the whole journal: this keeps that a few milliseconds)."""
PAGE_BYTES = 64
MAGIC = b'{"eventlog_catalog":2,'
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_KEY = struct.Struct("<dQI")  # the key, and where the entry line is: offset, length
_OFFSET = struct.Struct("<Q")
_CHUNK = 256

Version = tuple[bytes, int, str]
"""A head as a lock page states it: the life's 16 bytes, the last seq, the head digest."""

Entry = tuple[Version | None, bytes, float | None, float | None]
"""A session's newest entry: its head (None: folded just now by this reader), the store's
blob, created_at and last_activity (None when the writer gave no keys)."""

Refold = Callable[[str], "tuple[Head, bytes, float, float] | None"]
"""The store's fold of a session the catalog can't vouch for: its head, entry and keys, or
None (gone, or damaged)."""


def read_page(directory: str) -> Version | None:
    """The head a session's lock page vouches for, or None (gone, never published, or an
    append under way or cut short: only the log can tell then)."""
    try:
        fd = os.open(directory + "/lock", os.O_RDONLY | _O_CLOEXEC)  # a str: pathlib costs more
    except OSError:
        return None
    try:
        page = os.pread(fd, PAGE_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(page) < PAGE_BYTES:
        return None
    generation = int.from_bytes(page[0:8], "little")
    if generation & 1 or not generation:
        return None
    return page[48:64], int.from_bytes(page[24:32], "little"), page[32:48].hex()


class Damaged(ValueError):
    """The base does not hold together: the catalog is rebuilt."""


@dataclass(slots=True)
class Base:
    """The parsed header of one file's base; its sections are read on demand."""

    fd: int
    count: int
    entries_at: int
    offsets_at: int
    tables: dict[str, int]
    journal_at: int
    marks: dict[str, set[str]]

    def offset(self, index: int) -> tuple[int, int]:
        raw = os.pread(self.fd, 16, self.offsets_at + 8 * index)
        if len(raw) != 16:
            raise Damaged("short offset table")
        start, end = struct.unpack("<QQ", raw)
        if not self.entries_at <= start < end <= self.offsets_at:
            raise Damaged("offset out of range")
        return start, end

    def entry(self, index: int) -> tuple[str, Entry]:
        start, end = self.offset(index)
        return _base_line(os.pread(self.fd, end - start, start))

    def line(self, start: int, length: int) -> tuple[str, Entry]:
        if not (self.entries_at <= start and start + length <= self.offsets_at and length > 0):
            raise Damaged("entry out of range")
        return _base_line(os.pread(self.fd, length, start))

    def keys(self, order: str, first: int, last: int) -> list[tuple[float, int, int]]:
        """Records ``first`` to ``last`` (exclusive) of an order's table."""
        at = self.tables[order] + _KEY.size * first
        raw = os.pread(self.fd, _KEY.size * (last - first), at)
        if len(raw) != _KEY.size * (last - first):
            raise Damaged("short order table")
        return list(_KEY.iter_unpack(raw))

    def find(self, session_id: str) -> Entry | None:
        low, high = 0, self.count
        while low < high:
            mid = (low + high) // 2
            sid, entry = self.entry(mid)
            if sid == session_id:
                return entry
            if sid < session_id:
                low = mid + 1
            else:
                high = mid
        return None

    def everything(self) -> dict[str, Entry]:
        data = os.pread(self.fd, self.offsets_at - self.entries_at, self.entries_at)
        found: dict[str, Entry] = {}
        for line in data.splitlines():
            sid, entry = _base_line(line)
            found[sid] = entry
        if len(found) != self.count:
            raise Damaged("entry count")
        return found


def _base_line(line: bytes) -> tuple[str, Entry]:
    try:
        sid, life, seq, digest, blob, created, last = orjson.loads(line)
        entry = ((bytes.fromhex(life), seq, digest), blob.encode(), float(created), float(last))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise Damaged(f"entry line: {exc}") from None
    if type(sid) is not str:
        raise Damaged("entry line")
    return sid, entry


def _header(fd: int, size: int) -> Base | None:
    """The base of the file open as ``fd``, or None if it has none (a journal only)."""
    head = os.pread(fd, 65536, 0)
    if not head.startswith(MAGIC):
        return None
    end = head.find(b"\n")
    while end < 0 and len(head) < size:
        head = os.pread(fd, 2 * len(head), 0)
        end = head.find(b"\n")
    try:
        found = orjson.loads(head[:end])
        count, tables, journal = found["sessions"], found["tables"], found["journal"]
        base = Base(fd, count, end + 1, found["offsets"], {"last_activity": tables[0],
                    "created_at": tables[1]}, journal,
                    {sid: set(tokens) for sid, tokens in found["marks"]})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        raise Damaged("header") from None
    if not (type(count) is int and count >= 0 and base.offsets_at + 8 * (count + 1)
            == base.tables["last_activity"] and tables[0] + _KEY.size * count == tables[1]
            and tables[1] + _KEY.size * count + 1 == journal <= size):
        raise Damaged("section sizes")
    return base


@dataclass(slots=True)
class View:
    """What this process has read of one ``.catalog`` file: its base and its journal."""

    inode: tuple[int, int]
    base: Base | None
    offset: int
    lines: int = 0
    entries: dict[str, Entry | None] = field(default_factory=dict)  # None: forgotten
    marks: dict[str, set[str]] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    everything: dict[str, Entry] | None = None  # the base's entries, once read whole

    def read_journal(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            if line:
                self.lines += 1
                self._line(line)
        self.offset += end

    def _line(self, line: bytes) -> None:
        try:
            row = orjson.loads(line)
            if type(row) is not list or len(row) < 3 or type(row[1]) is not str:
                return  # a base's line or a header read as a journal's (a damaged base)
            tag, sid = row[0], row[1]
            if tag == "e":
                _, _, life, seq, digest, blob, created, last, clears = row
                if type(seq) is not int or type(digest) is not str or type(clears) is not list:
                    return
                self.entries[sid] = ((bytes.fromhex(life), seq, digest), blob.encode(),
                                     None if created is None else float(created),
                                     None if last is None else float(last))
                self.cleared.update(clears)
            elif tag == "m":
                self.marks.setdefault(sid, set()).add(row[2])
            elif tag == "f":
                self.entries[sid] = None
                self.cleared.update(row[2])
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            return  # torn, or run into by the next writer: skipped (its session refolded)

    def newest(self, session_id: str) -> Entry | None:
        if session_id in self.entries:
            return self.entries[session_id]
        if self.everything is not None:
            return self.everything.get(session_id)
        return None if self.base is None else self.base.find(session_id)

    def outstanding(self) -> set[str]:
        """The sessions with a mark nobody cleared."""
        found = set()
        for marks in (self.base.marks if self.base else {}, self.marks):
            for sid, tokens in marks.items():
                if tokens - self.cleared:
                    found.add(sid)
        return found

    def open_marks(self) -> list[list[Any]]:
        merged: dict[str, set[str]] = {}
        for marks in (self.base.marks if self.base else {}, self.marks):
            for sid, tokens in marks.items():
                merged.setdefault(sid, set()).update(tokens - self.cleared)
        return [[sid, sorted(tokens)] for sid, tokens in sorted(merged.items()) if tokens]


class FileCatalog:
    """One store's catalog file, with what this process has read of it and the marks this
    process has outstanding."""

    def __init__(self, root: Path, mode: int, directory: Callable[[str], str]) -> None:
        self.path = root / CATALOG_FILE
        self.mode = mode
        self.directory = directory
        self.lock = threading.Lock()
        self.view: View | None = None
        self.fd = -1
        self.marked: dict[str, str] = {}  # session id -> this process's outstanding token
        self.pid = os.getpid()
        self.prefix = uuid.uuid4().hex[:12]
        self.counter = 0

    # Writing -----------------------------------------------------------------------------

    def _append(self, data: bytes, *, durable: bool = False) -> None:
        """Invariant 3: append under a shared flock of the file the path names now."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, self.mode)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    continue
                mine = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                    continue  # replaced by a compaction meanwhile: write into the new one
                os.write(fd, data)
                if durable:
                    os.fsync(fd)
                return
            finally:
                os.close(fd)

    def mark(self, session_id: str, *, durable: bool) -> None:
        """Invariant 2: before this process first writes to the session (and after a clear).
        Call it holding the session's lock (or before the session exists)."""
        with self.lock:
            if os.getpid() != self.pid:  # a child's marks are its own: the parent clears its
                self.marked.clear()
                self.pid = os.getpid()
                self.prefix = uuid.uuid4().hex[:12]
            if session_id in self.marked:
                return
            self.counter += 1
            token = f"{self.prefix}{self.counter:x}"
        # Durable appends get a durable mark: a power cut must not keep the append and lose it.
        self._append(b"\n" + orjson.dumps(["m", session_id, token]) + b"\n", durable=durable)
        with self.lock:
            self.marked[session_id] = token

    def write(self, entries: list[tuple[str, Head, bytes, tuple[float, float] | None]],
              clear: Callable[[str, Version, Callable[[], bool]], bool]) -> None:
        """Save entries whose session's page vouches for their head. Where this process has a
        mark of the session outstanding, ``clear(id, version, unmark)`` runs ``unmark`` holding
        the session's lock if the page still shows that head then (invariant 2), and the
        entry names the token it cleared."""
        lines = []
        for sid, head, blob, keys in entries:
            version = read_page(self.directory(sid))
            if version is None or version[1:] != (head.seq, head.digest):
                continue  # the page does not vouch for this head: the entry could never be used
            with self.lock:
                token = self.marked.get(sid) if os.getpid() == self.pid else None
            clears = []
            if token is not None and clear(sid, version, functools.partial(self._unmark, sid, token)):
                clears.append(token)
            created, last = (None, None) if keys is None else keys
            lines.append(orjson.dumps(["e", sid, version[0].hex(), head.seq, head.digest,
                                       blob.decode(), created, last, clears]) + b"\n")
        if lines:
            # One write (invariant 3), starting with a newline: a line torn by a writer killed
            # mid-write ends there, instead of swallowing this batch's first line.
            self._append(b"\n" + b"".join(lines))

    def _unmark(self, session_id: str, token: str) -> bool:
        with self.lock:
            if self.marked.get(session_id) != token:
                return False
            del self.marked[session_id]
            return True

    def forget(self, session_id: str, *, deleted: bool) -> None:
        """The session's entry no longer holds (it was deleted, or redacted): a deletion also
        clears this process's mark of it (the session is gone); a redaction rewrites the file
        without any of its entries, which named what was erased."""
        with self.lock:
            token = self.marked.pop(session_id, None) if deleted else None
        self._append(b"\n" + orjson.dumps(["f", session_id, [] if token is None else [token]])
                     + b"\n")
        if not deleted:
            with self.lock:
                view = self._refresh()
                if view is not None:
                    self._compact(view, None, drop=session_id)

    def wants_rebuild(self) -> bool:
        """Whether the file has no base (missing, damaged, or a journal only)."""
        with self.lock:
            view = self._refresh()
            return view is None or view.base is None

    def remove(self) -> None:
        """Drop every entry and the base (``eventlog reindex`` builds them again); the marks
        outstanding stay (their writers are still writing: invariant 2), as does nothing
        else, not even a damaged file's unreadable rest."""
        with self.lock:
            for path in self.path.parent.glob(f"{CATALOG_FILE}.*.tmp"):
                path.unlink(missing_ok=True)
            view = self._refresh()
            if view is not None:
                self._compact(view, None, marks_only=True)
            self._forget_view()

    # Reading -----------------------------------------------------------------------------

    def _forget_view(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.view = -1, None

    def _refresh(self) -> View | None:
        """Read what was appended since the last look (all of it for a new file). Call it
        holding ``self.lock``. None: there is no file."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._forget_view()
            return None
        inode = (stat.st_dev, stat.st_ino)
        view = self.view
        if view is None or view.inode != inode or stat.st_size < view.offset:
            self._forget_view()
            try:
                fd = os.open(self.path, os.O_RDONLY | _O_CLOEXEC)
            except FileNotFoundError:
                return None
            stat = os.fstat(fd)
            self.fd = fd
            try:
                base = _header(fd, stat.st_size)
            except (Damaged, OSError):
                base = None  # damaged: a journal only, for now (the next ordered read rebuilds)
            view = self.view = View((stat.st_dev, stat.st_ino), base,
                                    0 if base is None else base.journal_at)
        if stat.st_size > view.offset:
            view.read_journal(os.pread(self.fd, stat.st_size - view.offset, view.offset))
        return view

    def read(self, sessions: list[tuple[str, str]], *, whole: bool) -> list[tuple[str, bytes | None]]:
        """Each session's entry if its lock page vouches for it; ``whole``: these are every
        session of the store (so the journal may be folded into a new base)."""
        with self.lock:
            view = self._refresh()
            found: list[tuple[str, bytes | None]] = []
            if view is None:
                return [(sid, None) for sid, _ in sessions]
            try:
                if view.base is not None and view.everything is None:
                    view.everything = view.base.everything()
            except (Damaged, OSError):
                view.base = None  # damaged: its entries are not used (the sessions are refolded)
                view.everything = {}
            for sid, directory in sessions:
                kept = view.newest(sid)
                found.append((sid, None if kept is None or read_page(directory) != kept[0]
                              else kept[1]))
            if whole and view.base is not None and view.lines > COMPACT_AT:
                self._compact(view, None, {sid for sid, _ in sessions})
        return found

    def walk(self, order: str, descending: bool, start: float | None,
             refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        """The sessions in ``(order key, id)`` order (descending: reversed) from the key
        ``start`` on, each with its entry, checked against its page (or refolded when the page
        does not vouch for it; None: gone); None if the file has no base (a rebuild is due)."""
        with self.lock:
            view = self._refresh()
            if view is not None and view.base is not None and view.lines > COMPACT_AT:
                view = self._compact(view, None)
            if view is None or view.base is None:
                return None
            shared = view.base
            # Its own descriptor: another thread may replace the view (and close its one).
            base = dataclasses.replace(shared, fd=os.dup(shared.fd))
            overlay = dict(view.entries)
            unsure = view.outstanding()
        try:
            keyed = self._keyed(self._settle(view, overlay, unsure, refold), order, refold)
            keyed.sort(reverse=descending)
            if start is not None:
                keyed = [k for k in keyed if (k[0] <= start if descending else k[0] >= start)]
            ordered = heapq.merge(self._base_walk(base, order, descending, start, set(overlay)),
                                  keyed, key=lambda k: (k[0], k[1]), reverse=descending)
        except (Damaged, OSError):
            self._damaged(shared)
            os.close(base.fd)
            return None
        except BaseException:
            os.close(base.fd)
            raise
        return self._checked(ordered, refold, base, shared)

    @staticmethod
    def _keyed(entries: dict[str, Entry | None], order: str,
               refold: Refold) -> list[tuple[float, str, Entry]]:
        """The journal's (settled) entries with their keys; one saved without keys is
        refolded for them."""
        keyed = []
        for sid, found in entries.items():
            entry = found
            if entry is None:
                continue
            key = entry[2] if order == "created_at" else entry[3]
            if key is None:
                again = refold(sid)
                if again is None:
                    continue
                entry = (None, again[1], again[2], again[3])
                key = again[2] if order == "created_at" else again[3]
            keyed.append((key, sid, entry))
        return keyed

    def _settle(self, view: View, overlay: dict[str, Entry | None], unsure: set[str],
                refold: Refold) -> dict[str, Entry | None]:
        """The journal's entries, with every marked session's page checked: a session whose
        page does not vouch for its newest entry is refolded (invariant 2)."""
        for sid in unsure:
            entry = overlay[sid] if sid in overlay else view.newest(sid)
            if entry is not None and read_page(self.directory(sid)) == entry[0]:
                overlay[sid] = entry
                continue
            refolded = refold(sid)
            overlay[sid] = None if refolded is None else (
                None, refolded[1], refolded[2], refolded[3])
        return overlay

    def _base_walk(self, base: Base, order: str, descending: bool, start: float | None,
                   skip: set[str]) -> Iterator[tuple[float, str, Entry]]:
        count = base.count
        if start is None:
            position = count - 1 if descending else 0
        else:
            position = self._bisect(base, order, start, descending)
        while 0 <= position < count:
            first, last = ((max(0, position - _CHUNK + 1), position + 1) if descending
                           else (position, min(count, position + _CHUNK)))
            chunk = base.keys(order, first, last)
            for key, start, length in (reversed(chunk) if descending else chunk):
                sid, entry = base.line(start, length)
                if sid not in skip:
                    yield key, sid, entry
            position = first - 1 if descending else last

    @staticmethod
    def _bisect(base: Base, order: str, start: float, descending: bool) -> int:
        """The first record to walk from: keys >= ``start`` ascending, <= it descending."""
        low, high = 0, base.count
        while low < high:
            mid = (low + high) // 2
            key = base.keys(order, mid, mid + 1)[0][0]
            if key < start or (descending and key == start):
                low = mid + 1
            else:
                high = mid
        return low - 1 if descending else low

    def _checked(self, ordered: Iterator[tuple[float, str, Entry]], refold: Refold,
                 base: Base, shared: Base | None) -> Iterator[tuple[str, bytes | None]]:
        try:
            for _key, sid, entry in ordered:
                if entry[0] is None or read_page(self.directory(sid)) == entry[0]:
                    yield sid, entry[1]
                    continue
                # Written to since (shown where it stood), or gone (left out).
                refolded = refold(sid)
                if refolded is not None:
                    yield sid, refolded[1]
        except (Damaged, OSError) as exc:
            self._damaged(shared)
            raise CatalogUnusable(f"the session catalog is damaged ({exc})") from exc
        finally:
            os.close(base.fd)

    def _damaged(self, base: Base | None) -> None:
        with self.lock:
            if self.view is not None and self.view.base is base:
                self.view.base = None  # the next ordered read rebuilds

    # Building the base -------------------------------------------------------------------

    def rebuild(self, entries: list[tuple[str, Head, bytes, tuple[float, float]]]) -> None:
        """A new base of exactly these entries (the store's listing of every session, each
        checked against its page or folded just now), carrying every outstanding mark."""
        fresh: dict[str, Entry] = {}
        for sid, head, blob, keys in entries:
            version = read_page(self.directory(sid))
            if version is not None and version[1:] == (head.seq, head.digest):
                fresh[sid] = (version, blob, keys[0], keys[1])
        with self.lock:
            view = self._refresh()
            if view is None:
                self._append(b"")  # the file to lock
                view = self._refresh()
            if view is not None:
                self._compact(view, fresh)

    def _compact(self, view: View, fresh: dict[str, Entry] | None,
                 live: set[str] | None = None, drop: str | None = None, *,
                 marks_only: bool = False) -> View | None:
        """Invariant 3: the journal folded into a new base (or, with ``fresh``, a base of
        those entries; ``drop``: without any entry of that session, also in a file with no
        base; ``marks_only``: the outstanding marks alone), renamed over the file; call it
        holding ``self.lock``."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        temp = self.path.with_name(f"{CATALOG_FILE}.{uuid.uuid4().hex}.tmp")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) != view.inode:
                return self._refresh()  # replaced meanwhile: someone else compacted
            if stat.st_size > view.offset:
                view.read_journal(os.pread(self.fd, stat.st_size - view.offset, view.offset))
            if marks_only:
                data = b"".join(orjson.dumps(["m", sid, token]) + b"\n"
                                for sid, tokens in view.open_marks() for token in tokens)
            elif fresh is not None:
                data = _encode(fresh, view.open_marks())
            elif view.base is not None:
                data = _encode(_merged(view, live, drop), view.open_marks())
            elif drop is not None:
                data = _without(os.pread(fd, stat.st_size, 0), drop)
            else:
                return view
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, self.mode)
            try:
                os.write(out, data)
                os.fsync(out)
            finally:
                os.close(out)
            os.rename(temp, self.path)
        except (Damaged, OSError):
            temp.unlink(missing_ok=True)
            return None  # derived data: the next reader tries again
        finally:
            os.close(fd)  # lets the writers waiting for the old file go on (to the new one)
        return self._refresh()


def _merged(view: View, live: set[str] | None, drop: str | None) -> dict[str, Entry]:
    """The base's entries with the journal's applied (the newest entry of each session)."""
    assert view.base is not None
    merged = dict(view.everything if view.everything is not None else view.base.everything())
    for sid, entry in view.entries.items():
        if entry is None:
            merged.pop(sid, None)
        elif entry[2] is not None and entry[3] is not None:
            merged[sid] = entry
        # else: an entry without keys; the older one stays (checked by its page)
    if live is not None:  # a listing of every session: drop the deleted ones
        merged = {sid: entry for sid, entry in merged.items() if sid in live}
    merged.pop(drop or "", None)
    return merged


def _without(data: bytes, session_id: str) -> bytes:
    """A journal's lines that parse, less the entries of ``session_id`` (a redaction: no byte
    of what they said may stay, not even in a torn line)."""
    kept = []
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(row) is list and len(row) > 1 and not (row[0] == "e" and row[1] == session_id):
            kept.append(line + b"\n")
    return b"".join(kept)


def _encode(entries: dict[str, Entry], marks: list[list[Any]]) -> bytes:
    """A base: header, entry lines by id, the offset table, the two order tables."""
    ids = sorted(entries)
    lines = []
    for sid in ids:
        version, blob, created, last = entries[sid]
        assert version is not None  # only entries read from the file (or checked) come here
        life, seq, digest = version
        lines.append(orjson.dumps([sid, life.hex(), seq, digest, blob.decode(), created, last])
                     + b"\n")
    by_last = sorted(range(len(ids)), key=lambda i: (entries[ids[i]][3], i))
    by_created = sorted(range(len(ids)), key=lambda i: (entries[ids[i]][2], i))
    lengths = [len(line) for line in lines]
    body_size = sum(len(line) for line in lines)

    def header(entries_at: int) -> bytes:
        offsets_at = entries_at + body_size
        tables = offsets_at + 8 * (len(ids) + 1)
        return (MAGIC + orjson.dumps({"sessions": len(ids), "offsets": offsets_at,
                                      "tables": [tables, tables + _KEY.size * len(ids)],
                                      "journal": tables + 2 * _KEY.size * len(ids) + 1,
                                      "marks": marks})[1:] + b"\n")

    # The header holds its own length: grow it until it is stable.
    size = 0
    top = header(size)
    while len(top) != size:
        size = len(top)
        top = header(size)
    offsets = [size]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    return b"".join([top, *lines, b"".join(_OFFSET.pack(o) for o in offsets),
                     b"".join(_KEY.pack(entries[ids[i]][3], offsets[i], lengths[i]) for i in by_last),
                     b"".join(_KEY.pack(entries[ids[i]][2], offsets[i], lengths[i])
                              for i in by_created), b"\n"])

