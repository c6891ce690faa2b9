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
   session's life, last seq and head digest). An ordered read uses it only if the session's
   lock page says, right now, that the head is exactly that one (published: an even,
   non-zero generation); otherwise the store folds the session from its log. A listing of
   sessions by id checks the pages of the sessions with a mark outstanding only (invariant
   2: the others were not written to since their entries), and lists only the sessions
   whose directories it found. So a missing, stale, damaged or foreign catalog costs time,
   never a wrong answer about a head the page vouches for; what only a page check would
   catch is a write by a process that leaves no marks (an earlier release: ``eventlog
   reindex`` after it).
2. **Marks say where to look.** A process writes a mark for a session before it first
   creates (``create``, ``create_log``), appends to or redacts it (and again after each time
   its mark was cleared), under the session's lock, and clears its own mark only with an
   entry for the head the lock page shows while it holds that lock again. So a session that
   is in the index and has no outstanding mark has the entry the index holds (checked by
   invariant 1 all the same), and an ordered read only checks the pages of the marked
   sessions, not of every session: a writer killed after its mark leaves the mark (the
   session is checked and refolded), never a stale entry that nobody checks. The mark is in
   the file before the write it announces; only a store written without marks (another
   release) needs a rebuild, which a file without a base gets on the first ordered read.
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
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from ...core._codec import Head
from .._base import CatalogUnusable
from ._catalog_format import (
    MAGIC,
    O_CLOEXEC,
    Base,
    Damaged,
    Entry,
    Version,
    View,
    encode,
    merged,
    read_header,
    read_page,
    without,
)

__all__ = ["CATALOG_FILE", "COMPACT_AT", "MAGIC", "FileCatalog", "Version", "read_page"]

CATALOG_FILE = ".catalog"
_CHUNK = 256  # order-table records read at a time
COMPACT_AT = 2048
"""Journal lines after which a reader folds the journal into a new base (a cold ordered
read parses the whole journal: this keeps that a few milliseconds)."""
Refold = Callable[[str], "tuple[Head, bytes, float, float] | None"]
"""The store's fold of a session the catalog can't vouch for: its head, entry and keys, or
None (gone, or damaged); ``Backend.catalog_walk``'s."""


def _close_boxed(box: list[int]) -> None:
    if box[0] >= 0:
        os.close(box[0])
        box[0] = -1


class FileCatalog:
    """One store's catalog file, with what this process has read of it and the marks this
    process has outstanding."""

    def __init__(self, root: Path, mode: int, directory: Callable[[str], str]) -> None:
        self.path = root / CATALOG_FILE
        self.mode = mode
        self.directory = directory
        self.lock = threading.Lock()
        self.view: View | None = None
        # The view's descriptor, in a box a finalizer holds: a store dropped without close()
        # (the backend and this object refer to each other, so only the cyclic collector
        # frees them) still lets go of it.
        self._fd_box = [-1]
        weakref.finalize(self, _close_boxed, self._fd_box)
        self.marked: dict[str, str] = {}  # session id -> this process's outstanding token
        self.pid = os.getpid()
        self.prefix = uuid.uuid4().hex[:12]
        self.counter = 0

    # Writing -----------------------------------------------------------------------------

    def _append(self, data: bytes, *, durable: bool = False) -> None:
        """Invariant 3: append under a shared flock of the file the path names now."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_CLOEXEC, self.mode)
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

    def forget_many(self, deleted: list[tuple[str, bytes | None]]) -> None:
        """These sessions were deleted (each id with the life it had, when known): their
        entries of that life no longer hold, and this process's marks of them are cleared;
        one append for them all. The life keeps a line written after the id was created
        anew (a batch is written after its deletes) from hiding the new session's entry."""
        lines = []
        with self.lock:
            for sid, life in deleted:
                token = self.marked.pop(sid, None)
                row: list[object] = ["f", sid, [] if token is None else [token]]
                if life is not None:
                    row.append(life.hex())
                lines.append(orjson.dumps(row) + b"\n")
        if lines:
            self._append(b"\n" + b"".join(lines))

    def wants_rebuild(self, listed: int | None) -> bool:
        """Whether the file has no base (missing, damaged, or a journal only); after a
        listing of every session (``listed`` of them), only if its journal is also long for
        them: a new base costs a rewrite of the file, which an ordered read needs and a plain
        listing does not (a long journal is re-read by every new reader)."""
        with self.lock:
            view = self._refresh()
            if view is not None and view.base is not None:
                return False
            lines = 0 if view is None else view.lines
            return listed is None or (lines > COMPACT_AT and lines > 4 * listed)

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

    def close(self) -> None:
        """Let go of the view's descriptor (the store is closing; a later read opens anew)."""
        with self.lock:
            self._forget_view()

    @property
    def fd(self) -> int:
        return self._fd_box[0]

    @fd.setter
    def fd(self, fd: int) -> None:
        self._fd_box[0] = fd

    def _forget_view(self) -> None:
        _close_boxed(self._fd_box)
        self.view = None

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
                fd = os.open(self.path, os.O_RDONLY | O_CLOEXEC)
            except FileNotFoundError:
                return None
            stat = os.fstat(fd)
            self.fd = fd
            try:
                base = read_header(fd, stat.st_size)
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
            # Invariant 2: only a session with a mark outstanding may have been written to
            # since its entry; the others' entries hold, and their pages are not read (one
            # read of the file for a listing of every session, not one per session).
            unsure = view.outstanding()
            for sid, directory in sessions:
                kept = view.newest(sid)
                found.append((sid, None if kept is None or kept[0] is None or (
                    sid in unsure and read_page(directory) != kept[0]) else kept[1]))
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
            fd = os.open(self.path, os.O_RDONLY | O_CLOEXEC)
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
                data = encode(fresh, view.open_marks())
            elif view.base is not None:
                data = encode(merged(view, live, drop), view.open_marks())
            elif drop is not None:
                data = without(os.pread(fd, stat.st_size, 0), drop)
            else:
                return view
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, self.mode)
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


