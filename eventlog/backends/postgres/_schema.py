"""The PostgreSQL backend's tables and statements, and making (or migrating) them.

Every table lives in the store's own schema (``?schema=NAME``, default ``eventlog``)::

    eventlog_meta(key, value)              format marker, the schema's version (``version``)
                                           and the record format's (``records``; absent in
                                           stores made before it: version 1)
    sessions(gen, id, seq, h, ph, sealed,  one row per session: its head (seq, h) and the
             archived, ctok, bytes,        digest before it; ``gen`` names this life of the id
             watched)                      (an identity: never reused); compaction's marks;
                                           the creating write's token; bytes of live records;
                                           the followers' lease
    events(session, seq, line, tok)        the same record lines as the file backend, keyed by
                                           (sessions.gen, seq); ``tok``: the writing call's token
    archive(session, first, last, blob)    compacted records: chunks of lines, compressed
    snapshots(session, seq, blob)
    tokens(session, tok, seq, h)           tokens of records compaction moved lately, kept while
                                           a retry may still look for them
    catalog(gen, seq, entry, id,           the session catalog's entry of a session life, valid
            created_at, last_activity)     while its head is at ``seq``; its keys (version 3),
                                           indexed with the id for ordered walks
    touched(gen)                           (version 3) sessions whose head moved since their
                                           catalog entry was saved (see ``_catalog``)
    append_guarded(...)                    (version 2) the guarded append as one call

Making them is one transaction under an advisory lock, so processes opening a new store
at once make it once; a later version of the tables is one more step in ``MIGRATIONS``.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ...core._codec import FORMAT_VERSION, FORMAT_VERSIONS
from ...core._errors import InvalidInputError, StorageError, StoreNotFoundError
from ._statements import GUARDED_APPEND, GUARDED_PARAMETERS

FORMAT = "eventlog-postgres"
VERSION = 3
DEFAULT_SCHEMA = "eventlog"
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TABLES = frozenset(("eventlog_meta", "sessions", "events", "archive", "snapshots", "tokens",
                     "catalog", "touched"))

def _function() -> str:
    body = re.sub(r"%\((\w+)\)s", lambda m: "p_" + m.group(1), GUARDED_APPEND)
    arguments = ", ".join(f"p_{name} {kind}" for name, kind in GUARDED_PARAMETERS)
    # FOR NO KEY UPDATE: the lock the UPDATE takes (a snapshot's FOR KEY SHARE does not wait).
    return f"""CREATE OR REPLACE FUNCTION {{s}}.append_guarded({arguments})
