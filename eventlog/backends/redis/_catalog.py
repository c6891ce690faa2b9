"""The Redis backend's session catalog (issue 15): entries beside each head, order in sorted sets.

A session's entry is field ``c`` of its head hash (``<seq>:<entry>``, used only while
``seq`` is the head's: ``CATALOG`` saves it only on the head it was made for). The order
``list_sessions``/``page_sessions`` walk is kept in two sorted sets of the store, whose
members are session ids::

    <prefix>{<prefix>catalog}:created    score created_at
    <prefix>{<prefix>catalog}:activity   score last_activity
    <prefix>{<prefix>catalog}:pending    string: creates and deletes between their step on
                                         the session and their step on the sorted sets

Equal scores are ordered by member, bytewise, which for UTF-8 is the ids' code point order:
a sorted set's order is exactly the listing's ``(key, session_id)`` order, so a page is a
``ZRANGE ... BYSCORE`` from the cursor's key.

The sorted sets are derived data, like the entries, and live in another slot than the
sessions (one tag, so a rebuild can ``RENAME`` its copy over them on Redis Cluster too), so
no script moves a session and its place in them at once. Each write keeps them close, and
a read repairs what a crash left:

- ``create`` adds the id (creation time as both scores) after its script; ``delete``
  removes it after its own; ``pending`` counts those in between (INCR before the first
  step, DECR in the script that updates the sorted sets). ``catalog_write`` (the store's
  entries, saved behind appends, at close, and when a read refolds) moves the scores.
- A walk first compares the registry's size with both sorted sets' and looks at
  ``pending``: if they disagree, or ``pending`` is not 0 (a process died in between, or
  is in between now), the walk is refused and the store rebuilds the sorted sets from a
  full listing (``catalog_rebuild``: built aside, renamed over, ``pending`` reset).
- A member whose head is gone (deleted, expired by ``ttl``) is skipped and removed; one
  whose entry is stale (appended to since it was saved) is refolded by the store and
  shown where its score put it, as the SQLite backend does (the README says what a
  session active while someone pages by ``last_activity`` may do).
- ``eventlog reindex`` (``catalog_reset`` and a rebuild) drops and rebuilds all of it.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ...core._codec import Head, Record
from .._base import Refold

if TYPE_CHECKING:
    from ._backend import RedisBackend

_CHUNK = 200  # members a walk reads per round trip (a first page of 100 takes one)
_BUILD_CHUNK = 5000  # members per ZADD while rebuilding

# KEYS created, activity, pending, dirty; ARGV done (1: DECR pending, gone at 0), then
# (score created, score activity, id) triples to place (no longer dirty), or ("-", "-", id)
# to remove.
PLACE = """
for i = 2, #ARGV - 2, 3 do
  if ARGV[i] == '-' then
    redis.call('ZREM', KEYS[1], ARGV[i + 2])
    redis.call('ZREM', KEYS[2], ARGV[i + 2])
  else
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  end
  redis.call('SREM', KEYS[4], ARGV[i + 2])
