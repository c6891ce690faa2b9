"""Routes that read and write sessions: list, get, create, delete, messages and events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from ..core._errors import SessionExistsError, SessionNotFoundError
from ..core._records import ChatMessage, ChatSession, Event
from ._catalog import ORDERS, SessionFilter, SessionPage, offset_page, page_sessions
from ._context import Context, event_json, message_json, session_json
from ._http import (
    ApiError,
    JSONResponse,
    decode_json,
    expect_list,
    expect_object,
    invalid,
    query_bool,
    query_float,
    query_int,
    read_json,
    require_token,
)
from ._paths import session_location

T = TypeVar("T")

MAX_PAGE = 1000
MAX_BATCH = 10_000
MAX_QUERY = 200
SORTS = ("last_activity", "session_id")
MESSAGE_FIELDS = frozenset({"sender", "content", "recipient", "id", "timestamp", "message_type",
                            "metadata"})
EVENT_FIELDS = frozenset({"type", "data"})
CREATE_FIELDS = frozenset({"session_id", "participants", "metadata", "created_at", "exist_ok"})


class SessionRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log

    # Helpers ---------------------------------------------------------------------------

    async def _write_body(self, request: Request) -> Any:
        require_token(request, self.ctx.settings.token)
        return await read_json(request, self.ctx.settings.max_body_bytes)

    def _size(self, session_id: str) -> int | None:
        try:
            return self.log.size(session_id)
        except SessionNotFoundError:
            return None  # deleted while we listed it

    def _timed(self, kind: str, count: int, append: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = append()
        self.ctx.metrics.record_append(kind, count, time.perf_counter() - start)
        return result

    # Sessions --------------------------------------------------------------------------

    async def list_sessions(self, request: Request) -> Response:
        limit = query_int(request, "limit", default=100, minimum=1, maximum=MAX_PAGE)
        offset = query_int(request, "offset", default=0)
        assert limit is not None and offset is not None
        cursor = request.query_params.get("cursor")
        if cursor is not None and offset:
            raise invalid("give cursor or offset, not both")
        filters = session_filter(request)
        order, descending = _order(request)

        def page() -> tuple[SessionPage, list[int | None]]:
            if cursor is None:
                found = offset_page(self.log, limit=limit, offset=offset, filters=filters, order=order,
                                    descending=descending)
            else:
                found = page_sessions(self.log, limit=limit, cursor=cursor, filters=filters,
                                      order=order, descending=descending)
            return found, [self._size(s.session_id) for s in found.sessions]

        found, sizes = await self.ctx.run(page)
        verified = self.ctx.verified
        return JSONResponse({
            "sessions": [session_json(s, size=size, verify=verified.get(s.session_id))
                         for s, size in zip(found.sessions, sizes, strict=True)],
            "total": found.total, "offset": offset, "limit": limit, "unreadable": found.unreadable,
            "next_cursor": found.next_cursor,
        })

    async def get_session(self, request: Request) -> Response:
        sid = request.path_params["session_id"]

        def read() -> tuple[ChatSession, int | None]:
            return self.log.get_session(sid), self._size(sid)

        session, size = await self.ctx.run(read)
        return JSONResponse(session_json(session, size=size, verify=self.ctx.verified.get(sid)))

    async def create_session(self, request: Request) -> Response:
        body = expect_object(await self._write_body(request), "request body", CREATE_FIELDS)
        exist_ok = body.get("exist_ok", False)
        if type(exist_ok) is not bool:
            raise invalid("exist_ok must be true or false")
        created_at = body.get("created_at")
        participants = body.get("participants")
        if participants is not None and type(participants) is not list:
            # The library takes any iterable of names; over JSON only an array means that.
            raise invalid("participants must be an array of names")

        def create() -> tuple[ChatSession, bool]:
            try:
                session = self._timed("session", 1, lambda: self.log.create_session(
                    body.get("session_id"), participants, body.get("metadata"),
                    created_at=created_at))
                return session, True
            except SessionExistsError:
                if not exist_ok:
                    raise
                return self.log.get_session(body["session_id"]), False

        session, created = await self.ctx.run(create)
        size = await self.ctx.run(self._size, session.session_id)
        headers = {"Location": session_location(session.session_id)}
        return JSONResponse(session_json(session, size=size), status_code=201 if created else 200,
                            headers=headers)

    async def delete_session(self, request: Request) -> Response:
        require_token(request, self.ctx.settings.token)
        sid = request.path_params["session_id"]
        await self.ctx.run(self.log.delete_session, sid)
        self.ctx.verified.pop(sid, None)
        return Response(status_code=204)

    # Messages and events ---------------------------------------------------------------

    async def get_messages(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        limit = query_int(request, "limit", default=100, minimum=0, maximum=MAX_PAGE)
        before = query_int(request, "before_seq")
        after = query_int(request, "after_seq")
        messages = await self.ctx.run(self.log.get_messages, sid, limit=limit, before_seq=before,
                                      after_seq=after)
        return JSONResponse({"messages": [message_json(m) for m in messages]})

    async def post_messages(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        expected = query_int(request, "expected_seq")
        body = await self._write_body(request)
        if type(body) is dict and "messages" in body:
            items = expect_list(expect_object(body, "request body", frozenset({"messages"}))["messages"],
                                "messages", min_items=1, max_items=MAX_BATCH)
            messages = [_message(sid, item, f"messages[{i}]") for i, item in enumerate(items)]
        else:
            messages = [_message(sid, body, "message")]

        def store() -> tuple[list[ChatMessage], int]:
            # A message id stored already is answered with the stored message and nothing is
            # written (a retry): then 200, not 201. Stored before this request means at or
            # below the last seq it found first (the log only grows).
            before = self.log.get_session(sid).last_seq
            return self._timed("message", len(messages),
                               lambda: self.log.add_messages(messages, expected_seq=expected)), before

        stored, before = await self.ctx.run(store)
        last = stored[-1].seq
        retried = all(m.seq is not None and m.seq <= before for m in stored)
        return JSONResponse({"messages": [message_json(m) for m in stored], "last_seq": last},
                            status_code=200 if retried else 201)

    async def post_events(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        expected = query_int(request, "expected_seq")
        body = await self._write_body(request)
        if type(body) is dict and "events" in body:
            items = expect_list(expect_object(body, "request body", frozenset({"events"}))["events"],
                                "events", min_items=1, max_items=MAX_BATCH)
            pairs = [_event(item, f"events[{i}]") for i, item in enumerate(items)]
        else:
            pairs = [_event(body, "event")]
        stored: list[Event] = await self.ctx.run(
            self._timed, "event", len(pairs),
            lambda: self.log.append_many(sid, pairs, expected_seq=expected))
        return JSONResponse({"events": [event_json(e) for e in stored], "last_seq": stored[-1].seq},
                            status_code=201)


def _order(request: Request) -> tuple[str, bool]:
    """``order`` and ``descending``, or the older ``sort`` (newest activity first by default)."""
    params = request.query_params
    sort = params.get("sort")
    if sort is not None:
        if sort not in SORTS:
            raise invalid(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        if "order" in params or "descending" in params:
            raise invalid("give sort, or order and descending, not both")
        return sort, sort == "last_activity"
    order = params.get("order", "last_activity")
    if order not in ORDERS:
        raise invalid(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    return order, query_bool(request, "descending", default=order != "session_id")


def session_filter(request: Request) -> SessionFilter:
    params = request.query_params
    needle = params.get("q") or None
    if needle is not None and len(needle) > MAX_QUERY:
        raise invalid(f"q must be at most {MAX_QUERY} characters")
    metadata = None
    if "metadata" in params:
        metadata = decode_json(params["metadata"].encode(), "metadata")
        if type(metadata) is not dict:
            raise invalid("metadata must be a JSON object of the keys and values to match")
    return SessionFilter(participant=params.get("participant") or None, metadata=metadata,
                         prefix=params.get("prefix") or None,
                         active_after=query_float(request, "active_after"),
                         active_before=query_float(request, "active_before"), q=needle)


def _message(sid: str, value: Any, what: str) -> ChatMessage:
    fields = expect_object(value, what, MESSAGE_FIELDS, frozenset({"sender", "content"}))
    try:
        return ChatMessage(session_id=sid, **fields)
    except TypeError as exc:  # cannot happen with the allow-list above; kept as a 422, not a 500
        raise ApiError(422, "invalid_input", f"{what}: {exc}") from None


def _event(value: Any, what: str) -> tuple[str, Any]:
    fields = expect_object(value, what, EVENT_FIELDS, frozenset({"type"}))
    return fields["type"], fields.get("data")
