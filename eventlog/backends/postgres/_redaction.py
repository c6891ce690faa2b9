"""Redaction in a PostgreSQL store: the redacted records' rows (live lines, and the archive
chunks that hold compacted ones) rewritten with their tombstones' lines, the snapshots
from the first redacted seq and the session's catalog entry dropped, in one transaction
under the session row's lock.

What this can't reach: PostgreSQL's UPDATE writes a new row version; the old one stays in
the table's pages until VACUUM reclaims it (and in the write-ahead log and its archives,
and in backups), as the README says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.numeric import Int8

from ...core._errors import CorruptLogError, RedactionError, SessionNotFoundError
from .._base import Replacement
from .._chunks import replace_in

if TYPE_CHECKING:
    from ._backend import PostgresBackend
    from ._pool import Conn


def redact_rows(backend: PostgresBackend, session_id: str,
                replacements: list[Replacement]) -> None:
    """``PostgresBackend.redact``. Safe to run again after a lost reply: a row that already
    holds its tombstone's line counts as done."""
    s = backend.quoted_schema

    def step(conn: Conn) -> None:
        with conn.transaction():
            row = conn.execute(f"SELECT gen, archived FROM {s}.sessions WHERE id = %s FOR UPDATE",
                               (session_id,)).fetchone()
            if row is None:
                raise SessionNotFoundError(session_id)
            gen, archived = row
            chunked: dict[int, dict[int, tuple[bytes, bytes]]] = {}
            delta = 0
            for seq, old, new in replacements:
                if seq > archived:
                    found = conn.execute(f"SELECT line FROM {s}.events WHERE session = %s AND "
                                         "seq = %s", (Int8(gen), Int8(seq))).fetchone()
                    line = None if found is None else bytes(found[0])
                    if line == new:
                        continue  # a retried call: done by the attempt whose reply was lost
                    if line != old:
                        raise RedactionError(f"session {session_id!r}, seq {seq}: changed "
                                             "meanwhile; nothing was redacted")
                    conn.execute(f"UPDATE {s}.events SET line = %s WHERE session = %s AND seq = %s",
                                 (new, Int8(gen), Int8(seq)))
                    delta += len(new) - len(old)
                    continue
                chunk = conn.execute(f"SELECT first FROM {s}.archive WHERE session = %s AND "
                                     "first <= %s AND last >= %s",
                                     (Int8(gen), Int8(seq), Int8(seq))).fetchone()
                if chunk is None:
                    raise CorruptLogError(f"session {session_id!r}: no archive chunk holds seq "
                                          f"{seq}", session_id=session_id, seq=seq, where="postgres")
                chunked.setdefault(chunk[0], {})[seq] = (old, new)
            for first, lines in chunked.items():
                found = conn.execute(f"SELECT last, blob FROM {s}.archive WHERE session = %s "
                                     "AND first = %s", (Int8(gen), Int8(first))).fetchone()
                assert found is not None  # found above, under the session row's lock
                last, blob = found
                conn.execute(f"UPDATE {s}.archive SET blob = %s WHERE session = %s AND first = %s",
                             (replace_in(session_id, first, last, bytes(blob), lines),
                              Int8(gen), Int8(first)))
            conn.execute(f"DELETE FROM {s}.snapshots WHERE session = %s AND seq >= %s",
                         (Int8(gen), Int8(min(r.seq for r in replacements))))
            # The catalog's entry named the erased senders (the store saves a new one).
            conn.execute(f"DELETE FROM {s}.catalog WHERE gen = %s", (Int8(gen),))
            if delta:
                conn.execute(f"UPDATE {s}.sessions SET bytes = bytes + %s WHERE gen = %s",
                             (Int8(delta), Int8(gen)))

    backend._conns.run(f"redacting in session {session_id!r}", step)
