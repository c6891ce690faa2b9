"""``serve``: open a store and run the app under uvicorn until interrupted."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from collections.abc import Iterable

import uvicorn

from ..store._open import open as open_store
from ._app import LOOPBACK_HOSTS, create_app
from ._context import DEFAULT_MAX_BODY_BYTES
from ._live import Streams
from ._token import load_token


class _Server(uvicorn.Server):
    """uvicorn waits for open responses before it shuts down, and a live stream never ends by
    itself: so the streams are told to end first, and the address really bound is announced."""

    def __init__(self, config: uvicorn.Config, streams: Streams, banner: str) -> None:
        super().__init__(config)
        self._streams = streams
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self._banner:
            sock = self.servers[0].sockets[0]
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(self._banner.format(url=f"http://{shown}:{port}/"), file=sys.stderr, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._streams.close_all()
        await super().shutdown(sockets)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(  # noqa: PLR0913 - keyword-only options, one per command-line flag
    store_url: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8765,
    read_only: bool = False, allow_delete: bool = False, allow_redact: bool = False,
    token_file: str | os.PathLike[str] | None = None, cors_origins: Iterable[str] = (),
    log_level: str = "info", max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve the store at ``store_url`` over HTTP until SIGINT/SIGTERM.

    Writes need the bearer token from ``token_file``, else ``EVENTLOG_TOKEN``, else the
    default token file (made, and shown once, if missing). ``read_only`` serves no write route.
    """
    token = None if read_only else load_token(token_file)
    if not _loopback(host):
        print(f"eventlog: warning: listening on {host}: anyone who can reach this address can "
              "read every session", file=sys.stderr, flush=True)
    log = open_store(store_url, create=not read_only)  # read-only never creates a store
    try:
        # On loopback only loopback names are answered (no DNS rebinding); elsewhere the names
        # clients use cannot be known here.
        hosts = (*LOOPBACK_HOSTS, host) if _loopback(host) else None
        app = create_app(log, token=token, read_only=read_only, allow_delete=allow_delete,
                         allow_redact=allow_redact,
                         cors_origins=cors_origins, max_body_bytes=max_body_bytes, allowed_hosts=hosts)
        mode = "read-only" if read_only else "writes need the bearer token"
        if allow_delete:
            mode += ", deletes allowed"
        if allow_redact:
            mode += ", redaction allowed"
        banner = f"eventlog: serving {os.fspath(store_url)} at {{url}} ({mode})"
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                                server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
        # uvicorn re-raises the Ctrl-C it handled; stopping is what the user asked for.
        with contextlib.suppress(KeyboardInterrupt):
            _Server(config, app.state.streams, banner).run()
    finally:
        log.close()
