"""Where the Redis backend keeps a session's archived (compacted) records.

Two tiers, one interface. ``StreamArchive`` keeps compressed chunks in Redis itself, in
the session's ``arch`` stream, written by the same script that moves the archive mark and
trims the log, so the records are always in one place or the other. ``FileArchive`` is a
cold tier on disk (the original design's hot/cold split): the records go, durably, to a
JSONL file store first, the same lines under the same session id, and only then does the
script move the mark and trim Redis.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from ...core._codec import Head, Record, Unparseable, link, parse
from ...core._errors import CorruptLogError, SessionExistsError, SessionNotFoundError
from .._chunks import pack, rows_in
from .._rows import Rows


class _Keys(Protocol):
    """What the stream archive uses of ``RedisBackend`` (a protocol: no import back up)."""

    def keys(self, session_id: str) -> list[str]: ...

    def transaction(self, what: str, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]: ...


Chunk = tuple[int, int, bytes]


def _missing(session_id: str, seq: int, where: str) -> CorruptLogError:
    return CorruptLogError(f"session {session_id!r}: archived seq {seq} is missing from the "
                           f"{where}", session_id=session_id, seq=seq, where=where)


class StreamArchive:
    """Chunks in the session's ``arch`` stream: entry ``0-<first seq>`` holds ``last``, ``z``."""

    def __init__(self, backend: _Keys) -> None:
        self.backend = backend

    def store(self, session_id: str, rows: Rows) -> list[Chunk]:
        """Nothing is written here: the chunks go to the archive script, to add atomically."""
        return pack(rows)

    def rows(self, session_id: str, generation: Any, first: int, last: int, limit: int,
             *, newest_first: bool) -> Rows:
        head_key, _log, _snap, arch_key = self.backend.keys(session_id)[:4]
        found: Rows = []
        cursor = last if newest_first else first  # the seq the next chunk read must hold
        while len(found) < limit and first <= cursor <= last:
            # Chunk ids are their first seqs: the one holding ``cursor`` is the last at or below it.
            reads: list[tuple[str, tuple[Any, ...]]] = [
                ("hget", (head_key, "g")),
                ("xrevrange", (arch_key, f"0-{cursor}", "-", 4 if newest_first else 1))]
            if not newest_first:
                reads.append(("xrange", (arch_key, f"(0-{cursor}", f"0-{last}", 3)))
            current, *parts = self.backend.transaction(f"reading the archive of {session_id!r}",
                                                       reads)
            if current != generation:
                return []
            chunks = [(int(i.partition(b"-")[2]), int(f[b"last"]), f[b"z"])
                      for part in parts for i, f in part]
            if not chunks or chunks[0][1] < cursor:
                raise _missing(session_id, cursor, "Redis archive")
            low, high = (first, cursor) if newest_first else (cursor, last)
            got = rows_in(session_id, chunks, low, high, limit - len(found),
                          newest_first=newest_first)
            found += got
            cursor = got[-1][0] - 1 if newest_first else got[-1][0] + 1
        return found

    def delete(self, session_id: str) -> None:
        """The session's keys, ``arch`` among them, go in the delete script."""

    def size(self, session_id: str) -> int:
        return 0  # counted by the scripts, in the head's ``ab``


class FileArchive:
    """A cold tier: the archived records in a JSONL file store at ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        from ..files._backend import FileBackend
        self.files = FileBackend(root, create=create)

    def _head(self, session_id: str) -> Head | None:
        try:
            for _source, _lineno, line in self.files.scan_back(session_id):
                try:
                    obj, _body, digest = parse(line)
                except Unparseable:
                    continue  # a torn tail: the file store's next writer cuts it off
                return Head(obj["seq"], digest)
        except SessionNotFoundError:
            return None
        return None

    def store(self, session_id: str, rows: Rows) -> list[Chunk]:
        """Write ``rows`` (from the seq after the archive mark) to the file store, durably,
        continuing what is there, beside another compactor doing the same; what an earlier
        life of the id left there is removed."""
        records = [_record(session_id, seq, line) for seq, line in rows]
        head = self._head(session_id)
        if head is not None and not self._holds_or_continues(session_id, head, records):
            if records[0].seq != 1:
                raise CorruptLogError(f"session {session_id!r}: the file archive does not "
                                      f"continue at seq {records[0].seq}", session_id=session_id,
                                      seq=records[0].seq, where="file archive")
            self.files.delete(session_id)  # an earlier life's, left by a crash in a delete
            head = None
        if head is None:
            if records[0].seq != 1:
                raise _missing(session_id, 1, "file archive")
            try:
                self.files.create(session_id, records[0], durable=True)
            except SessionExistsError:
                pass  # another compactor of this session got there first

        def build(found: Head) -> list[Record]:
            # Under the file store's lock: write what the copy does not hold yet.
            if found.seq >= records[-1].seq:
                return []
            if not _continues(found, records, self.files.record_version):
                raise CorruptLogError(f"session {session_id!r}: the file archive changed "
                                      "while it was written", session_id=session_id,
                                      where="file archive")
            return [r for r in records if r.seq > found.seq]

        self.files.append(session_id, build, durable=True)
        # The file store compacts its own copy: seal its segment, gzip what is sealed.
        self.files.seal(session_id, durable=True)
        self.files.archive(session_id)
        return []

    def _holds_or_continues(self, session_id: str, head: Head, records: list[Record]) -> bool:
        last = records[-1]
        if head.seq > last.seq:  # a compactor beside us wrote further: it must agree at ``last``
            held = self.rows(session_id, None, last.seq, last.seq, 1, newest_first=False)
            return held == [(last.seq, last.line)]
        return _continues(head, records, self.files.record_version)

    def rows(self, session_id: str, generation: Any, first: int, last: int, limit: int,
             *, newest_first: bool) -> Rows:
        try:
            lines = (self.files.scan_back(session_id) if newest_first
                     else self.files.scan(session_id, first - 1, None).lines)
            found: Rows = []
            for _source, _lineno, line in lines:
                if not line.startswith(b'{"seq":'):
                    continue
                seq = int(line[7:line.index(b",")])
                if seq < first or seq > last:
                    if (seq < first) == newest_first:
                        break
                    continue
                found.append((seq, line))
                if len(found) == limit:
                    break
        except SessionNotFoundError:
            raise _missing(session_id, first, "file archive") from None
        expected = last if newest_first else first
        if found and found[0][0] != expected:
            raise _missing(session_id, expected, "file archive")
        return found

    def delete(self, session_id: str) -> None:
        try:
            self.files.delete(session_id)
        except SessionNotFoundError:
            pass

    def size(self, session_id: str) -> int:
        try:
            return self.files.size(session_id)
        except SessionNotFoundError:
            return 0


def _record(session_id: str, seq: int, line: bytes) -> Record:
    try:
        _obj, _body, digest = parse(line)
    except Unparseable:
        raise CorruptLogError(f"session {session_id!r}, seq {seq}: unreadable record",
                              session_id=session_id, seq=seq, where="redis") from None
    return Record(seq, digest, line)


def _continues(head: Head, records: list[Record], version: int) -> bool:
    """Whether a file copy ending at ``head`` is this life's: it holds, or chains into, them."""
    first, last = records[0].seq, records[-1].seq
    if head.seq == first - 1:
        body = parse(records[0].line)[1]
        return link(head.digest, body, version) == records[0].digest
    if first <= head.seq <= last:
        return records[head.seq - first].digest == head.digest
    return False
