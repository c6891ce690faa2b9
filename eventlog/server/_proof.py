"""Routes for redaction (a write behind the token, served only with ``allow_redact``) and
checkpoints (reads)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..core._checkpoint import Checkpoint
from ._context import Context, event_json
from ._http import JSONResponse, expect_list, expect_object, invalid, read_json, require_token

REDACT_FIELDS = frozenset({"seqs", "reason"})


def checkpoint_json(checkpoint: Checkpoint) -> Any:
    return json.loads(checkpoint.to_json())


class ProofRoutes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.log

    async def redact(self, request: Request) -> Response:
        require_token(request, self.ctx.settings.token)
        sid = request.path_params["session_id"]
        body = expect_object(await read_json(request, self.ctx.settings.max_body_bytes),
                             "request body", REDACT_FIELDS)
        seqs = expect_list(body.get("seqs"), "seqs", min_items=1, max_items=100_000)
        reason = body.get("reason")
        if type(reason) is not str:
            raise invalid("reason must be a string")
        event = await self.ctx.run(self.log.redact, sid, seqs, reason=reason)
        self.ctx.verified.pop(sid, None)
        return JSONResponse({"event": event_json(event)}, status_code=201)

    async def session_checkpoint(self, request: Request) -> Response:
        checkpoint = await self.ctx.run(self.log.checkpoint, request.path_params["session_id"])
        return JSONResponse(checkpoint_json(checkpoint))

    async def store_checkpoint(self, request: Request) -> Response:
        return JSONResponse(checkpoint_json(await self.ctx.run(self.log.checkpoint)))
