"""Operations and the viewer: health, stats, verify, metrics, the OpenAPI document, static files."""

from __future__ import annotations

import contextlib
import time
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..core._errors import SessionNotFoundError
from ..core._records import ChatSession
from ..store._log import EventLog
from ._catalog import read_all
from ._context import Context
from ._http import ApiError, JSONResponse
from ._metrics import CONTENT_TYPE
from ._openapi import STATIC_FILES, build_openapi


def _version() -> str:
    from .. import __version__
    return __version__


def _sizes(log: EventLog) -> tuple[int, int]:
    """Sessions and the bytes they take; cheap (no replay), for /metrics."""
    ids = log.session_ids()
    total = 0
    for sid in ids:
        try:
            total += log.size(sid)
        except SessionNotFoundError:
            continue
    return len(ids), total


class OpsRoutes:
    def __init__(self, ctx: Context, live_streams: Any) -> None:
        self.ctx = ctx
        self.live = live_streams
        self.openapi = build_openapi(ctx.settings, _version())
        static = resources.files(__package__) / "static"
        self.files = {name: static.joinpath(name).read_bytes() for name in STATIC_FILES}
        self.index = static.joinpath("index.html").read_bytes()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": _version()})

    async def metrics(self, request: Request) -> Response:
        sessions, size = await self.ctx.run(_sizes, self.ctx.log)
        text = self.ctx.metrics.render(sessions=sessions, store_bytes=size)
        return Response(text, headers={"Content-Type": CONTENT_TYPE})

    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(self.openapi)

    async def stats(self, request: Request) -> Response:
        log = self.ctx.log

        def totals() -> tuple[list[ChatSession], int, int]:
            sessions, unreadable = read_all(log)
            size = 0
            for sid in log.session_ids():
                with contextlib.suppress(SessionNotFoundError):
                    size += log.size(sid)
            return sessions, len(unreadable), size

        sessions, unreadable, size = await self.ctx.run(totals)
        appended = self.ctx.metrics.appended
        return JSONResponse({
            "version": _version(), "sessions": len(sessions) + unreadable,
            "unreadable_sessions": unreadable,
            "events": sum(s.last_seq for s in sessions),
            "messages": sum(s.message_count for s in sessions), "bytes": size,
            "uptime_seconds": max(0.0, time.time() - self.ctx.started),
            "read_only": self.ctx.settings.read_only, "allow_delete": self.ctx.settings.allow_delete,
            "live_streams": len(self.live.active),
            "appended_events": {k: appended[k] for k in ("message", "event", "session")},
        })

    async def verify_session(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        report = await self.ctx.run(self.ctx.log.verify, sid)
        result = self.ctx.remember_verify(sid, report)
        return JSONResponse({"session_id": sid, **result})

    async def verify_store(self, request: Request) -> Response:
        log = self.ctx.log

        def verify_all() -> dict[str, Any]:
            checked = events = 0
            problems: list[str] = []
            for sid in log.session_ids():
                try:
                    report = log.verify(sid)
                except SessionNotFoundError:
                    continue  # deleted while we went through the store
                self.ctx.remember_verify(sid, report)
                checked += 1
                events += report.events_checked
                problems.extend(report.problems)
            return {"ok": not problems, "sessions_checked": checked, "events_checked": events,
                    "problems": problems}

        return JSONResponse(await self.ctx.run(verify_all))

    async def viewer(self, request: Request) -> Response:
        return Response(self.index, media_type="text/html",
                        headers={"Cache-Control": "no-cache"})

    async def viewer_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:  # an allow-list: nothing else on disk is reachable
            raise ApiError(404, "not_found", f"no viewer file {name!r}")
        return Response(self.files[name], media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "no-cache"})
