"""Redaction in an SQLite store: rows and archive chunks rewritten in the caller's
transaction (``SQLiteBackend.redact`` runs it with ``secure_delete`` on, then truncates the
write-ahead log)."""

from __future__ import annotations

import sqlite3

from ..core._errors import CorruptLogError, RedactionError, SessionNotFoundError
from ._base import Replacement
from ._chunks import replace_in


def redact_rows(db: sqlite3.Connection, session_id: str, replacements: list[Replacement]) -> None:
    """``SQLiteBackend.redact``'s writes, inside its transaction."""
    row = db.execute("SELECT gen, archived FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise SessionNotFoundError(session_id)
    gen, archived = row
    chunked: dict[int, dict[int, tuple[bytes, bytes]]] = {}
    for seq, old, new in replacements:
        if seq > archived:
            if db.execute("UPDATE events SET line = ? WHERE session = ? AND seq = ? AND line = ?",
                          (new, gen, seq, old)).rowcount != 1:
                raise RedactionError(f"session {session_id!r}, seq {seq}: changed meanwhile; "
                                     "nothing was redacted")
            continue
        found = db.execute("SELECT first FROM archive WHERE session = ? AND first <= ? AND "
                           "last >= ?", (gen, seq, seq)).fetchone()
        if found is None:
            raise CorruptLogError(f"session {session_id!r}: no archive chunk holds seq {seq}",
                                  session_id=session_id, seq=seq, where="archive")
        chunked.setdefault(found[0], {})[seq] = (old, new)
    for first, lines in chunked.items():
        last, blob = db.execute("SELECT last, blob FROM archive WHERE session = ? AND first = ?",
                                (gen, first)).fetchone()
        db.execute("UPDATE archive SET blob = ? WHERE session = ? AND first = ?",
                   (replace_in(session_id, first, last, blob, lines), gen, first))
    db.execute("DELETE FROM snapshots WHERE session = ? AND seq >= ?",
               (gen, min(r.seq for r in replacements)))
    # The catalog's entry named the erased senders (derived data: the store saves a new one).
    db.execute("DELETE FROM catalog WHERE gen = ?", (gen,))
