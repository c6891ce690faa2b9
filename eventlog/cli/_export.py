"""Writing one session's history out: jsonl and json keep every event exactly (seq, type, ts,
data) so an import elsewhere gives an identical history; markdown is a transcript for people.
``eventlog export`` and the server's export route both write through these."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from ..core._codec import genesis
from ..core._records import Event
from ..store._state import CREATED, JOINED, LEFT, MESSAGE, SessionState, to_message
from ._terminal import local_time, safe

EXPORT_FORMAT = 1
HEADER_KEY = "eventlog_export"


def event_json(event: Event) -> dict[str, Any]:
    """An event as exported: with ``key`` only for one appended with an idempotency key."""
    found = {"seq": event.seq, "type": event.type, "ts": event.ts, "data": event.data}
    if event.key is not None:
        found["key"] = event.key
    return found


def export_jsonl(sid: str, events: Iterator[Event], out: IO[bytes]) -> None:
    out.write(orjson.dumps({HEADER_KEY: EXPORT_FORMAT, "session_id": sid}) + b"\n")
    for event in events:
        out.write(orjson.dumps(event_json(event)) + b"\n")


def export_json(sid: str, events: Iterator[Event], out: IO[bytes]) -> None:
    document = {HEADER_KEY: EXPORT_FORMAT, "session_id": sid,
                "events": [event_json(e) for e in events]}
    out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def export_markdown(sid: str, events: Iterator[Event], out: IO[bytes]) -> None:
    state = SessionState(sid, genesis(sid))
    lines: list[str] = []
    last = 0
    for event in events:
        state.apply(event)
        last = event.seq
        lines.extend(_markdown_event(sid, event))
    head = [f"# Session {sid}", "",
            f"- participants: {safe(', '.join(state.participants)) or '-'}",
            f"- created: {local_time(state.created_at)}",
            f"- last activity: {local_time(state.last_activity)}",
            f"- messages: {state.message_count}, events: {last}", ""]
    out.write("\n".join(head + lines).encode() + b"\n")


def _markdown_event(sid: str, event: Event) -> list[str]:
    when = local_time(event.ts)
    if event.type == MESSAGE:
        m = to_message(sid, event)
        to = "all" if m.recipient is None else safe(m.recipient)
        quoted = [f"> {line}" if line else ">" for line in safe(m.content).split("\n")]
        return [f"**{safe(m.sender)} → {to}** · {when} · seq {event.seq}", "", *quoted, ""]
    if event.type in (JOINED, LEFT):
        verb = "joined" if event.type == JOINED else "left"
        return [f"*{safe(event.data['participant'])} {verb}* · {when} · seq {event.seq}", ""]
    if event.type == CREATED:
        return []
    data = safe(orjson.dumps(event.data).decode())
    return [f"`{event.type}` · {when} · seq {event.seq}", "", f"    {data}", ""]


EXPORTERS: dict[str, Callable[[str, Iterator[Event], IO[bytes]], None]] = {
    "jsonl": export_jsonl, "json": export_json, "markdown": export_markdown}
