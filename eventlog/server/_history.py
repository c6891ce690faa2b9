"""HTTP routes of the history operations: fork and rewind a session (issue 17)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._context import Context, event_json, session_json
from ._http import JSONResponse, expect_object, invalid, read_json, require_token
from ._paths import session_location

FORK_FIELDS = frozenset({"new_session_id", "at_seq"})
REWIND_FIELDS = frozenset({"to_seq", "reason", "expected_seq"})


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (type(value) is not int or value < 0):
        raise invalid(f"{name} must be a non-negative integer")
    return value


class HistoryRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log

    async def _body(self, request: Request, allowed: frozenset[str],
                    required: frozenset[str] = frozenset()) -> dict[str, Any]:
        require_token(request, self.ctx.settings.token)
        return expect_object(await read_json(request, self.ctx.settings.max_body_bytes),
                             "request body", allowed, required)

    async def fork(self, request: Request) -> Response:
        """``POST /api/sessions/{id}/fork``: 201 with the new session."""
        sid = request.path_params["session_id"]
        body = await self._body(request, FORK_FIELDS)
        new = body.get("new_session_id")
        at_seq = _optional_int(body, "at_seq")
        session = await self.ctx.run(lambda: self.log.fork(sid, new, at_seq=at_seq))
        return JSONResponse(session_json(session), status_code=201,
                            headers={"Location": session_location(session.session_id)})

    async def rewind(self, request: Request) -> Response:
        """``POST /api/sessions/{id}/rewind``: 201 with the rewind event."""
        sid = request.path_params["session_id"]
        body = await self._body(request, REWIND_FIELDS, frozenset({"to_seq"}))
        to_seq = _optional_int(body, "to_seq")
        expected = _optional_int(body, "expected_seq")
        reason = body.get("reason")
        event = await self.ctx.run(lambda: self.log.rewind(sid, to_seq,  # type: ignore[arg-type]
                                                           reason=reason, expected_seq=expected))
        return JSONResponse(event_json(event), status_code=201)
