"""Looking across a session or the store: search, who talks to whom, and export.

``/api/search`` pages ``EventLog.search`` (one session or all) with each hit clipped for a
result list and a snippet around its first match. ``/graph`` counts the messages between
each pair of agents; the counts are kept per session and advanced by the events appended
since the last call, so a live session costs only its new events (a redaction among them
erased messages already counted, so the session is counted again from the start). A
redacted message has no sender: it is in no pair. ``/export`` writes the
same files as ``eventlog export``.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..cli._export import EXPORTERS
from ..core._records import Event
from ..store._log import EventLog
from ..store._redaction import REDACTED
from ..store._state import MESSAGE
from ._context import Context
from ._http import ApiError, JSONResponse, invalid, query_bool, query_int
from ._transcript import SCAN_BUDGET, clip_event, read_clip, read_filters

SNIPPET = 80
GRAPHS_KEPT = 256
EXPORT_TYPES = {"jsonl": ("application/x-ndjson", "jsonl"), "json": ("application/json", "json"),
                "markdown": ("text/markdown; charset=utf-8", "md")}
_CHUNK = 1 << 16


def snippet(event: Event, fields: Sequence[str], query: str, width: int = SNIPPET) -> str:
    """A short text around the first match (or the start of the content), for result lists."""
    data = event.data
    text: str
    if event.type == MESSAGE and type(data) is dict and type(data.get("content")) is str:
        text = str(data["content"])
        if fields and "content" not in fields:
            return text[:2 * width]
    else:
        text = orjson.dumps(data).decode()
    at = text.casefold().find(query.casefold()) if query else -1
    if at < 0 or len(text.casefold()) != len(text):  # casefold changed the length: no position
        return text[:2 * width]
    start, end = max(0, at - width), at + len(query) + width
    return ("\u2026" if start else "") + text[start:end] + ("\u2026" if end < len(text) else "")


@dataclass
class Traffic:
    """Counts for one session up to ``last_seq``, for one life of its id."""

    life: object
    last_seq: int = 0
    pairs: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)

    def add(self, event: Event) -> None:
        self.types[event.type] += 1
        data = event.data
        # A redacted message's data is a tombstone, with no sender to count it under.
        if event.type == MESSAGE and type(data) is dict and type(data.get("sender")) is str:
            self.pairs[(data["sender"], data.get("recipient"))] += 1
        self.last_seq = event.seq


class Graphs:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.kept: dict[str, Traffic] = {}
        self.lock = threading.Lock()

    def traffic(self, sid: str) -> tuple[Traffic, list[str]]:
        session = self.log.get_session(sid)
        life = self.log.backend.incarnation(sid)
        with self.lock:
            known = self.kept.pop(sid, None)
        if known is None or known.life != life or known.last_seq > session.last_seq:
            known = Traffic(life)  # new, or another life of the id: count from the start
        if known.last_seq < session.last_seq:
            fresh = Traffic(life, known.last_seq, known.pairs.copy(), known.types.copy())
            for event in self.log.events(sid, after_seq=known.last_seq):
                if event.type == REDACTED and known.last_seq:  # counted in an earlier call
                    return self._recount(sid, life, session.participants)
                fresh.add(event)
            known = fresh
        self._keep(sid, known)
        return known, session.participants

    def _recount(self, sid: str, life: object, participants: list[str]) -> tuple[Traffic, list[str]]:
        """Every event again: a redaction erased messages the counts kept still hold."""
        known = Traffic(life)
        for event in self.log.events(sid):
            known.add(event)
        self._keep(sid, known)
        return known, participants

    def _keep(self, sid: str, known: Traffic) -> None:
        with self.lock:
            self.kept[sid] = known
            while len(self.kept) > GRAPHS_KEPT:
                self.kept.pop(next(iter(self.kept)))


class ExploreRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.graphs = Graphs(ctx.log)

    async def search(self, request: Request) -> Response:
        params = request.query_params
        limit = query_int(request, "limit", default=50, minimum=1, maximum=1000)
        assert limit is not None
        clip = read_clip(request)
        f = read_filters(request)
        sid = params.get("session_id")  # "" is refused as an id, not taken for "every session"
        descending = query_bool(request, "descending", default=False)

        def run() -> dict[str, Any]:
            page = self.log.search(f.query, session_id=sid, sender=f.sender, recipient=f.recipient,
                                   to_everyone=f.to_everyone, types=f.types, descending=descending,
                                   limit=limit, cursor=params.get("cursor"), scan_limit=SCAN_BUDGET)
            hits = [{"session_id": h.session_id, "event": clip_event(h.event, clip),
                     "fields": list(h.fields), "snippet": snippet(h.event, h.fields, f.query)}
                    for h in page.hits]
            return {"hits": hits, "next_cursor": page.next_cursor,
                    "events_scanned": page.events_scanned}

        return JSONResponse(await self.ctx.run(run))

    async def graph(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        traffic, participants = await self.ctx.run(self.graphs.traffic, sid)
        pairs = sorted(traffic.pairs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
        return JSONResponse({
            "session_id": sid, "last_seq": traffic.last_seq, "participants": participants,
            "pairs": [{"sender": s, "recipient": r, "count": n} for (s, r), n in pairs],
            "types": [{"type": t, "count": n} for t, n in sorted(traffic.types.items())],
        })

    async def export(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        kind = request.query_params.get("format", "jsonl")
        if kind not in EXPORT_TYPES:
            raise invalid(f"format must be one of {', '.join(EXPORT_TYPES)}, not {kind!r}")
        media, suffix = EXPORT_TYPES[kind]

        def write() -> IO[bytes]:
            events = self.log.events(sid)
            first = next(events, None)  # a missing session is a 404 before anything is sent
            if first is None:
                raise ApiError(404, "session_not_found", f"session {sid!r} holds no events")
            # Spooled: small exports stay in memory, big ones go to a temporary file.
            out = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed below
            try:
                EXPORTERS[kind](sid, _chain(first, events), out)
                out.seek(0)
            except BaseException:
                out.close()
                raise
            return out

        out = await self.ctx.run(write)

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await self.ctx.run(out.read, _CHUNK):
                    yield chunk
            finally:
                out.close()

        # Any id may be a name (issue 15): the plain filename keeps only characters safe in
        # a header and a file name (no quote, slash or control character), filename* the id
        # itself, percent-encoded (RFC 6266).
        plain = _UNSAFE_NAME.sub("_", sid)[:100].lstrip(".") or "session"
        return StreamingResponse(body(), media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{plain}.{suffix}"; '
                                   f"filename*=UTF-8''{quote(sid, safe='')}.{suffix}"})


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _chain(first: Event, rest: Any) -> Any:
    yield first
    yield from rest
