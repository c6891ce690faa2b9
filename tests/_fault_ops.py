"""The operations the fault harnesses (tests/test_sqlite_faults.py, tests/test_redis_faults.py)
break in every way, and what a store may hold after each.

Every operation runs on a store that ``populate`` filled, against the store's URL; it
returns what it acknowledged. ``expected`` then says what a fresh process must find: for a
call that returned, exactly what it acknowledged; for one that raised, nothing of it; for
one killed part-way, all of it or none (an import may leave a prefix, each event once).
Other sessions never change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventlog
from eventlog import ChatMessage, Event, EventLog

SID = "s"
OLD = "old"  # inactive for 40 days: cleanup removes it
GONE = "gone"  # delete removes it
NEW = "new"  # create makes it
IMPORTED = "imported"  # import makes it
SNAPSHOT_EVERY = 4  # for "snapshot", whose append reaches seq 4; the others never reach one


def snapshot_every(op: str) -> int:
    return SNAPSHOT_EVERY if op == "snapshot" else 1000
DAY = 86400.0

Row = tuple[int, str, float, Any]
"""An event as compared: seq, type, ts, data."""


def row(event: Event) -> Row:
    return (event.seq, event.type, event.ts, event.data)


def populate(log: EventLog) -> None:
    log.create_session(SID, participants=["a"], metadata={"k": [1]})
    # seq 1-3: the next append is seq 4; over 4 KiB, so that compaction does not skip it as tiny
    log.append_many(SID, [("x", {"i": i, "pad": "p" * 2500}) for i in range(2)])
    old = time.time() - 40 * DAY
    log.create_session(OLD, participants=["o"], created_at=old)
    log.add_messages([ChatMessage(sender="o", content=f"m{i}", session_id=OLD, timestamp=old + i)
                      for i in range(2)])
    log.create_session(GONE)
    log.append(GONE, "x", 1)


@dataclass
class Done:
    """What an operation acknowledged: events per session, and sessions it removed."""

    events: dict[str, list[Row]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    exit_code: int | None = None
    said: str = ""  # what a command printed on stderr


def _created(session: eventlog.ChatSession) -> Row:
    return (1, "session.created", session.created_at,
            {"participants": session.participants, "metadata": session.metadata})


def op_create(log: EventLog, ctx: Context) -> Done:
    return Done({NEW: [_created(log.create_session(NEW, ["a"], {"k": {"n": 1}}))]})


def op_append(log: EventLog, ctx: Context) -> Done:
    return Done({SID: [row(log.append(SID, "one", {"k": 1}))]})


def op_append_fsync(log: EventLog, ctx: Context) -> Done:
    return Done({SID: [row(log.append(SID, "one", {"k": 1}, durability="fsync"))]})


def op_append_many(log: EventLog, ctx: Context) -> Done:
    return Done({SID: [row(e) for e in log.append_many(SID, [("batch", i) for i in range(5)])]})


def op_add_messages(log: EventLog, ctx: Context) -> Done:
    sent = log.add_messages([ChatMessage(sender="a", content=f"c{i}", session_id=SID,
                                         metadata={"i": i}, timestamp=1_700_000_000.0 + i)
                             for i in range(3)])
    return Done({SID: [(m.seq or 0, "message", m.timestamp,
                        {"id": m.id, "sender": "a", "recipient": None, "content": m.content,
                         "metadata": m.metadata}) for m in sent]})


def op_snapshot(log: EventLog, ctx: Context) -> Done:
    """An append that reaches a snapshot boundary (seq 4, unless another writer got in
    first): the snapshot is written after it."""
    return Done({SID: [row(log.append(SID, "boundary", None))]})


def op_compact(log: EventLog, ctx: Context) -> Done:
    log.compact(SID)
    return Done()


def op_compact_all(log: EventLog, ctx: Context) -> Done:
    report = log.compact()
    if not report.ok:  # it goes on past a session's storage error, and reports it
        raise eventlog.StorageError("compact() reported: " + "; ".join(report.problems))
    return Done()


def op_cleanup(log: EventLog, ctx: Context) -> Done:
    return Done(removed=log.cleanup_old_sessions(30))


def op_cleanup_archive(log: EventLog, ctx: Context) -> Done:
    return Done(removed=log.cleanup_old_sessions(30, archive_dir=ctx.archive_dir))


def op_delete(log: EventLog, ctx: Context) -> Done:
    log.delete_session(GONE)
    return Done(removed=[GONE])


def op_import(log: EventLog, ctx: Context) -> Done:
    history = list(log.events(SID))
    log.import_events(IMPORTED, history, batch_size=2)
    return Done({IMPORTED: [row(e) for e in history]})


def op_copy(log: EventLog, ctx: Context) -> Done:
    import contextlib
    import io

    from eventlog.cli._main import run
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        code = run(["copy", ctx.url, ctx.copy_url])
    return Done(exit_code=code, said=said.getvalue())


OPS: dict[str, Callable[[EventLog, Context], Done]] = {
    "create": op_create, "append": op_append, "append_fsync": op_append_fsync,
    "append_many": op_append_many,
    "add_messages": op_add_messages, "snapshot": op_snapshot, "compact": op_compact,
    "compact_all": op_compact_all, "cleanup": op_cleanup, "cleanup_archive": op_cleanup_archive,
    "delete": op_delete, "import": op_import, "copy": op_copy,
}


@dataclass
class Context:
    """Where an operation works: the store, the archive directory, a copy's destination."""

    url: str
    archive_dir: Path
    copy_url: str


