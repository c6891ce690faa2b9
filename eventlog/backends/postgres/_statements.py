"""The PostgreSQL backend's statements, each one round trip (tables: see ``_schema``).

The append is one statement: it moves the session's head, which locks its row (so
concurrent writers of one session queue there, in the server, instead of retrying),
checking ``expected_seq`` and the record's size, numbering the record and chaining it with
the server's ``sha256()`` exactly as ``core._codec.seal_one`` does; it inserts the record
and, only while someone follows the session (``watched``, a lease the followers renew),
notifies them. Notifying from every
append would serialize all commits of the database: PostgreSQL holds one lock per database
from a notifying transaction's pre-commit to its end, the WAL flush included.

Parameters are named; ``{s}`` is the quoted schema.
"""

from __future__ import annotations

# %(id)s session id, %(p)s the payload ({"type":..,"ts":..,"data":..}), %(cp)s what the
# chain hashes of it (the payload in version 1, its data replaced by the data's digest in
# version 2: see ``_backend.chain_payload``), %(t)s token, %(x)s
# expected seq or NULL, %(m)s max line bytes, %(c)s channel. One row (seq before, h before,
# new seq, new h, notified), or none if the session does not exist, the expected seq did
# not match, or the line would be too long (``len(line)`` is ``len(payload) + digits of
# seq + 46``): then nothing was written, and the caller looks which.
#
# The UPDATE both takes the row's lock and moves the head, from the newest version of the
# row once the lock is granted (its WHERE is checked again on that version), so the head
# read and the head written are one; it keeps the head before in ``ph`` for the reply.
APPEND_ONE = """
WITH u AS (
  UPDATE {s}.sessions SET seq = seq + 1, ph = h,
    h = left(encode(sha256(convert_to(h, 'UTF8') || convert_to('{"seq":' || (seq + 1) || ',', 'UTF8')
                           || substr(%(cp)s::bytea, 2)), 'hex'), 32),
    bytes = bytes + length(%(p)s::bytea) + length((seq + 1)::text) + 47
  WHERE id = %(id)s AND (%(x)s::bigint IS NULL OR seq = %(x)s::bigint)
    AND length(%(p)s::bytea) + length((seq + 1)::text) + 46 < %(m)s::bigint
  RETURNING gen, seq, h, ph, watched
), k AS (
  INSERT INTO {s}.touched SELECT gen FROM u ON CONFLICT DO NOTHING
), i AS (
  INSERT INTO {s}.events (session, seq, line, tok)
  SELECT gen, seq, convert_to('{"seq":' || seq || ',', 'UTF8')
         || substr(%(p)s::bytea, 2, length(%(p)s::bytea) - 2)
         || convert_to(',"h":"' || h || '"}', 'UTF8'), %(t)s::bigint
  FROM u
), n AS (
  SELECT pg_notify(%(c)s, gen || ' ' || seq) FROM u WHERE watched > now()
)
SELECT seq - 1, ph, seq, h, (SELECT count(*) FROM n) FROM u
"""

