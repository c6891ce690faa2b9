"""Archived records of the row backends, packed into compressed chunks.

Compaction moves a session's sealed records out of its live rows into chunks: runs of
whole record lines (the same bytes), joined by newlines (a record line never holds
one) and zlib-compressed, each known by its first and last seq. SQLite keeps them in a
table and Redis in a stream; reading merges chunks and live rows back into one run of
rows, so replay, the chain check and ``verify`` see no difference.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from ..core._errors import CorruptLogError, RedactionError
from ._rows import Rows

CHUNK_BYTES = 64 << 10
"""Raw bytes of lines per chunk: big enough to compress well, small enough that reading one
record costs one small inflate."""


def pack(rows: Rows, target: int = CHUNK_BYTES) -> list[tuple[int, int, bytes]]:
    """Consecutive rows as ``(first seq, last seq, compressed lines)`` chunks."""
    chunks = []
    start = 0
    size = 0
    for index, (_seq, line) in enumerate(rows):
        size += len(line) + 1
        if size >= target or index == len(rows) - 1:
            run = rows[start:index + 1]
            blob = zlib.compress(b"\n".join(line for _seq, line in run), 6)
            chunks.append((run[0][0], run[-1][0], blob))
            start, size = index + 1, 0
    return chunks


def unpack(session_id: str, first: int, last: int, blob: bytes) -> Rows:
    """The rows of one chunk; ``CorruptLogError`` if it does not inflate to them."""
    try:
        lines = zlib.decompress(blob).split(b"\n")
    except zlib.error as exc:
        raise CorruptLogError(f"session {session_id!r}, archive chunk of seqs {first}-{last}: "
                              f"{exc}", session_id=session_id, seq=first, where="archive") from None
    if len(lines) != last - first + 1:
        raise CorruptLogError(f"session {session_id!r}, archive chunk of seqs {first}-{last}: "
                              f"holds {len(lines)} records", session_id=session_id, seq=first,
                              where="archive")
    return list(zip(range(first, last + 1), lines, strict=True))


def rows_in(session_id: str, chunks: Iterable[tuple[int, int, bytes]], first: int, last: int,
            limit: int, *, newest_first: bool) -> Rows:
    """Up to ``limit`` rows with ``first <= seq <= last`` from chunks given in reading order."""
    found: Rows = []
    for low, high, blob in chunks:
        rows = [r for r in unpack(session_id, low, high, blob) if first <= r[0] <= last]
        if newest_first:
            rows.reverse()
        found.extend(rows[:limit - len(found)])
        if len(found) >= limit:
            break
    return found


def replace_in(session_id: str, first: int, last: int, blob: bytes,
               replacements: dict[int, tuple[bytes, bytes]]) -> bytes:
    """The chunk with the lines at the given seqs replaced (``seq: (old, new)``), compressed
    anew; ``RedactionError`` if a line there is not ``old``."""
    rows = unpack(session_id, first, last, blob)
    lines = []
    for seq, line in rows:
        if seq in replacements:
            old, new = replacements[seq]
            if line != old:
                raise RedactionError(f"session {session_id!r}, seq {seq}: changed meanwhile "
                                     "(redacted by another call?); nothing was redacted")
            line = new
        lines.append(line)
    return zlib.compress(b"\n".join(lines), 6)
