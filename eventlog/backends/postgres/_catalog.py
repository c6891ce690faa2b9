"""The PostgreSQL backend's session catalog (``store/_catalog.py``): entries in ``catalog``
with their keys, walked in ``(key, id)`` order along an index; tables in ``_schema``.

Which entries can be trusted to stand where their keys put them is kept on the append
path, cheaply: every statement that moves a session's head also marks it in ``touched``
(an insert that finds the mark there already writes nothing), and saving an entry at the
head takes the mark away, under a share lock on the session's row, so an append either
came before (and the entry, made for an older head, is not saved) or comes after (and
marks it again). A walk places the marked sessions by their folds, and reads the rest a
page at a time from the index: the first page of a store of any size costs one small
scan of the marks and a page of the index, never a scan and sort of every session.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psycopg.types.numeric import Int8

from ...core._codec import Head
from .._base import Refold
from ._pool import Conn

if TYPE_CHECKING:
    from ._backend import PostgresBackend

_PAGE = 256  # rows of the index read per round trip of a walk
_WRITE_BATCH = 256  # entries saved per transaction: appenders wait for their row's lock


def write(backend: PostgresBackend, entries: list[tuple[str, Head, bytes]],
          keys: list[tuple[float, float]] | None) -> None:
    text = backend.statement("CATALOG_WRITE")
    params: list[dict[str, Any]] = [{"e": blob, "id": sid, "q": Int8(head.seq), "h": head.digest,
               "c": None if keys is None else keys[i][0], "a": None if keys is None else keys[i][1]}
              for i, (sid, head, blob) in enumerate(entries)]
    for at in range(0, len(params), _WRITE_BATCH):
        batch = params[at:at + _WRITE_BATCH]

        def save(conn: Conn, batch: list[dict[str, Any]] = batch) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(text, batch)

        backend.connections.run("saving session catalog entries", save)


def walk(backend: PostgresBackend, order: str, descending: bool, start: float | None,
         refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
    if order not in ("last_activity", "created_at"):  # a column name, in the SQL below
        return None
    what = "reading the session catalog"
    touched = [row[0] for row in backend.connections.run(what, lambda conn: conn.execute(
        backend.statement("CATALOG_TOUCHED"), prepare=True).fetchall())]
    placed = []
    for sid in touched:
        fold = refold(sid)
        if fold is not None:
            key = fold[2] if order == "created_at" else fold[3]
            if start is None or (key <= start if descending else key >= start):
                placed.append((key, sid, fold[1]))
    placed.sort(reverse=descending)
    skip = set(touched)
    walked = (row for row in _pages(backend, order, descending, start) if row[1] not in skip)
    return _checked(heapq.merge(walked, placed, key=lambda r: (r[0], r[1]), reverse=descending),
                    refold)


def _pages(backend: PostgresBackend, order: str, descending: bool,
           start: float | None) -> Iterator[tuple[float, str, bytes | None]]:
    first = page_statement(backend, order, descending, "start" if start is not None else None)
    after_text = page_statement(backend, order, descending, "after")
    after: tuple[float, str] | None = None
    while True:
        text, params = ((first, {"k": start, "n": Int8(_PAGE)}) if after is None else
                        (after_text, {"k": after[0], "i": after[1], "n": Int8(_PAGE)}))

        def page(conn: Conn, text: str = text, params: dict[str, Any] = params) -> list[tuple[Any, ...]]:
            return conn.execute(text, params, prepare=True, binary=True).fetchall()

        rows = backend.connections.run("reading the session catalog", page)
        for key, sid, entry in rows:
            yield key, sid, None if entry is None else bytes(entry)
        if len(rows) < _PAGE:
            return
        after = (rows[-1][0], rows[-1][1])


def page_statement(backend: PostgresBackend, order: str, descending: bool,
                   where: str | None) -> str:
    """A page of the walk in ``order``: the first (``where`` None), from a key on
    (``"start"``: %(k)s), or after a key and id (``"after"``: %(k)s, %(i)s); %(n)s rows."""
    direction, cmp = ("DESC", "<") if descending else ("ASC", ">")
    bound = {None: "", "start": f"AND c.{order} {cmp}= %(k)s::float8",
             "after": f"AND (c.{order}, c.id) {cmp} (%(k)s::float8, %(i)s)"}[where]
    return (backend.statement("CATALOG_PAGE").replace("{o}", order).replace("{d}", direction)
            .replace("{w}", bound))


def _checked(rows: Iterator[tuple[float, str, bytes | None]],
             refold: Refold) -> Iterator[tuple[str, bytes | None]]:
    for _key, sid, entry in rows:
        if entry is not None:
            yield sid, entry
            continue
        fold = refold(sid)  # appended to since: shown where it stood (see the README)
        if fold is not None:
            yield sid, fold[1]


def reset(backend: PostgresBackend) -> None:
    backend.connections.run("dropping the session catalog", lambda conn: conn.execute(
        backend.statement("CATALOG_RESET")))