# A guarded append (``_backend._append_guarded``): APPEND_ONE's parameters, and %(bq)s/%(bh)s
# the head the store's check passed at, %(f)s what the append must not duplicate (``id``: a
# message's id, ``key``: an idempotency key, NULL: anything) and %(v)s its value, %(n)s how
# many events after that head to look through. It runs once the session's row is locked,
# as a statement of its own in that transaction (in the function ``append_guarded``, or
# after LOCK_HEAD on a retry), so its snapshot holds every event up to the head it locked
# (one statement's snapshot would predate the lock wait, and miss the events of the writer
# it queued behind). It appends only if the head is the
# checked one, or the events after it are all here (not compacted away), within %(n)s, and
# none holds the id or key or is a rewind (which changes what is visible): then the check
# at the checked head holds at this one. One row: the head it found (seq, h), the new
# head (seq, h) and notified, or NULLs if nothing was written; whether the events were
# clear. No row: no such session.
GUARDED_APPEND = """
WITH l AS (
  SELECT gen, seq, h, archived FROM {s}.sessions WHERE id = %(id)s
), c AS (
  SELECT (l.seq = %(bq)s::bigint AND l.h = %(bh)s) OR (
    %(f)s::text IS NOT NULL AND l.seq > %(bq)s::bigint AND l.seq - %(bq)s::bigint <= %(n)s::bigint
    AND l.archived < %(bq)s::bigint
    AND EXISTS (SELECT 1 FROM {s}.events WHERE session = l.gen AND seq = %(bq)s::bigint
                AND substr(line, length(line) - 33, 32) = convert_to(%(bh)s, 'UTF8'))
    AND NOT EXISTS (
      SELECT 1 FROM {s}.events e, LATERAL (SELECT convert_from(e.line, 'UTF8')::json AS j) r
      WHERE e.session = l.gen AND e.seq > %(bq)s::bigint AND (r.j->>'type' = 'session.rewound'
        OR CASE %(f)s::text WHEN 'id' THEN r.j->>'type' = 'message' AND r.j->'data'->>'id' = %(v)s
                            ELSE r.j->>'k' = %(v)s END))) AS clear
  FROM l
), u AS (
  UPDATE {s}.sessions SET seq = seq + 1, ph = h,
    h = left(encode(sha256(convert_to(h, 'UTF8') || convert_to('{"seq":' || (seq + 1) || ',', 'UTF8')
                           || substr(%(cp)s::bytea, 2)), 'hex'), 32),
    bytes = bytes + length(%(p)s::bytea) + length((seq + 1)::text) + 47
  WHERE id = %(id)s AND (SELECT clear FROM c) AND (%(x)s::bigint IS NULL OR seq = %(x)s::bigint)
    AND length(%(p)s::bytea) + length((seq + 1)::text) + 46 < %(m)s::bigint
  RETURNING gen, seq, h, watched
), k AS (
  INSERT INTO {s}.touched SELECT gen FROM u ON CONFLICT DO NOTHING
), i AS (
  INSERT INTO {s}.events (session, seq, line, tok)
  SELECT gen, seq, convert_to('{"seq":' || seq || ',', 'UTF8')
         || substr(%(p)s::bytea, 2, length(%(p)s::bytea) - 2)
         || convert_to(',"h":"' || h || '"}', 'UTF8'), %(t)s::bigint
  FROM u
), n AS (
  SELECT pg_notify(%(c)s, gen || ' ' || seq) FROM u WHERE watched > now()
)
SELECT l.seq, l.h, u.seq, u.h, (SELECT count(*) FROM n), c.clear FROM l CROSS JOIN c LEFT JOIN u ON true
"""
# GUARDED_APPEND's parameters, as the function that runs it (schema version 2) takes them.
GUARDED_PARAMETERS = (("id", "text"), ("p", "bytea"), ("cp", "bytea"), ("t", "bigint"),
                      ("x", "bigint"), ("m", "bigint"), ("c", "text"), ("bq", "bigint"),
                      ("bh", "text"), ("f", "text"), ("v", "text"), ("n", "bigint"))
# The guarded append in one call: the function locks the row, then runs GUARDED_APPEND.
CALL_GUARDED = ("SELECT * FROM {s}.append_guarded("
                + ", ".join(f"%({name})s" for name, _kind in GUARDED_PARAMETERS) + ")")

# The head, locked: the first step of a batch append, a seal, or a retry.
LOCK_HEAD = "SELECT gen, seq, h, watched > now() FROM {s}.sessions WHERE id = %s FOR UPDATE"

# A batch append's rows (%s gen, seqs, lines, the last row's token) and its new head.
INSERT_ROWS = """
INSERT INTO {s}.events (session, seq, line, tok)
SELECT %(g)s::bigint, q, l, CASE WHEN q = %(last)s::bigint THEN %(t)s::bigint END
FROM unnest(%(q)s::bigint[], %(l)s::bytea[]) AS r(q, l)
"""
# A new session's records after its first (``create_log``: a fork's copy), streamed in
# PostgreSQL's binary copy format: no per-row statement, no text escaping of the lines.
COPY_ROWS = "COPY {s}.events (session, seq, line) FROM STDIN (FORMAT BINARY)"
MOVE_HEAD = """
WITH u AS (
  UPDATE {s}.sessions SET seq = %(last)s::bigint, h = %(h)s, bytes = bytes + %(b)s::bigint
  WHERE gen = %(g)s::bigint RETURNING gen
)
INSERT INTO {s}.touched SELECT gen FROM u ON CONFLICT DO NOTHING
"""
NOTIFY = "SELECT pg_notify(%s, %s)"

# A retried write's own token, on a live row or among those compaction moved: (seq, h).
FIND_TOKEN = """
SELECT seq, convert_from(substr(line, length(line) - 33, 32), 'UTF8') FROM {s}.events
WHERE session = %(g)s::bigint AND tok = %(t)s::bigint
UNION ALL
SELECT seq, h FROM {s}.tokens WHERE session = %(g)s::bigint AND tok = %(t)s::bigint
"""

# %s id, seq, h, first line, token: the new gen, or no row if the id exists.
CREATE = """
WITH s AS (
  INSERT INTO {s}.sessions (id, seq, h, ctok, bytes)
  VALUES (%(id)s, %(q)s::bigint, %(h)s, %(t)s::bigint, length(%(l)s::bytea) + 1)
  ON CONFLICT (id) DO NOTHING RETURNING gen
), e AS (
  INSERT INTO {s}.events (session, seq, line, tok)
  SELECT gen, %(q)s::bigint, %(l)s::bytea, %(t)s::bigint FROM s
), k AS (
  INSERT INTO {s}.touched SELECT gen FROM s ON CONFLICT DO NOTHING
)
SELECT gen FROM s
"""
CREATOR = "SELECT ctok FROM {s}.sessions WHERE id = %s"

