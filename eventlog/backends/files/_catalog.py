"""The file backend's session catalog: summaries of every session, kept beside the logs.

Invariants (what every reader and writer relies on):

1. **Derived, never trusted over the logs.** An entry names the head it was made for (the
   session's life, last seq and head digest). A reader uses it only if the session's lock
   page says, right now, that the head is exactly that one (published: an even, non-zero
   generation); otherwise the store folds the session from its log and saves a new entry.
   So a missing, stale, damaged or foreign catalog costs time, never a wrong answer about a
   head the page vouches for. (Damage to a log that does not move its head is ``verify``'s
   to find, as for every other reader.)
2. **Append-only, one write per batch.** Entries are JSON lines appended to
   ``<root>/.catalog`` with ``O_APPEND``, a batch in one ``write``: writers of any process
   never overwrite each other. A line counts only if it ends in ``\\n`` and parses: a torn
   line (a writer killed mid-write) is skipped, and that session folded again; each batch
   starts with a newline, so a torn line never swallows the next batch's first line.
3. **The newest line of a session wins**, and only if invariant 1 holds for it.
4. **Compaction is a rename.** When the file holds more than twice as many lines as live
   entries (and over ``COMPACT_AT`` lines), a reader writes the newest entry of every
   session it listed to a temporary file and renames it over ``.catalog``. Entries appended
   to the old file meanwhile are lost, which only makes them stale (invariant 1). Readers
   notice the new file by its inode and read it whole.
5. **Cheap on the append path.** Appends never touch the catalog: the store saves entries
   behind its writers (at ``close``, before it lists, and in batches), and readers refresh
   what is stale. A listing costs one read of each session's 64-byte lock page, plus the
   new part of the catalog file.
6. **Nothing outside the store.** The file and its temporaries live in the store's root
   and start with ``.`` (not sessions: see the README's format section); ``eventlog
   reindex`` removes them and builds the catalog again.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import orjson

from ...core._codec import Head

CATALOG_FILE = ".catalog"
COMPACT_AT = 4096
PAGE_BYTES = 64
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

Version = tuple[bytes, int, str]
"""A head as a lock page states it: the life's 16 bytes, the last seq, the head digest."""


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


class FileCatalog:
    """One store's catalog file, with what this process has read of it."""

    def __init__(self, root: Path, mode: int) -> None:
        self.path = root / CATALOG_FILE
        self.mode = mode
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[Version, bytes]] = {}
        self.lines = 0
        self.offset = 0
        self.inode: tuple[int, int] | None = None

    def _refresh(self) -> None:
        """Read what was appended since the last look (all of it for a new file)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            self.entries, self.lines, self.offset, self.inode = {}, 0, 0, None
            return
        try:
            stat = os.fstat(fd)
            inode = (stat.st_dev, stat.st_ino)
            if inode != self.inode or stat.st_size < self.offset:
                self.entries, self.lines, self.offset, self.inode = {}, 0, 0, inode
            if stat.st_size == self.offset:
                return
            data = os.pread(fd, stat.st_size - self.offset, self.offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            if not line:
                continue
            self.lines += 1
            try:
                sid, life, seq, digest, blob = orjson.loads(line)
                version = (bytes.fromhex(life), seq, digest)
            except (orjson.JSONDecodeError, ValueError, TypeError):
                continue  # torn, or run into by the next writer: invariant 2
            if type(sid) is str and type(blob) is str:
                self.entries[sid] = (version, blob.encode())
        self.offset += end

    def read(self, sessions: list[tuple[str, str]], *, whole: bool) -> list[tuple[str, bytes | None]]:
        """Each session's entry if its lock page vouches for it; ``whole``: these are every
        session of the store (so the file may be compacted to them)."""
        with self.lock:
            self._refresh()
            found: list[tuple[str, bytes | None]] = []
            for sid, directory in sessions:
                kept = self.entries.get(sid)
                if kept is None:
                    found.append((sid, None))
                    continue
                found.append((sid, kept[1] if read_page(directory) == kept[0] else None))
            if whole and self.lines > COMPACT_AT and self.lines > 2 * len(sessions):
                self._compact({sid for sid, _ in sessions})
        return found

    def write(self, entries: list[tuple[str, str, Head, bytes]]) -> None:
        lines = []
        for sid, directory, head, blob in entries:
            version = read_page(directory)
            if version is None or version[1:] != (head.seq, head.digest):
                continue  # the page does not vouch for this head: the entry could never be used
            lines.append(orjson.dumps([sid, version[0].hex(), head.seq, head.digest,
                                       blob.decode()]) + b"\n")
        if not lines:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, self.mode)
        try:
            # One write (invariant 2), starting with a newline: a line torn by a writer killed
            # mid-write ends there, instead of swallowing this batch's first line.
            os.write(fd, b"\n" + b"".join(lines))
        finally:
            os.close(fd)

    def _compact(self, live: set[str]) -> None:
        """Invariant 4: the newest entry of each live session, renamed over the file."""
        temp = self.path.with_name(f"{CATALOG_FILE}.{uuid.uuid4().hex}.tmp")
        kept = {sid: entry for sid, entry in self.entries.items() if sid in live}
        data = b"".join(orjson.dumps([sid, version[0].hex(), version[1], version[2], blob.decode()])
                        + b"\n" for sid, (version, blob) in kept.items())
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, self.mode)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.rename(temp, self.path)
        except OSError:
            temp.unlink(missing_ok=True)
            return  # derived data: the next reader tries again
        self.entries, self.lines, self.offset, self.inode = kept, len(kept), len(data), None
        try:
            stat = os.stat(self.path)
            self.inode = (stat.st_dev, stat.st_ino)
            if stat.st_size != len(data):  # someone appended already: read it from the start
                self.entries, self.lines, self.offset, self.inode = {}, 0, 0, None
        except OSError:
            self.entries, self.lines, self.offset, self.inode = {}, 0, 0, None

    def drop(self, session_id: str) -> None:
        """Rewrite the file without any entry of ``session_id`` (a redaction erased what its
        entries said: see ``_redaction``); the other sessions keep their newest entries.
        Entries appended by others meanwhile are lost, which only makes them stale."""
        with self.lock:
            self._refresh()
            if not self.path.exists():
                return
            self._compact(set(self.entries) - {session_id})
            if self.inode is None and self.path.exists():  # appended to meanwhile: again
                self._refresh()
                self._compact(set(self.entries) - {session_id})

    def remove(self) -> None:
        """Drop the catalog (``eventlog reindex`` builds it again)."""
        with self.lock:
            for path in self.path.parent.glob(f"{CATALOG_FILE}*"):
                path.unlink(missing_ok=True)
            self.entries, self.lines, self.offset, self.inode = {}, 0, 0, None