Found = dict[str, list[Row]]


WRITES = {"create": (NEW, "session.created", 1), "append": (SID, "one", 1),
          "append_fsync": (SID, "one", 1),
          "append_many": (SID, "batch", 5), "add_messages": (SID, "message", 3),
          "snapshot": (SID, "boundary", 1)}
"""The session each writing operation writes to, its events' type and how many it writes."""


def problems_after(op: str, before: Found, after: Found, done: Done | None, outcome: str, *,
                   extra: Found | None = None, copied: Found | None = None,
                   archived: Found | None = None, error: str = "") -> list[str]:
    """What is wrong with ``after`` (a fresh read) for ``op`` that ended ``outcome``: "ok"
    (returned ``done``), "error" (raised a typed error) or "crashed" (killed part-way).
    ``extra``: events other writers had acknowledged meanwhile; ``copied``: a copy's
    destination; ``archived``: the sessions cleanup wrote into its archive directory;
    ``error``: what the call raised."""
    wrong: list[str] = []
    want = {sid: list(rows) for sid, rows in before.items()}
    for sid, rows in (extra or {}).items():
        want.setdefault(sid, []).extend(rows)
    for rows in want.values():
        rows.sort()
    if outcome == "ok":
        assert done is not None
        for sid in done.removed:
            want.pop(sid, None)
            if op == "cleanup_archive" and (archived or {}).get(sid) != before[sid]:
                wrong.append(f"cleanup removed {sid!r} without its whole history archived: "
                             f"{_short((archived or {}).get(sid))}")
        for sid, rows in done.events.items():
            want[sid] = sorted(want.get(sid, []) + rows)
    for sid in sorted(set(want) | set(after)):
        got = after.get(sid)
        if got == want.get(sid) or _in_doubt(op, sid, want.get(sid), got, before, outcome, archived) \
                or _left_as_said(op, sid, got, before, error):
            continue
        wrong.append(f"{op} ({outcome}): session {sid!r}: expected {_short(want.get(sid))}, "
                     f"found {_short(got)}")
    if op == "copy" and copied is not None:
        wrong += _copy_problems(before, after, copied, done, outcome)
    return wrong


def _copy_problems(before: Found, after: Found, copied: Found, done: Done | None,
                   outcome: str) -> list[str]:
    """Each copied session is its source as it stood when copied: a prefix of the source now
    that holds all it held before (other writers go on meanwhile); less only where the copy
    was killed part-way or said it could not take back a partial one (a full disk)."""
    wrong = []
    said = "" if done is None else done.said
    for sid, rows in copied.items():
        source = after.get(sid) or before.get(sid) or []
        whole = rows == source[:len(rows)] and len(rows) >= len(before.get(sid, []))
        partial = outcome == "crashed" or f"partly imported session {sid!r}" in said
        if not (whole or (partial and rows == source[:len(rows)])):
            wrong.append(f"copy ({outcome}): the copy of {sid!r} is not whole: {_short(rows)}")
    if outcome == "ok" and done is not None and done.exit_code == 0 and set(copied) != set(before):
        wrong.append(f"copy said it copied everything, but the copy holds {sorted(copied)}")
    return wrong


def _in_doubt(op: str, sid: str, want: list[Row] | None, got: list[Row] | None, before: Found,
              outcome: str, archived: Found | None) -> bool:
    """Only a call killed part-way leaves its work in doubt: all of it or none of it, never
    a part (an import may leave a prefix of its history, each event once), and a removal
    only with the session's history archived first (cleanup with an archive directory)."""
    if outcome != "crashed":
        return False
    if got is None and want is not None and ((op == "delete" and sid == GONE)
                                             or (op.startswith("cleanup") and sid == OLD)):
        return op != "cleanup_archive" or (archived or {}).get(sid) == before[sid]
    if op == "import" and sid == IMPORTED:
        return got is not None and got == before[SID][:len(got)]
    if op in WRITES and got is not None and sid == WRITES[op][0]:
        _, kind, count = WRITES[op]
        head = want or []
        tail = got[len(head):]
        return got[:len(head)] == head and len(tail) == count and all(r[1] == kind for r in tail)
    return False


def _left_as_said(op: str, sid: str, got: list[Row] | None, before: Found, error: str) -> bool:
    """An import that failed and could not take back what it wrote says so (a full disk
    has no room for the delete): then a prefix of its history may stay."""
    return (op == "import" and sid == IMPORTED and "partly imported session" in error
            and got is not None and got == before[SID][:len(got)])


def _short(rows: list[Row] | None) -> str:
    if rows is None:
        return "no session"
    return f"seqs {[r[0] for r in rows]} (types {[r[1] for r in rows]})"