# %(id)s, and %(q)s/%(h)s: delete only at that head (NULLs: at any). One row: whether the
# session existed, whether it was deleted.
DELETE = """
WITH t AS (
  SELECT gen, seq, h, watched FROM {s}.sessions WHERE id = %(id)s FOR UPDATE
), d AS (
  DELETE FROM {s}.sessions USING t WHERE sessions.gen = t.gen
  AND (%(q)s::bigint IS NULL OR (t.seq = %(q)s::bigint AND t.h = %(h)s)) RETURNING sessions.gen
), e AS (
  DELETE FROM {s}.events WHERE session IN (SELECT gen FROM d)
), a AS (
  DELETE FROM {s}.archive WHERE session IN (SELECT gen FROM d)
), p AS (
  DELETE FROM {s}.snapshots WHERE session IN (SELECT gen FROM d)
), k AS (
  DELETE FROM {s}.tokens WHERE session IN (SELECT gen FROM d)
), g AS (
  DELETE FROM {s}.catalog WHERE gen IN (SELECT gen FROM d)
), m AS (
  DELETE FROM {s}.touched WHERE gen IN (SELECT gen FROM d)
), n AS (
  SELECT pg_notify(%(c)s, d.gen || ' 0') FROM d, t WHERE t.watched > now()
)
SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM d), (SELECT count(*) FROM n)
"""

HEAD = "SELECT gen, seq, h FROM {s}.sessions WHERE id = %s"
EXISTS = "SELECT 1 FROM {s}.sessions WHERE id = %s"
IDS = "SELECT id FROM {s}.sessions ORDER BY id COLLATE \"C\""

# %s gen, first, last, limit: the archive mark, then live rows from past it (none: a row of
# NULLs); no row at all once that life is gone.
LIVE_ROWS = """
SELECT s.archived, e.seq, e.line FROM {s}.sessions s LEFT JOIN LATERAL (
  SELECT seq, line FROM {s}.events WHERE session = s.gen
  AND seq BETWEEN greatest(%(f)s::bigint, s.archived + 1) AND %(l)s::bigint ORDER BY seq LIMIT %(n)s::bigint
) e ON true WHERE s.gen = %(g)s::bigint
"""
LIVE_ROWS_BACK = LIVE_ROWS.replace("ORDER BY seq", "ORDER BY seq DESC")
CHUNKS = """
SELECT first, last, blob FROM {s}.archive WHERE session = %(g)s::bigint AND last >= %(f)s::bigint
AND first <= %(l)s::bigint ORDER BY first
"""
CHUNKS_BACK = CHUNKS.replace("ORDER BY first", "ORDER BY first DESC")

SNAPSHOTS = """
SELECT p.blob FROM {s}.sessions s LEFT JOIN {s}.snapshots p ON p.session = s.gen
WHERE s.id = %s ORDER BY p.seq DESC
"""
# %s id, seq, blob, kept, spacing: saves the snapshot and keeps the newest ``kept`` and the
# oldest of each ``spacing`` seqs (``_base.snapshot_seqs_dropped``); no row if the session
# does not exist. FOR KEY SHARE: a delete waits, an append does not. The DELETE sees the
# rows as they were before the INSERT: the new one is counted in by hand.
SAVE_SNAPSHOT = """
WITH s AS (
  SELECT gen FROM {s}.sessions WHERE id = %(id)s FOR KEY SHARE
), i AS (
  INSERT INTO {s}.snapshots SELECT gen, %(q)s::bigint, %(b)s::bytea FROM s
  ON CONFLICT (session, seq) DO UPDATE SET blob = EXCLUDED.blob
), d AS (
  DELETE FROM {s}.snapshots WHERE session = (SELECT gen FROM s) AND seq <> %(q)s::bigint AND seq NOT IN (
    SELECT seq FROM {s}.snapshots WHERE session = (SELECT gen FROM s) AND seq <> %(q)s::bigint
    ORDER BY seq DESC LIMIT %(k)s::bigint - 1)
  AND NOT (seq IN (SELECT min(seq) FROM {s}.snapshots WHERE session = (SELECT gen FROM s)
                   AND seq <> %(q)s::bigint GROUP BY seq / %(sp)s::bigint)
           AND NOT (%(q)s::bigint / %(sp)s::bigint = seq / %(sp)s::bigint AND %(q)s::bigint < seq))
)
SELECT gen FROM s
"""
SIZE = """
SELECT s.bytes + (SELECT COALESCE(sum(length(blob)), 0) FROM {s}.archive WHERE session = s.gen)
  + (SELECT COALESCE(sum(length(blob)), 0) FROM {s}.snapshots WHERE session = s.gen)
FROM {s}.sessions s WHERE s.id = %s
"""

