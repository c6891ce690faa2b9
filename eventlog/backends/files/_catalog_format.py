"""The session catalog file's format (see ``_catalog``): the lock page a reader checks an entry
against, the base (its header, entry lines and order tables), what a process has read of a
file (``View``), and writing a base."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

PAGE_BYTES = 64
MAGIC = b'{"eventlog_catalog":2,'
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
KEY = struct.Struct("<dQI")  # the key, and where the entry line is: offset, length
OFFSET = struct.Struct("<Q")

Version = tuple[bytes, int, str]
"""A head as a lock page states it: the life's 16 bytes, the last seq, the head digest."""

Entry = tuple[Version | None, bytes, float | None, float | None]
"""A session's newest entry: its head (None: folded just now by this reader), the store's
blob, created_at and last_activity (None when the writer gave no keys)."""


def read_page(directory: str) -> Version | None:
    """The head a session's lock page vouches for, or None (gone, never published, or an
    append under way or cut short: only the log can tell then)."""
    try:
        fd = os.open(directory + "/lock", os.O_RDONLY | O_CLOEXEC)  # a str: pathlib costs more
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
        return base_line(os.pread(self.fd, end - start, start))

    def line(self, start: int, length: int) -> tuple[str, Entry]:
        if not (self.entries_at <= start and start + length <= self.offsets_at and length > 0):
            raise Damaged("entry out of range")
        return base_line(os.pread(self.fd, length, start))

    def keys(self, order: str, first: int, last: int) -> list[tuple[float, int, int]]:
        """Records ``first`` to ``last`` (exclusive) of an order's table."""
        at = self.tables[order] + KEY.size * first
        raw = os.pread(self.fd, KEY.size * (last - first), at)
        if len(raw) != KEY.size * (last - first):
            raise Damaged("short order table")
        return list(KEY.iter_unpack(raw))

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
            sid, entry = base_line(line)
            found[sid] = entry
        if len(found) != self.count:
            raise Damaged("entry count")
        return found


def base_line(line: bytes) -> tuple[str, Entry]:
    try:
        sid, life, seq, digest, blob, created, last = orjson.loads(line)
        entry = ((bytes.fromhex(life), seq, digest), blob.encode(), float(created), float(last))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise Damaged(f"entry line: {exc}") from None
    if type(sid) is not str:
        raise Damaged("entry line")
    return sid, entry


def read_header(fd: int, size: int) -> Base | None:
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
            == base.tables["last_activity"] and tables[0] + KEY.size * count == tables[1]
            and tables[1] + KEY.size * count + 1 == journal <= size):
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
                # ["f", id, [tokens], life]: only an entry of that life (or none) is forgotten;
                # one of a newer life (the id created anew before the line was written) stays.
                kept = self.entries.get(sid)
                if not (len(row) > 3 and kept is not None and kept[0] is not None
                        and kept[0][0].hex() != row[3]):
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


def merged(view: View, live: set[str] | None, drop: str | None) -> dict[str, Entry]:
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


def without(data: bytes, session_id: str) -> bytes:
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


def encode(entries: dict[str, Entry], marks: list[list[Any]]) -> bytes:
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
                                      "tables": [tables, tables + KEY.size * len(ids)],
                                      "journal": tables + 2 * KEY.size * len(ids) + 1,
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
    return b"".join([top, *lines, b"".join(OFFSET.pack(o) for o in offsets),
                     b"".join(KEY.pack(entries[ids[i]][3], offsets[i], lengths[i]) for i in by_last),
                     b"".join(KEY.pack(entries[ids[i]][2], offsets[i], lengths[i])
                              for i in by_created), b"\n"])

