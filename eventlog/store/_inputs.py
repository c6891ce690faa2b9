"""Checks of what callers hand the store, each naming the problem in an ``InvalidEventError``,
and the encoding of a chat message as one event."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

from ..core._codec import encode_payload, is_tombstone
from ..core._errors import InvalidEventError
from ..core._records import ChatMessage, Event, build_message
from ..core._validate import (
    RESERVED_PREFIXES,
    TS_END,
    check_event_type,
    check_json,
    check_text,
    check_timestamp,
)
from ._history import check_forked
from ._redaction import REDACTED
from ._state import FORKED, JOINED, LEFT, MESSAGE, REWOUND, message_data, own_json

Durability = Literal["os", "fsync"]


def check_durability(value: object) -> Durability:
    if value not in ("os", "fsync"):
        raise InvalidEventError(f"durability must be 'os' or 'fsync', not {value!r}")
    return value


def check_seq(name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < 0:
        raise InvalidEventError(f"{name} must be a non-negative int, not {value!r}")


def check_creation(participants: Iterable[str] | None, metadata: dict[str, Any] | None,
                   created_at: float | None) -> tuple[list[str], dict[str, Any], float]:
    """A new session's participants, metadata and creation time, checked."""
    if participants is not None and type(participants) not in (list, tuple):
        # Not any iterable: a str or a dict would be taken apart silently.
        raise InvalidEventError("participants must be a list of names, not "
                                f"{type(participants).__name__}")
    people = [] if participants is None else list(participants)
    seen = set()
    for person in people:
        check_text("participant", person)
        if person in seen:
            raise InvalidEventError(f"participant {person!r} is listed twice")
        seen.add(person)
    if metadata is not None and type(metadata) is not dict:
        raise InvalidEventError(f"metadata must be a dict, not {type(metadata).__name__}")
    meta = {} if metadata is None else metadata
    check_json(meta, "metadata")
    ts = time.time() if created_at is None else check_timestamp("created_at", created_at)
    return people, meta, ts


def check_imported(event: object, seq: int) -> Event:
    if not isinstance(event, Event):
        raise InvalidEventError(f"expected an Event to import, not {type(event).__name__}")
    if event.seq != seq:
        raise InvalidEventError(f"imported events must be gapless from 1: expected seq {seq}, "
                                f"got {event.seq}")
    check_event_type(event.type, allow_reserved=True)
    check_timestamp(f"event {seq} ts", event.ts)
    check_json(event.data, f"event {seq} data")
    if seq > 1 and event.type.startswith(RESERVED_PREFIXES):
        _check_reserved(event)
    key = event.key
    if key is not None:
        check_text(f"event {seq} key", key)
    return event


def _check_reserved(event: Event) -> None:
    """An imported eventlog-owned event must look like one eventlog writes: the fold trusts
    its shape (a join without a participant used to fail later as a raw KeyError, and a
    second session.created silently reset the session)."""
    data, where = event.data, f"event {event.seq} ({event.type})"
    if type(data) is not dict:
        raise InvalidEventError(f"{where}: data must be an object")
    if event.type == MESSAGE and is_tombstone(data):
        return  # a redacted message: checked against its redaction event (_redaction)
    if event.type == REDACTED:
        seqs = data.get("seqs")
        if (type(seqs) is not list or not seqs
                or any(type(s) is not int or not 1 < s < event.seq for s in seqs)):
            raise InvalidEventError(f"{where}: seqs must list seqs before it")
        check_text(f"{where} reason", data.get("reason"))
        return
    if event.type in (FORKED, REWOUND):
        check_forked(event, where)
    elif event.type in (JOINED, LEFT):
        check_text(f"{where} participant", data.get("participant"))
    elif event.type == MESSAGE:
        for name in ("id", "sender"):
            check_text(f"{where} {name}", data.get(name))
        check_text(f"{where} content", data.get("content"), empty=True)
        check_text(f"{where} recipient", data.get("recipient"), optional=True)
        check_text(f"{where} message_type", data.get("message_type", "text"))
        if data.get("metadata") is not None and type(data["metadata"]) is not dict:
            raise InvalidEventError(f"{where}: message metadata must be an object")
    else:
        raise InvalidEventError(f"{where}: only seq 1 is session.created, and eventlog writes no "
                                "other session.* or message* types")


def message_session(message: object) -> str:
    if not isinstance(message, ChatMessage):
        raise InvalidEventError(f"expected a ChatMessage, not {type(message).__name__}")
    return message.session_id


def message_payload(message: ChatMessage) -> tuple[bytes, float, dict[str, Any]]:
    """Check a message's fields and encode it as one ``message`` event: its payload, its
    timestamp (as a float) and its data."""
    ts = message.timestamp
    recipient = message.recipient
    # One combined test for the common, valid case; the detailed checks name the problem.
    if not (type(message.sender) is str and message.sender and type(message.content) is str
            and type(message.id) is str and message.id and message.message_type == "text"
            and (recipient is None or (type(recipient) is str and recipient))
            and type(ts) is float and 0.0 <= ts < TS_END and message.metadata is None):
        check_text("message id", message.id)
        check_text("sender", message.sender)
        check_text("recipient", recipient, optional=True)
        check_text("content", message.content, empty=True)
        check_text("message_type", message.message_type)
        ts = check_timestamp("timestamp", ts)
        if message.metadata is not None:
            if type(message.metadata) is not dict:
                raise InvalidEventError("message metadata must be a dict")
            check_json(message.metadata, "message metadata")
    data = message_data(message)
    return encode_payload(MESSAGE, ts, data), ts, data


def with_seq(m: ChatMessage, seq: int) -> ChatMessage:
    # Not dataclasses.replace: it costs more than the rest of an append's Python work.
    return build_message(m.sender, m.content, m.session_id, m.recipient, m.id, float(m.timestamp),
                         m.message_type, None if m.metadata is None else own_json(m.metadata), seq)