RETURNS TABLE (o_seq bigint, o_h text, o_new_seq bigint, o_new_h text, o_notified bigint,
               o_clear boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  PERFORM 1 FROM {{s}}.sessions WHERE id = p_id FOR NO KEY UPDATE;
  RETURN QUERY {body};
END
$fn$"""


# One list of statements per version: a store at version n gets MIGRATIONS[n:] in order.
# ``{s}`` is the quoted schema.
MIGRATIONS: list[list[str]] = [[
    "CREATE TABLE {s}.eventlog_meta (key text PRIMARY KEY, value text NOT NULL)",
    # fillfactor: every append rewrites its session's row; room on the page keeps that a
    # HOT update (no index touched, no page split).
    """CREATE TABLE {s}.sessions (
        gen bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        seq bigint NOT NULL,
        h text NOT NULL,
        ph text NOT NULL DEFAULT '',
        sealed bigint NOT NULL DEFAULT 0,
        archived bigint NOT NULL DEFAULT 0,
        ctok bigint NOT NULL,
        bytes bigint NOT NULL DEFAULT 0,
        watched timestamptz NOT NULL DEFAULT '-infinity'
    ) WITH (fillfactor = 50)""",
    """CREATE TABLE {s}.events (
        session bigint NOT NULL,
        seq bigint NOT NULL,
        line bytea NOT NULL,
        tok bigint,
        PRIMARY KEY (session, seq)
    )""",
    # Where a write whose reply was lost finds its own token (see _backend).
    "CREATE INDEX events_tok ON {s}.events (session, tok) WHERE tok IS NOT NULL",
    """CREATE TABLE {s}.archive (
        session bigint NOT NULL,
        first bigint NOT NULL,
        last bigint NOT NULL,
        blob bytea NOT NULL,
        PRIMARY KEY (session, first)
    )""",
    """CREATE TABLE {s}.snapshots (
        session bigint NOT NULL,
        seq bigint NOT NULL,
        blob bytea NOT NULL,
        PRIMARY KEY (session, seq)
    )""",
    """CREATE TABLE {s}.tokens (
        session bigint NOT NULL,
        tok bigint NOT NULL,
        seq bigint NOT NULL,
        h text NOT NULL,
        PRIMARY KEY (session, tok)
    )""",
    # The session catalog's entry of each session (derived data, see store/_catalog.py):
    # used only while its seq is the session's head.
    "CREATE TABLE {s}.catalog (gen bigint PRIMARY KEY, seq bigint NOT NULL, entry bytea NOT NULL)",
], [
    # Version 2: the guarded append as one call (``_statements.CALL_GUARDED``). It locks the
    # session's row, then runs GUARDED_APPEND as a statement of its own, whose snapshot is
    # taken once the lock is held (each statement of a VOLATILE function takes one), so it
    # sees the events of the writer it queued behind. Version 1 sent the two statements as
    # one pipeline: the same round trip, but psycopg's pipeline mode cost the client and
    # the server more than the statement itself (see the README's figures). A later change
    # of GUARDED_APPEND needs a migration that replaces the function.
    _function(),
], [
    # Version 3: the catalog's keys, indexed for ordered walks (``_catalog``), and the marks
    # of sessions whose entries may be stale, set by every statement that moves a head
    # (the function again: its statement sets one). Every session starts marked: entries
    # made before have no keys.
    'ALTER TABLE {s}.catalog ADD COLUMN id text COLLATE "C", ADD COLUMN created_at float8, '
    "ADD COLUMN last_activity float8",
    "CREATE INDEX catalog_by_activity ON {s}.catalog (last_activity, id)",
    "CREATE INDEX catalog_by_created ON {s}.catalog (created_at, id)",
    "CREATE TABLE {s}.touched (gen bigint PRIMARY KEY)",
    "INSERT INTO {s}.touched SELECT gen FROM {s}.sessions",
    _function(),
]]
assert len(MIGRATIONS) == VERSION


def check_schema_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInputError(f"PostgreSQL schema name must be 1 to 63 lowercase ASCII letters, "
                                f"digits or '_', not starting with a digit, not {name!r}")
    return name


def quoted(name: str) -> str:
    return '"' + name + '"'  # check_schema_name allows no quote


def prepare(conn: psycopg.Connection[Any], schema: str, where: str, *,
            create: bool, adopt: bool) -> int:
    """Make sure ``schema`` holds a store of this version: make or migrate it (``create``),
    or raise ``StoreNotFoundError`` (without ``create``, writing nothing). Returns the
    store's record format version (``Backend.record_version``): a new store gets
    ``FORMAT_VERSION``, one made before the ``records`` key existed is version 1, and a
    migration of the tables never changes it (its digests follow their version's rule)."""
    s = quoted(schema)
    with conn.transaction():
        found = conn.execute("SELECT to_regclass(%s)", (f"{s}.eventlog_meta",)).fetchone()
        if (found is None or found[0] is None) and not create:
            there = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
            raise StoreNotFoundError(where, f"no schema {schema!r}" if there is None else
                                     f"schema {schema!r} holds no eventlog tables")
        if create:
            # Opening a new store from many processes at once: one makes it, the rest wait.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"eventlog schema {schema}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        version = _version(conn, schema, where, adopt)
        if version > VERSION:
            raise StorageError(f"{where}: store version {version} is newer than this eventlog "
                               f"reads ({VERSION}); upgrade eventlog")
        if version < VERSION and not create:
            raise StoreNotFoundError(where, f"store version {version} needs migrating to "
                                     f"{VERSION}; open it with create=True to migrate it")
        for steps in MIGRATIONS[version:]:
            for statement in steps:
                conn.execute(statement.replace("{s}", s))
        if version == 0:
            conn.execute(f"INSERT INTO {s}.eventlog_meta VALUES ('records', %s)",
                         (str(FORMAT_VERSION),))
        if version < VERSION:
            conn.execute(f"INSERT INTO {s}.eventlog_meta VALUES ('format', %s), ('version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                         (FORMAT, str(VERSION)))
        found = conn.execute(f"SELECT value FROM {s}.eventlog_meta WHERE key = 'records'").fetchone()
    records = "1" if found is None else found[0]
    if records not in [str(v) for v in FORMAT_VERSIONS]:
        raise StorageError(f"{where}: store format version {records} is not supported (this "
                           f"eventlog reads {', '.join(map(str, FORMAT_VERSIONS))})")
    return int(records)


def _version(conn: psycopg.Connection[Any], schema: str, where: str, adopt: bool) -> int:
    tables: set[str] = {row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    if "eventlog_meta" not in tables:
        if tables and not adopt:
            raise StorageError(f"{where}: schema {schema!r} holds other tables, so it is not an "
                               "eventlog store; open it with adopt=True to add eventlog's tables")
        taken = sorted(tables & _TABLES)
        if taken:
            raise StorageError(f"{where}: can't add eventlog's tables to schema {schema!r}, it "
                               f"already has tables named {', '.join(taken)}")
        return 0
    rows = conn.execute(f"SELECT key, value FROM {quoted(schema)}.eventlog_meta").fetchall()
    meta: dict[str, str] = dict(rows)
    if meta.get("format") != FORMAT:
        raise StorageError(f"{where}: schema {schema!r} is not an eventlog PostgreSQL store")
    try:
        return int(str(meta.get("version")))
    except ValueError:
        raise StorageError(f"{where}: unreadable store version {meta.get('version')!r}") from None
