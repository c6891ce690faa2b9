"""What every route shares: the store, the settings, metrics, verify results and live streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from ..core._records import ChatMessage, ChatSession, Event, VerifyReport
from ..store._log import EventLog
from ._metrics import Metrics

T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 16 << 20


@dataclass
class Settings:
    token: str | None
    read_only: bool = False
    allow_delete: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_streams: int = 64
    heartbeat: float = 15.0      # seconds between SSE keep-alive comments
    follow_idle: float = 1.0     # follow()'s idle timeout: how often a follower thread looks up
    stream_queue: int = 256      # events buffered per SSE client before its follower waits


@dataclass
class Context:
    log: EventLog
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    started: float = field(default_factory=time.time)
    # session id -> the last verify result seen for it (the viewer shows it in the list).
    verified: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking store work off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def remember_verify(self, session_id: str, report: VerifyReport) -> dict[str, Any]:
        result = {"ok": report.ok, "events_checked": report.events_checked,
                  "problems": report.problems, "checked_at": time.time()}
        self.verified[session_id] = result
        self.metrics.record_verify(1, 0 if report.ok else 1)
        return result


def session_json(session: ChatSession, *, size: int | None = None,
                 verify: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "participants": session.participants,
        "created_at": session.created_at,
        "last_activity": session.last_activity,
        "message_count": session.message_count,
        "last_seq": session.last_seq,
        "metadata": session.metadata,
        "size_bytes": size,
        "verify": verify,
        "forked_from": None if session.forked_from is None else {
            "session_id": session.forked_from[0], "seq": session.forked_from[1]},
    }


def message_json(message: ChatMessage) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "id": message.id,
        "sender": message.sender,
        "recipient": message.recipient,
        "content": message.content,
        "timestamp": message.timestamp,
        "message_type": message.message_type,
        "metadata": message.metadata,
    }


def event_json(event: Event) -> dict[str, Any]:
    found = {"seq": event.seq, "type": event.type, "ts": event.ts, "data": event.data}
    if event.key is not None:
        found["key"] = event.key  # only for events appended with an idempotency key
    return found
