"""What the viewer reads a session through: pages of every event (by count and by bytes, long
content clipped), one event whole, a jump to a seq or a time, and the same with filters.

A page is never the whole session: it is ``limit`` events at most and ``max_bytes`` of JSON
at most, and content longer than ``clip`` characters is cut (``clipped``, with the full
``size``) so that a 15 MiB message costs the page a few kilobytes; ``/events/{seq}`` gives
it whole on demand. Filtered pages go through ``EventLog.search``, so the server, the CLI
and the viewer match events by one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core._records import Event
from ..store._log import EventLog
from ..store._search import SearchPage, decode_cursor
from ..store._state import MESSAGE
from ._context import Context, event_json
from ._http import ApiError, JSONResponse, invalid, parse_int, query_bool, query_float, query_int

MAX_LIMIT = 1000
DEFAULT_CLIP = 2000             # characters of content (or of data as JSON) a page shows
MAX_CLIP = 1 << 20
DEFAULT_MAX_BYTES = 1 << 20     # of JSON per page
MAX_BYTES = 16 << 20
SCAN_BUDGET = 200_000           # events one filtered request examines at most
MAX_TYPES = 20


def clip_event(event: Event, clip: int) -> dict[str, Any]:
    """The event as JSON for a page: whole if its data is small, else cut to ``clip``.

    A message keeps its fields with the content cut (metadata dropped if it alone is too
    big); any other event keeps only a ``preview`` of its data as JSON text."""
    encoded = orjson.dumps(event.data)
    found: dict[str, Any] = {"seq": event.seq, "type": event.type, "ts": event.ts,
                             "data": event.data, "size": len(encoded), "clipped": False}
    if len(encoded) <= clip:
        return found
    data = event.data
    found["clipped"] = True
    if event.type == MESSAGE and type(data) is dict and type(data.get("content")) is str:
        shown = dict(data)
        shown["content"] = data["content"][:clip]
        if data.get("metadata") is not None and len(orjson.dumps(data["metadata"])) > clip:
            shown["metadata"] = None
        found["data"] = shown
        found["content_length"] = len(data["content"])
    else:
        found["data"] = None
        found["preview"] = encoded[:clip * 4].decode("utf-8", "ignore")[:clip]
    return found


@dataclass(frozen=True, slots=True)
class Filters:
    query: str = ""
    sender: str | None = None
    recipient: str | None = None
    to_everyone: bool = False
    types: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        return bool(self.query or self.sender or self.recipient or self.to_everyone or self.types)


def read_filters(request: Request) -> Filters:
    params = request.query_params
    types = tuple(params.getlist("type")) or None
    if types is not None and len(types) > MAX_TYPES:
        raise invalid(f"at most {MAX_TYPES} type filters")
    return Filters(params.get("q", ""), params.get("sender") or None, params.get("recipient") or None,
                   query_bool(request, "to_everyone", default=False), types)


def read_clip(request: Request) -> int:
    clip = query_int(request, "clip", default=DEFAULT_CLIP, minimum=16, maximum=MAX_CLIP)
    assert clip is not None
    return clip


@dataclass(frozen=True, slots=True)
class PageRequest:
    sid: str
    limit: int
    max_bytes: int
    clip: int
    filters: Filters


class Pager:
    """Reads one page of a session (blocking; run off the event loop)."""

    def __init__(self, log: EventLog, req: PageRequest, last_seq: int) -> None:
        self.log = log
        self.req = req
        self.last_seq = last_seq
        self.scanned = 0

    def _search(self, *, before: int | None = None, after: int | None = None, descending: bool,
                limit: int) -> SearchPage:
        f = self.req.filters
        page = self.log.search(f.query, session_id=self.req.sid, sender=f.sender, recipient=f.recipient,
                               to_everyone=f.to_everyone, types=f.types, before_seq=before,
                               after_seq=after, descending=descending, limit=limit,
                               scan_limit=SCAN_BUDGET)
        self.scanned += page.events_scanned
        return page

    def _take(self, page: SearchPage, budget: int) -> tuple[list[dict[str, Any]], int | None]:
        """The page's events as JSON, in scan order, within ``budget`` bytes (one at least);
        and the seq the next page in the same direction resumes at (None: nothing more)."""
        taken: list[dict[str, Any]] = []
        size = 0
        for hit in page.hits:
            shown = clip_event(hit.event, self.req.clip)
            cost = len(orjson.dumps(shown))
            if taken and size + cost > budget:
                return taken, hit.event.seq  # resumes *at* this event
            taken.append(shown)
            size += cost
        if page.next_cursor is None:
            return taken, None
        # The page filled its limit, or ran out of scan budget: the cursor names the last
        # event examined, and the next page starts just past it.
        _, seq, descending = decode_cursor(page.next_cursor)
        return taken, seq - 1 if descending else seq + 1

    def backward(self, before: int | None, after: int | None) -> dict[str, Any]:
        page = self._search(before=before, after=after, descending=True, limit=self.req.limit)
        events, at = self._take(page, self.req.max_bytes)
        events.reverse()
        older = None if at is None else at + 1  # before_seq is exclusive: at itself comes next
        if before is None or before > self.last_seq:
            newer = None  # the newest page: the live stream goes on from the head
        else:
            newer = events[-1]["seq"] if events else before - 1
        return {"events": events, "older_before_seq": older, "newer_after_seq": newer}

    def forward(self, after: int) -> dict[str, Any]:
        page = self._search(after=after, descending=False, limit=self.req.limit)
        events, at = self._take(page, self.req.max_bytes)
        newer = None if at is None else at - 1
        older = (events[0]["seq"] if events else after + 1) if after > 0 else None
        return {"events": events, "older_before_seq": older, "newer_after_seq": newer}

    def around(self, seq: int) -> dict[str, Any]:
        """A page with ``seq`` (or the nearest event the filters keep) in its middle."""
        half = max(1, self.req.limit // 2)
        older = self._search(before=seq + 1, descending=True, limit=half)
        before, at_old = self._take(older, self.req.max_bytes // 2)
        newer = self._search(after=seq, descending=False, limit=max(1, self.req.limit - len(before)))
        after, at_new = self._take(newer, self.req.max_bytes // 2)
        before.reverse()
        return {"events": before + after,
                "older_before_seq": None if at_old is None else at_old + 1,
                "newer_after_seq": None if at_new is None else at_new - 1}


def seek_time(log: EventLog, sid: str, ts: float) -> int | None:
    """The seq of the first event at or after ``ts`` (None: every event is older)."""
    for event in log.events(sid):
        if event.ts >= ts:
            return event.seq
    return None


def one_event(log: EventLog, sid: str, seq: int) -> Event:
    last = log.get_session(sid).last_seq
    if not 1 <= seq <= last:
        raise ApiError(404, "event_not_found", f"session {sid!r} has no seq {seq} (it ends at {last})",
                       session_id=sid, current_seq=last)
    for event in log.events(sid, after_seq=seq - 1):
        return event
    raise ApiError(404, "event_not_found", f"session {sid!r} has no seq {seq}", session_id=sid)


class TranscriptRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log

    async def transcript(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        limit = query_int(request, "limit", default=100, minimum=1, maximum=MAX_LIMIT)
        max_bytes = query_int(request, "max_bytes", default=DEFAULT_MAX_BYTES, minimum=1024,
                              maximum=MAX_BYTES)
        assert limit is not None and max_bytes is not None
        req = PageRequest(sid, limit, max_bytes, read_clip(request), read_filters(request))
        before = query_int(request, "before_seq")
        after = query_int(request, "after_seq")
        around = query_int(request, "around_seq")
        at_ts = query_float(request, "at_ts")
        if sum(x is not None for x in (around, at_ts)) + (before is not None or after is not None) > 1:
            raise invalid("give around_seq, or at_ts, or before_seq/after_seq: one of them")

        def read() -> dict[str, Any]:
            last = self.log.get_session(sid).last_seq
            pager = Pager(self.log, req, last)
            anchor = around
            if at_ts is not None:
                anchor = seek_time(self.log, sid, at_ts)
                anchor = last if anchor is None else anchor
            if anchor is not None:
                found = pager.around(min(anchor, last))
            elif after is not None and before is None:
                found = pager.forward(after)
            else:
                found = pager.backward(before, after)
            return {"session_id": sid, "last_seq": last, "anchor_seq": anchor, **found,
                    "events_scanned": pager.scanned}

        return JSONResponse(await self.ctx.run(read))

    async def event(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        seq = parse_int("seq", request.path_params["seq"])
        event = await self.ctx.run(one_event, self.log, sid, seq)
        return JSONResponse(event_json(event))
