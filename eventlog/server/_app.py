"""``create_app``: the ASGI application over one ``EventLog``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core._errors import EventLogError, InvalidInputError
from ..store._log import EventLog
from ._context import DEFAULT_MAX_BODY_BYTES, Context, Settings
from ._explore import ExploreRoutes
from ._history import HistoryRoutes
from ._http import ApiError, from_eventlog, from_http
from ._live import LiveRoutes, Streams
from ._ops import OpsRoutes
from ._paths import decode_session_id, with_raw_session_id
from ._proof import ProofRoutes
from ._sessions import SessionRoutes
from ._transcript import TranscriptRoutes

logger = logging.getLogger("eventlog.server")
Endpoint = Callable[[Request], Awaitable[Response]]

# The viewer's own files only: no inline script or style, no other origin, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:8765`` -> ``::1``, ``localhost:80`` -> ``localhost``."""
    if header.startswith("["):
        return header[1:header.find("]")].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


class Guard:
    """Outermost layer: the Host check, security headers on every answer, request counts.

    The Host check defeats DNS rebinding: without it, any web page a user visits could
    point a name of its own at 127.0.0.1 and read every session through the user's browser.
    """

    def __init__(self, app: ASGIApp, ctx: Context, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.ctx = ctx
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.ctx.metrics.record_request(method, message["status"])
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        if self.hosts is not None:
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if _host_name(header) not in self.hosts:
                refusal = ApiError(400, "bad_host", f"this server does not answer to Host {header!r} "
                                   f"(it answers to {', '.join(sorted(self.hosts))})")
                await refusal.response()(scope, receive, send_with_headers)
                return
        routed = with_raw_session_id(scope)
        if isinstance(routed, ApiError):
            await routed.response()(scope, receive, send_with_headers)
            return
        try:
            await self.app(routed, receive, send_with_headers)
        except Exception:
            if started:
                raise  # too late to answer differently; the server logs it and drops the connection
            logger.exception("%s %s failed", scope["method"], scope.get("path", ""))
            answer = ApiError(500, "internal_error", "internal server error; see the server's log")
            await answer.response()(scope, receive, send_with_headers)


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as the JSON error every other
    refusal is (Starlette answers it in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        origin = request_headers.get("origin", "")
        why = bytes(response.body).decode("latin-1").removeprefix("Disallowed CORS ").split(", ")
        asked = {"origin": f"origin {origin!r}",
                 "method": f"method {request_headers.get('access-control-request-method')!r}",
                 "headers": f"headers {request_headers.get('access-control-request-headers')!r}",
                 "private-network": "private network access"}
        refused = ", ".join(asked.get(w, w) for w in why)
        kept = {k: v for k, v in response.headers.items()
                if k.lower().startswith("access-control-") or k.lower() == "vary"}
        return ApiError(response.status_code, "cors_refused",
                        f"CORS preflight refused: {refused} not allowed here",
                        headers=kept).response()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _eventlog_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EventLogError)
    error = from_eventlog(exc)
    if error.status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc)
    return error.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return from_http(exc).response()