end
if ARGV[1] == '1' and redis.call('DECR', KEYS[3]) == 0 then redis.call('DEL', KEYS[3]) end
return 1
"""


class Catalog:
    """The catalog hooks of one ``RedisBackend``."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        tag = f"{backend.prefix}{{{backend.prefix}catalog}}:"
        self.created, self.activity, self.pending = tag + "created", tag + "activity", tag + "pending"
        self.dirty = tag + "dirty"
        self._place = backend.client.register_script(PLACE)

    # Keeping the sorted sets close to the sessions --------------------------------------------

    def before_change(self, what: str) -> None:
        """A create or delete is about to change the registry: count it as pending."""
        self.backend._run(what, lambda: self.backend.client.incr(self.pending))

    def created_one(self, what: str, session_id: str, record: Record) -> None:
        """``create`` made the session: its place, by its first record's time."""
        ts = float(orjson.loads(record.line)["ts"])
        self._send(what, [1, ts, ts, session_id])

    def deleted(self, what: str, session_ids: list[str], *, counted: bool) -> None:
        args: list[Any] = [1 if counted else 0]
        for sid in session_ids:
            args += ["-", "-", sid]
        self._send(what, args)

    def touched(self, session_id: str) -> None:
        """The first append since the session's entry was saved (the append script said
        so): its ``last_activity`` score is stale until the entry is saved again."""
        backend = self.backend
        backend._run(f"appending to session {session_id!r}",
                     lambda: backend.client.sadd(self.dirty, session_id))

    def _send(self, what: str, args: list[Any]) -> None:
        keys = [self.created, self.activity, self.pending, self.dirty]
        self.backend._run(what, lambda: self._place(keys=keys, args=args))

    # The hooks ----------------------------------------------------------------------------------

    def read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        backend = self.backend
        what = "reading the session catalog"
        ids = sorted(sid for sid in (_text(m) for m in backend._run(
            what, lambda: backend.client.smembers(backend._registry))) if sid.startswith(prefix))
        if not ids:
            return []
        found: list[tuple[str, bytes | None]] = []
        gone = []
        for sid, entry in zip(ids, self._entries(what, ids), strict=True):
            if isinstance(entry, bytes) or entry is None:
                found.append((sid, entry))
            else:
                gone.append(sid)  # expired (ttl), deleted, or half created by a process that died
        if gone:  # tidy the registry, as session_ids does
            backend._unregister(what, gone)
        return found

    def _entries(self, what: str, ids: list[str]) -> list[bytes | bool | None]:
        """Per id, in one round trip: its current entry, None (none for its head), or False
        (no such session)."""
        backend = self.backend
        if not ids:
            return []
        heads = backend._run(what, lambda: backend._pipeline(
            False, [("hmget", (backend.keys(sid)[0], ["seq", "c"])) for sid in ids]))
        found: list[bytes | bool | None] = []
        for seq, entry in heads:
            if seq is None:
                found.append(False)
                continue
            made_for, _, blob = (entry or b"").partition(b":")
            found.append(blob if entry is not None and made_for == seq else None)
        return found

    def reset(self) -> None:
        backend = self.backend
        ids = backend.session_ids()
        backend._run("dropping the session catalog", lambda: backend._pipeline(
            False, [("hdel", (backend.keys(sid)[0], "c")) for sid in ids]))
        backend._run("dropping the session catalog",
                     lambda: backend.client.delete(self.created, self.activity, self.pending,
                                                   self.dirty))

    def write(self, entries: list[tuple[str, Head, bytes]],
              keys: list[tuple[float, float]] | None) -> None:
        backend = self.backend
        what = "saving session catalog entries"

        def send() -> Any:
            args: list[list[Any]] = [[head.seq, head.digest, blob] for _sid, head, blob in entries]
            if backend.cluster:
                # redis-py refuses scripts in a cluster pipeline: one call each (an entry
                # is derived data, written now and then, never on the append path).
                return [backend._catalog(keys=[backend.keys(sid)[0]], args=a)
                        for (sid, _h, _b), a in zip(entries, args, strict=True)]
            pipe = backend.client.pipeline(transaction=False)
            for (sid, _head, _blob), a in zip(entries, args, strict=True):
                backend._catalog(keys=[backend.keys(sid)[0]], args=a, client=pipe)
            return pipe.execute()

        saved = backend._run(what, send)
        if keys is None:
            return
        # Only where the entry was saved (the head was the one it was made for): a slow
        # writer's older keys don't move a session back.
        places: list[Any] = [0]
        placed = []
        for (sid, _head, _blob), (created, last), done in zip(entries, keys, saved, strict=True):
            if int(done) == 1:
                places += [created, last, sid]
                placed.append(sid)
        if not placed:
            return
        self._send(what, places)
        # An append may have marked one of them between its entry and here, and the step
        # above unmarked it: mark those again (as _unregister puts back ids).
        marks = backend._run(what, lambda: backend._pipeline(
            False, [("hget", (backend.keys(sid)[0], "cd")) for sid in placed]))
        again = [sid for sid, mark in zip(placed, marks, strict=True) if mark is not None]
        if again:
            backend._run(what, lambda: backend.client.sadd(self.dirty, *again))

    def wants_rebuild(self, listed: int | None = None) -> bool:
        backend = self.backend
        what = "reading the session catalog"
        counted = backend._run(what, lambda: backend._pipeline(False, [
            ("scard", (backend._registry,)), ("zcard", (self.created,)),
            ("zcard", (self.activity,)), ("get", (self.pending,))]))
        registered, created, active, pending = counted
        expected = registered if listed is None else listed
        return not (created == active == expected and int(pending or 0) == 0)

    def rebuild(self, entries: list[tuple[str, Head, bytes, tuple[float, float]]]) -> None:
        """The sorted sets from exactly these sessions: built aside, then renamed over."""
        backend = self.backend
        what = "rebuilding the session catalog's order"
        client = backend.client
        token = os.urandom(6).hex()
        aside = [self.created + ":building:" + token, self.activity + ":building:" + token]
        try:
            for start in range(0, len(entries), _BUILD_CHUNK):
                part = entries[start:start + _BUILD_CHUNK]
                backend._run(what, lambda part=part: backend._pipeline(False, [  # type: ignore[misc]
                    ("zadd", (aside[0], {sid: keys[0] for sid, _h, _b, keys in part})),
                    ("zadd", (aside[1], {sid: keys[1] for sid, _h, _b, keys in part})),
                    ("pexpire", (aside[0], 600_000)), ("pexpire", (aside[1], 600_000))]))
            if entries:
                backend._run(what, lambda: backend.transaction(what, [
                    ("rename", (aside[0], self.created)), ("rename", (aside[1], self.activity)),
                    ("persist", (self.created,)), ("persist", (self.activity,)),
                    ("delete", (self.pending,))]))
            else:
                backend._run(what, lambda: client.delete(self.created, self.activity, self.pending))
        finally:
            backend._run(what, lambda: client.delete(*aside))

    def walk(self, order: str, descending: bool, start: float | None,
             refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        if order not in ("last_activity", "created_at") or self.wants_rebuild():
            return None
        # The sessions appended to since their entry was saved, placed by their folds (the
        # store saves those, which unmarks them); the rest walked along the sorted set.
        backend = self.backend
        unsure = {_text(m) for m in backend._run("reading the session catalog",
                                                 lambda: backend.client.smembers(self.dirty))}
        placed = []
        for sid in sorted(unsure):
            fold = refold(sid)
            if fold is not None:
                key = fold[2] if order == "created_at" else fold[3]
                if start is None or (key <= start if descending else key >= start):
                    placed.append((key, sid, fold[1]))
        placed.sort(reverse=descending)
        walked = self._walk(self.activity if order == "last_activity" else self.created,
                            descending, start, refold, unsure)
        merged = heapq.merge(walked, placed, key=lambda r: (r[0], r[1]), reverse=descending)
        return ((sid, entry) for _key, sid, entry in merged)

    def _walk(self, key: str, descending: bool, start: float | None, refold: Refold,
              skip: set[str]) -> Iterator[tuple[float, str, bytes]]:
        backend = self.backend
        what = "reading the session catalog"
        client = backend.client
        # Keyset pages: from the last (score, id) seen, inclusive of its score (ties), so the
        # ids already seen at that score are skipped here, not by an offset that a change
        # elsewhere in the set would shift.
        low = "-inf" if start is None else repr(start)
        high = "+inf" if start is None else repr(start)
        seen_at: set[str] = set()
        last_score: float | None = None
        while True:
            num = _CHUNK + len(seen_at)  # the ids seen at the last score come first again
            call = (partial(client.zrevrangebyscore, key, high, "-inf") if descending
                    else partial(client.zrangebyscore, key, low, "+inf"))
            page: list[Any] = backend._run(
                what, partial(call, start=0, num=num, withscores=True))
            rows = [(sid, score) for sid, score in ((_text(m), float(v)) for m, v in page)
                    if not (score == last_score and sid in seen_at)]
            fresh = [(sid, score) for sid, score in rows if sid not in skip]
            gone = []
            for (sid, score), entry in zip(fresh, self._entries(what, [i for i, _ in fresh]),
                                           strict=True):
                if entry is False:
                    gone.append(sid)
                    continue
                if entry is None:
                    fold = refold(sid)  # appended to since: shown where it stood (README)
                    if fold is None:
                        continue
                    entry = fold[1]
                assert isinstance(entry, bytes)
                yield score, sid, entry
            if gone:
                backend._unregister(what, gone)
                self.deleted(what, gone, counted=False)
            if len(page) < num or not rows:
                return
            for sid, score in rows:  # the skipped count as seen, for the next read's ties
                if score != last_score:
                    last_score, seen_at = score, set()
                seen_at.add(sid)
            low = high = repr(last_score)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