SEAL = "UPDATE {s}.sessions SET sealed = seq WHERE id = %s RETURNING seq, h"
MARKS = "SELECT gen, sealed, archived FROM {s}.sessions WHERE id = %s"
ARCHIVED_ROWS = """
SELECT seq, line, tok FROM {s}.events WHERE session = %s AND seq BETWEEN %s AND %s ORDER BY seq
"""
ARCHIVE_MARK = "SELECT archived FROM {s}.sessions WHERE gen = %s FOR UPDATE"
ARCHIVE_CHUNKS = """
INSERT INTO {s}.archive SELECT %(g)s::bigint, f, l, b
FROM unnest(%(f)s::bigint[], %(l)s::bigint[], %(b)s::bytea[]) AS c(f, l, b)
"""
KEEP_TOKENS = """
INSERT INTO {s}.tokens SELECT %(g)s::bigint, t, q, h
FROM unnest(%(t)s::bigint[], %(q)s::bigint[], %(h)s::text[]) AS k(t, q, h) ON CONFLICT DO NOTHING
"""
DROP_TOKENS = "DELETE FROM {s}.tokens WHERE session = %s AND tok < %s"
ARCHIVE_MOVE = """
WITH d AS (
  DELETE FROM {s}.events WHERE session = %(g)s::bigint AND seq BETWEEN %(f)s::bigint AND %(l)s::bigint
  RETURNING length(line) + 1 AS b
)
UPDATE {s}.sessions SET archived = %(l)s::bigint, bytes = bytes - (SELECT COALESCE(sum(b), 0) FROM d)
WHERE gen = %(g)s::bigint
"""

# A follower's lease: appends notify the channel until it ends. Returns the head's seq.
WATCH = """
UPDATE {s}.sessions SET watched = greatest(watched, now() + make_interval(secs => %(d)s))
WHERE gen = %(g)s::bigint RETURNING seq
"""


# The session catalog (``_catalog``): each session by id with the entry made for its
# current head, if any.
CATALOG_READ = """
SELECT s.id, c.entry FROM {s}.sessions s LEFT JOIN {s}.catalog c ON c.gen = s.gen AND c.seq = s.seq
WHERE starts_with(s.id, %s) ORDER BY s.id COLLATE "C"
"""
# Saved only while the session's head is the one the entry was made for: the row's share
# lock holds appends off until the commit (one holding the row: skipped, its entry would
# be stale), so the mark this takes away can't hide an append (see ``_catalog``).
CATALOG_WRITE = """
WITH s AS (
  SELECT gen, seq FROM {s}.sessions WHERE id = %(id)s AND seq = %(q)s::bigint AND h = %(h)s
  FOR SHARE SKIP LOCKED
), w AS (
  INSERT INTO {s}.catalog (gen, seq, entry, id, created_at, last_activity)
  SELECT gen, seq, %(e)s, %(id)s, %(c)s::float8, %(a)s::float8 FROM s
  ON CONFLICT (gen) DO UPDATE SET seq = EXCLUDED.seq, entry = EXCLUDED.entry, id = EXCLUDED.id,
    created_at = EXCLUDED.created_at, last_activity = EXCLUDED.last_activity
), d AS (
  DELETE FROM {s}.touched WHERE gen IN (SELECT gen FROM s) AND %(a)s::float8 IS NOT NULL
)
SELECT count(*) FROM s
"""
CATALOG_RESET = """
WITH d AS (DELETE FROM {s}.catalog)
INSERT INTO {s}.touched SELECT gen FROM {s}.sessions ON CONFLICT DO NOTHING
"""
# The sessions whose entry may be missing or stale: placed by their folds, not the index.
CATALOG_TOUCHED = "SELECT s.id FROM {s}.touched t JOIN {s}.sessions s ON s.gen = t.gen"
# A page of the ordered walk (``{o}``: the key's column, ``{d}``: ASC or DESC, ``{w}``: where
# it starts), along the index on (key, id).
CATALOG_PAGE = """
SELECT c.{o}, c.id, CASE WHEN c.seq = s.seq THEN c.entry END
FROM {s}.catalog c JOIN {s}.sessions s ON s.gen = c.gen
WHERE c.{o} IS NOT NULL {w} ORDER BY c.{o} {d}, c.id {d} LIMIT %(n)s::bigint
"""


def bind(statement: str, schema: str) -> str:
    return statement.replace("{s}", schema)