def _route(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route per path, so a 405 names in ``Allow`` every method the path serves."""
    async def endpoint(request: Request) -> Response:
        decode_session_id(request.scope)
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, endpoint, methods=list(handlers))


def _routes(ctx: Context, streams: Streams) -> list[BaseRoute]:
    sessions = SessionRoutes(ctx)
    live = LiveRoutes(ctx, streams)
    ops = OpsRoutes(ctx, streams)
    transcript = TranscriptRoutes(ctx)
    explore = ExploreRoutes(ctx)
    proof = ProofRoutes(ctx)
    writes = not ctx.settings.read_only  # a read-only server has no write route at all: 405, never 401
    sid = "/api/sessions/{session_id}"  # percent-decoded once: see _paths
    table: dict[str, dict[str, Endpoint]] = {
        "/": {"GET": ops.viewer},
        "/static/{name}": {"GET": ops.viewer_file},
        "/healthz": {"GET": ops.health},
        "/metrics": {"GET": ops.metrics},
        "/openapi.json": {"GET": ops.openapi_json},
        "/api/stats": {"GET": ops.stats},
        "/api/verify": {"GET": ops.verify_store},
        "/api/sessions": {"GET": sessions.list_sessions},
        "/api/search": {"GET": explore.search},
        sid: {"GET": sessions.get_session},
        f"{sid}/messages": {"GET": sessions.get_messages},
        f"{sid}/events": {"GET": live.events},
        f"{sid}/events/{{seq}}": {"GET": transcript.event},
        f"{sid}/transcript": {"GET": transcript.transcript},
        f"{sid}/graph": {"GET": explore.graph},
        f"{sid}/export": {"GET": explore.export},
        f"{sid}/stream": {"GET": live.stream},
        f"{sid}/verify": {"GET": ops.verify_session},
        "/api/checkpoint": {"GET": proof.store_checkpoint},
        f"{sid}/checkpoint": {"GET": proof.session_checkpoint},
    }
    if writes:
        table["/api/sessions"]["POST"] = sessions.create_session
        table[f"{sid}/messages"]["POST"] = sessions.post_messages
        table[f"{sid}/events"]["POST"] = sessions.post_events
        history = HistoryRoutes(ctx)
        table[f"{sid}/fork"] = {"POST": history.fork}
        table[f"{sid}/rewind"] = {"POST": history.rewind}
        if ctx.settings.allow_delete:
            table[sid]["DELETE"] = sessions.delete_session
        if ctx.settings.allow_redact:
            table[f"{sid}/redact"] = {"POST": proof.redact}
    return [_route(path, handlers) for path, handlers in table.items()]


def create_app(  # noqa: PLR0913 - keyword-only settings
    log: EventLog, *, token: str | None, read_only: bool = False, allow_delete: bool = False,
    allow_redact: bool = False, cors_origins: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, allowed_hosts: Iterable[str] | None = LOOPBACK_HOSTS,
) -> Starlette:
    """The ASGI app serving ``log``: the JSON API under /api, live streams, operations, the viewer.

    ``token`` is the bearer token writes need (required unless ``read_only``).
    ``allowed_hosts`` are the names the ``Host`` header may carry (loopback names by
    default; None accepts any, for a server reached by names it cannot know). The caller
    keeps ownership of ``log``; shutting the app down stops its live streams, not the log.
    """
    if not read_only and (not isinstance(token, str) or len(token) < 16):
        raise InvalidInputError("a server that accepts writes needs a token of at least 16 characters")
    if read_only and allow_delete:
        raise InvalidInputError("allow_delete contradicts read_only")
    if read_only and allow_redact:
        raise InvalidInputError("allow_redact contradicts read_only")
    if type(max_body_bytes) is not int or max_body_bytes < 1024:
        raise InvalidInputError(f"max_body_bytes must be an int of at least 1024, not {max_body_bytes!r}")
    origins: Sequence[str] = [cors_origins] if isinstance(cors_origins, str) else list(cors_origins)
    settings = Settings(token=None if read_only else token, read_only=read_only,
                        allow_delete=allow_delete, allow_redact=allow_redact,
                        max_body_bytes=max_body_bytes)
    ctx = Context(log=log, settings=settings)
    streams = Streams()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        streams.close_all()
        streams.join(timeout=2 * settings.follow_idle + 1)

    hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
    middleware = [Middleware(Guard, ctx=ctx, hosts=hosts)]
    if origins:  # no CORS unless configured
        # Only the methods this server serves: a read-only one offers no write to any origin.
        methods = ["GET", "HEAD", "OPTIONS"] + ([] if read_only else ["POST"])
        methods += ["DELETE"] if allow_delete else []
        middleware.append(Middleware(
            JSONCORSMiddleware, allow_origins=origins, allow_methods=methods,
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"], max_age=600))
    app = Starlette(routes=_routes(ctx, streams), middleware=middleware, lifespan=lifespan,
                    exception_handlers={ApiError: _api_error, EventLogError: _eventlog_error,
                                        HTTPException: _http_error})
    app.router.redirect_slashes = False  # /api/sessions/ is not found, rather than a redirect
    app.state.eventlog = ctx
    app.state.streams = streams
    return app
