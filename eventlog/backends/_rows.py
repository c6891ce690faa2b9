"""Reading for backends that keep each record as a row addressed by (session, seq).

Memory, SQLite and Redis all store one record line per seq and can fetch any range of
seqs directly, so forward scans, backward scans and the cheap last seq are the same
code for all three; each fills in two hooks: the session's head and a page of rows.

A *generation* names one life of a session id (it changes when the id is deleted and
created again), so a scan that pages through a session while it is deleted and created
again stops at the deletion instead of splicing two different logs together.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

from ..core._codec import Head, Unparseable, genesis, parse
from ._base import Backend, Chunks, Lines, Scan

Rows = list[tuple[int, bytes]]


def _anywhere() -> dict[str, Any]:
    """A row backend reads from any seq directly, so it needs no position to resume; saying
    so (an empty one, not None) lets the store keep the fold a reader reached and resume
    it, after checking by digest that the log still continues from it."""
    return {}


class RowBackend(Backend):
    """A ``Backend`` whose records are rows keyed by seq; subclasses keep the bytes."""

    page_size = 1000
    """Rows fetched per round trip by forward scans (backward scans start smaller)."""

    source = "rows"
    """How error messages name where a record lives (the seq serves as its line number)."""

    @abstractmethod
    def read_head(self, session_id: str) -> tuple[Any, Head]:
        """The session's generation and head; raise ``SessionNotFoundError`` if it is gone."""

    @abstractmethod
    def read_rows(self, session_id: str, generation: Any, first: int, last: int | None,
                  limit: int, *, newest_first: bool = False) -> Rows:
        """Up to ``limit`` rows with ``first <= seq <= last`` (``last`` None: no bound), in
        seq order (or reversed); empty once that generation of the session is gone."""

    def scan(self, session_id: str, after_seq: int, position: dict[str, Any] | None) -> Scan:
        generation, head = self.read_head(session_id)
        start, first = genesis(session_id), 1
        if after_seq >= head.seq:
            start, first = head, head.seq + 1
        elif after_seq > 0:
            # Start right after ``after_seq``, chained from the digest its record states; a
            # record that does not read back sends the scan to the start, where the whole
            # chain is checked (a backend may start earlier; the store skips).
            for seq, line in self.read_rows(session_id, generation, after_seq, after_seq, 1):
                try:
                    obj, _body, digest = parse(line)
                except Unparseable:
                    break
                if obj["seq"] == seq:
                    start, first = Head(seq, digest), seq + 1
        return Scan(start, self._lines(session_id, generation, first), _anywhere,
                    self._chunks(session_id, generation, first))

    def _pages(self, session_id: str, generation: Any, first: int) -> Iterator[Rows]:
        page = self.page_size
        while True:
            rows = self.read_rows(session_id, generation, first, None, page)
            if rows:
                yield rows
            if len(rows) < page:
                return
            first = rows[-1][0] + 1

    def _lines(self, session_id: str, generation: Any, first: int) -> Lines:
        for rows in self._pages(session_id, generation, first):
            for seq, line in rows:
                yield self.source, seq, line

    def _chunks(self, session_id: str, generation: Any, first: int) -> Chunks:
        source = self.source
        for rows in self._pages(session_id, generation, first):
            # Lines are bytes; a value someone rewrote as text (SQLite's replace() returns
            # TEXT) is handed over as its bytes, for the chain to judge (the replay loop
            # takes bytes only).
            lines = [line if type(line) is bytes else _as_bytes(line) for _seq, line in rows]
            if rows[-1][0] - rows[0][0] == len(rows) - 1:  # gapless, so line numbers are seqs
                yield source, rows[0][0], lines
            else:
                for (seq, _line), line in zip(rows, lines, strict=True):
                    yield source, seq, [line]

    def scan_back(self, session_id: str) -> Lines:
        generation, _head = self.read_head(session_id)
        last: int | None = None
        page = 64  # most backward reads want the newest few dozen messages
        while True:
            rows = self.read_rows(session_id, generation, 1, last, page, newest_first=True)
            for seq, line in rows:
                yield self.source, seq, line
            if len(rows) < page or rows[-1][0] <= 1:
                return
            last = rows[-1][0] - 1
            page = min(page * 4, self.page_size)

    def last_seq(self, session_id: str) -> int:
        return self.read_head(session_id)[1].seq

    def incarnation(self, session_id: str) -> object:
        return self.read_head(session_id)[0]  # the generation names the life

    def check(self, session_id: str) -> list[str]:
        """The stored head must be the last record: appends update both in one transaction."""
        generation, head = self.read_head(session_id)
        rows = self.read_rows(session_id, generation, 1, None, 1, newest_first=True)
        if not rows:
            return [f"session {session_id!r}: head at seq {head.seq} but no records"]
        seq, line = rows[0]
        try:
            digest = parse(line)[2]
        except Unparseable:
            return []  # the chain check reports the record itself
        if seq != head.seq or digest != head.digest:
            return [f"session {session_id!r}: stored head (seq {head.seq}) does not match "
                    f"the last record (seq {seq})"]
        return []


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()
