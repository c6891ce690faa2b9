"""Streams: the NDJSON audit replay and the live Server-Sent Events feed of a session.

``EventLog.follow`` is a blocking iterator, so each SSE client gets one follower thread
that runs it and hands events to the event loop through a bounded queue. The thread is a
plain ``threading.Thread`` rather than one of the shared worker threads: a stream holds its
thread for as long as the client watches, and forty watchers would otherwise starve every
other request of workers. The thread looks up at least every ``follow_idle`` seconds (the
idle timeout of ``follow``, resumed in a loop), so a disconnect or a shutdown stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..core._errors import EventLogError
from ..core._records import Event
from ..store._log import EventLog
from ._context import Context, event_json
from ._http import ApiError, from_eventlog, parse_int, query_int

NDJSON = "application/x-ndjson"
_CLOSING = object()  # put in a stream's queue when the server shuts down
_DRAIN = 256         # events written to the socket in one chunk at most
_NDJSON_CHUNK = 512


class Follower:
    """A thread that follows one session for one client, at most ``capacity`` events ahead."""

    def __init__(self, log: EventLog, session_id: str, after_seq: int,
                 loop: asyncio.AbstractEventLoop, *, capacity: int, idle: float) -> None:
        self.log = log
        self.session_id = session_id
        self.after_seq = after_seq
        self.loop = loop
        self.idle = idle
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._room = threading.Semaphore(capacity)  # bounds the queue: released as the client reads
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"eventlog-follow-{session_id}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def taken(self, count: int) -> None:
        for _ in range(count):
            self._room.release()

    def _run(self) -> None:
        try:
            # One life of the session for the whole stream: a follow started afresh after each
            # idle timeout would go on reading a session deleted and created again meanwhile.
            sid, seq, life = self.log._follow_start(self.session_id, self.after_seq, self.idle)
            while not self._stop.is_set():
                for event in self.log._follow(sid, seq, self.idle, life):
                    if not self._hand(event):
                        return
                    seq = event.seq
        except Exception as exc:  # handed to the client as an error event, then the stream ends
            self._hand(exc)

    def _hand(self, item: Event | Exception) -> bool:
        while not self._room.acquire(timeout=0.25):
            if self._stop.is_set():
                return False
        if self._stop.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is gone
            return False
        return True


class Streams:
    """The live followers, so a shutdown can end every stream at once."""

    def __init__(self) -> None:
        self.active: set[Follower] = set()
        self.closing = False

    def close_all(self) -> None:
        """Called on the event loop when the server begins to shut down."""
        self.closing = True
        for follower in list(self.active):
            follower.stop()
            follower.queue.put_nowait(_CLOSING)

    def join(self, timeout: float) -> None:
        for follower in list(self.active):
            follower.stop()
            follower.thread.join(timeout)


class EventStreamResponse(StreamingResponse):
    """Stops the follower however the response ends: finished, client gone, or cancelled."""

    def __init__(self, content: AsyncIterator[bytes], follower: Follower, ctx: Context,
                 streams: Streams) -> None:
        super().__init__(content, media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.follower = follower
        self.ctx = ctx
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.follower.stop()
            self.streams.active.discard(self.follower)
            self.ctx.metrics.stream_opened(-1)
            iterator = self.body_iterator
            if hasattr(iterator, "aclose"):
                with contextlib.suppress(RuntimeError):
                    await iterator.aclose()


def _sse_error(exc: Exception) -> bytes:
    error = from_eventlog(exc) if isinstance(exc, EventLogError) else ApiError(
        500, "internal_error", "the stream failed")
    body = orjson.dumps({"error": error.code, "message": error.message, "status": error.status})
    return b"event: eventlog-error\ndata: " + body + b"\n\n"


class LiveRoutes:
    def __init__(self, ctx: Context, streams: Streams) -> None:
        self.ctx = ctx
        self.streams = streams

    def _resume_from(self, request: Request) -> int | None:
        """Last-Event-ID (sent by a reconnecting EventSource) wins over ``after_seq``."""
        header = request.headers.get("last-event-id")
        if header is not None and header.strip():
            return parse_int("Last-Event-ID", header.strip())
        return query_int(request, "after_seq")

    async def stream(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        after = self._resume_from(request)
        settings = self.ctx.settings
        if self.streams.closing:
            raise ApiError(503, "closed", "the server is shutting down", headers={"Retry-After": "1"})
        if len(self.streams.active) >= settings.max_streams:
            raise ApiError(503, "busy", f"{settings.max_streams} live streams are open; try again later",
                           headers={"Retry-After": "5"})
        # Checks the id and that the session exists (404 now, not an error inside a 200).
        session = await self.ctx.run(self.ctx.log.get_session, sid)
        if request.method == "HEAD":  # the headers a GET would get, and no endless body
            return Response(media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        if after is not None and after > session.last_seq:
            # Such a stream would wait for a seq that was never written and then skip the
            # ones between: the client is following another life of this id, or a typo.
            raise ApiError(409, "beyond_head", f"cannot resume after seq {after}: session {sid!r} "
                           f"ends at seq {session.last_seq}", current_seq=session.last_seq)
        start = session.last_seq if after is None else after
        follower = Follower(self.ctx.log, sid, start, asyncio.get_running_loop(),
                            capacity=settings.stream_queue, idle=settings.follow_idle)
        self.streams.active.add(follower)
        self.ctx.metrics.stream_opened(1)
        follower.start()
        return EventStreamResponse(self._sse(follower), follower, self.ctx, self.streams)

    async def _sse(self, follower: Follower) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        heartbeat = self.ctx.settings.heartbeat
        while True:
            try:
                item = await asyncio.wait_for(follower.queue.get(), timeout=heartbeat)
            except asyncio.TimeoutError:
                yield b": keep-alive\n\n"  # also how a vanished client is noticed
                continue
            batch = [item]
            while len(batch) < _DRAIN and not follower.queue.empty():
                batch.append(follower.queue.get_nowait())
            follower.taken(sum(1 for it in batch if it is not _CLOSING))
            chunk = bytearray()
            for it in batch:
                if it is _CLOSING:
                    break
                if isinstance(it, Exception):
                    chunk += _sse_error(it)
                    break
                chunk += b"id: %d\ndata: %s\n\n" % (it.seq, orjson.dumps(event_json(it)))
            else:
                yield bytes(chunk)
                continue
            if chunk:
                yield bytes(chunk)
            return

    async def events(self, request: Request) -> Response:
        """The audit replay: every event after ``after_seq`` as one JSON object per line."""
        sid = request.path_params["session_id"]
        after = query_int(request, "after_seq", default=0)
        limit = query_int(request, "limit", minimum=1)
        assert after is not None
        log = self.ctx.log

        def lines() -> Iterator[bytes]:
            chunk: list[bytes] = []
            for count, event in enumerate(log.events(sid, after_seq=after), 1):
                chunk.append(orjson.dumps(event_json(event)) + b"\n")
                if limit is not None and count >= limit:
                    break
                if len(chunk) >= _NDJSON_CHUNK:
                    yield b"".join(chunk)
                    chunk = []
            yield b"".join(chunk)

        body = lines()
        # The first chunk is read before the status is sent, so a missing session is a 404.
        first = await self.ctx.run(next, body)

        async def rest() -> AsyncIterator[bytes]:
            yield first
            async for part in iterate_in_threadpool(body):
                yield part

        return StreamingResponse(rest(), media_type=NDJSON)

