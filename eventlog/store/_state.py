"""Folding events into a session's state, and the snapshot format that stores a fold.

The fold is the single definition of what a session *is*; every backend, the
snapshot writer and ``verify`` use it, so a snapshot can always be checked by
folding the events it claims to cover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core._codec import Head
from ..core._errors import CorruptLogError
from ..core._records import ChatMessage, ChatSession, Event, build_message

CREATED = "session.created"
JOINED = "session.participant_joined"
LEFT = "session.participant_left"
MESSAGE = "message"
FORKED = "session.forked"
REWOUND = "session.rewound"
REDACTED = "session.redacted"
SNAPSHOT_FORMAT = 1


@dataclass(slots=True)
class SessionState:
    """A session folded up to ``head.seq``."""

    session_id: str
    head: Head
    participants: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    last_activity: float = 0.0
    message_count: int = 0
    forked_from: tuple[str, int] | None = None
    rewinds: list[tuple[int, int]] = field(default_factory=list)
    """The rewinds in effect, ``(to_seq, seq)``, oldest first: each hides the events between."""
    unerased: int = 0
    """Not 0: this fold applied a redaction naming this seq (the smallest such) without
    proof that it folded the erased events as tombstones: it may still hold what they said
    (a sender), read before the erasure, or folded before the redaction. Such a fold
    answers the call that made it, and is never kept or stored (no snapshot, no catalog
    entry): see ``ErasureProof``."""

    def apply_message(self, ts: float, data: dict[str, Any]) -> None:
        """``apply`` of a ``message`` event, by its parts: the writer's fold calls it once per
        appended message, without building an ``Event`` for it."""
        self.message_count += 1
        people = self.participants
        if data["sender"] not in people:
            people.append(data["sender"])
        recipient = data.get("recipient")
        if recipient is not None and recipient not in people:
            people.append(recipient)
        if ts > self.last_activity:
            self.last_activity = ts

    def apply_redacted(self, ts: float) -> None:
        self.message_count += 1
        if ts > self.last_activity:
            self.last_activity = ts

    def apply(self, event: Event) -> None:
        kind = event.type
        data = event.data
        if kind == MESSAGE:  # never seq 1: that is always session.created
            if "sender" not in data:  # a redacted message (a tombstone): who sent it is gone
                self.apply_redacted(event.ts)
                return
            self.apply_message(event.ts, data)
            return
        if kind == CREATED:
            self.participants = list(data.get("participants", []))
            self.metadata = own_json(data.get("metadata") or {})
            self.created_at = event.ts
        elif kind == JOINED:
            if data["participant"] not in self.participants:
                self.participants.append(data["participant"])
        elif kind == LEFT and data["participant"] in self.participants:
            self.participants.remove(data["participant"])
        elif kind == FORKED:
            self.forked_from = (data["parent"], data["seq"])
        elif kind == REDACTED and type(data) is dict and type(data.get("seqs")) is list \
                and data["seqs"]:
            # In doubt until a read shows the erased events as tombstones (ErasureProof).
            low = min(data["seqs"])
            self.unerased = low if not self.unerased else min(self.unerased, low)
        # REWOUND never comes here: its state is an older fold (see _history.rewound).
        if event.ts > self.last_activity or event.seq == 1:
            self.last_activity = event.ts

    def apply_all(self, events: Iterable[Event], head: Head | None = None) -> None:
        for event in events:
            self.apply(event)
        if head is not None:
            self.head = head

    def to_session(self) -> ChatSession:
        return ChatSession(
            session_id=self.session_id,
            participants=list(self.participants),
            created_at=self.created_at,
            last_activity=self.last_activity,
            message_count=self.message_count,
            last_seq=self.head.seq,
            metadata=own_json(self.metadata),
            forked_from=self.forked_from,
            rewinds=tuple(self.rewinds),
        )

    def copy(self) -> SessionState:
        return SessionState(self.session_id, self.head, list(self.participants),
                            own_json(self.metadata), self.created_at, self.last_activity,
                            self.message_count, self.forked_from, list(self.rewinds),
                            self.unerased)

    def same_as(self, other: SessionState) -> bool:
        return self.to_session() == other.to_session() and self.head == other.head


class ErasureProof:
    """What a read that folds events (from seq ``start`` on) saw of redactions: a redaction
    it reads is proven erased in its fold if it read every event the redaction names, after
    ``start``, as a tombstone. Otherwise the fold may hold what they said: read before the
    erasure (another process redacting meanwhile), or folded before the redaction (a fold
    kept from earlier, a snapshot written from one); ``SessionState.unerased`` says so.
    A fold that kept such a sender saved it in the catalog after the redaction had rebuilt
    the session's entry (issue 18's erasure, broken by another process's fold)."""

    __slots__ = ("start", "tombstones")

    def __init__(self, start: int) -> None:
        self.start = start
        self.tombstones: set[int] = set()

    def saw(self, seq: int) -> None:
        """Event ``seq`` was read as a tombstone (the caller tests the data: it is on the
        replay's hot loop)."""
        self.tombstones.add(seq)

    def apply(self, state: SessionState, event: Event) -> None:
        """``state.apply(event)``, minding tombstones and redactions (the fold's own loop
        has this inlined)."""
        if event.type == REDACTED:
            before = state.unerased
            state.apply(event)
            self.redacted(state, event, before)
        else:
            state.apply(event)
            if is_tombstone_data(event.data):
                self.saw(event.seq)

    def redacted(self, state: SessionState, event: Event, before: int) -> None:
        """After ``state.apply(event)`` of a redaction event (``before``: the state's
        ``unerased`` before it): restore it if this read proves the erasure."""
        seqs = event.data.get("seqs") if type(event.data) is dict else None
        if type(seqs) is list and all(type(seq) is int and seq > self.start and seq in
                                      self.tombstones for seq in seqs):
            state.unerased = before


def is_tombstone_data(data: Any) -> bool:
    """The cheap shape test of the fold's loops (``core._codec.tombstone_digest`` checks all)."""
    return type(data) is dict and len(data) == 1 and "redacted" in data


def own_json(value: Any) -> Any:
    """A deep copy of a plain JSON value, as stored (tuples become lists): a fold's metadata
    is never shared with a caller, either way. A nested dict given to ``create_session``
    (or found in a returned ``ChatSession``) and mutated afterwards changed what later
    calls returned, and the next boundary snapshot stored a value the log never held."""
    if not value:
        return {} if type(value) is dict else value
    return orjson.loads(orjson.dumps(value))


def message_data(message: ChatMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"id": message.id, "sender": message.sender,
                            "recipient": message.recipient, "content": message.content}
    if message.message_type != "text":
        data["message_type"] = message.message_type
    if message.metadata is not None:
        data["metadata"] = message.metadata
    return data


REDACTED_MESSAGE = "redacted"
"""The ``message_type`` of a redacted message: its sender, recipient, content and id are
gone (empty strings), and its ``metadata`` is the tombstone."""


def to_message(session_id: str, event: Event) -> ChatMessage:
    data = event.data
    if "sender" not in data:  # a tombstone
        return build_message("", "", session_id, None, "", event.ts, REDACTED_MESSAGE, data,
                             event.seq)
    return build_message(data["sender"], data["content"], session_id, data.get("recipient"),
                         data["id"], event.ts, data.get("message_type", "text"),
                         data.get("metadata"), event.seq)


# Snapshots ---------------------------------------------------------------------------------

_CHECK_OPEN = b',"check":"'
_CHECK_LEN = len(_CHECK_OPEN) + 64 + 2


def encode_snapshot(state: SessionState, position: dict[str, Any] | None) -> bytes:
    """A self-checking snapshot: its SHA-256 covers every byte before it."""
    body = orjson.dumps({
        "eventlog_snapshot": SNAPSHOT_FORMAT,
        "session_id": state.session_id,
        "seq": state.head.seq,
        "h": state.head.digest,
        "participants": state.participants,
        "metadata": state.metadata,
        "created_at": state.created_at,
        "last_activity": state.last_activity,
        "message_count": state.message_count,
        # Only in a forked session's snapshots: every other snapshot is as it always was.
        **({} if state.forked_from is None else {"forked_from": list(state.forked_from)}),
        **({"rewinds": [list(r) for r in state.rewinds]} if state.rewinds else {}),
        "position": position,
    })
    check = hashlib.sha256(body).hexdigest().encode()
    return body[:-1] + _CHECK_OPEN + check + b'"}'


def decode_snapshot(session_id: str, blob: bytes) -> tuple[SessionState, dict[str, Any] | None]:
    """Decode and check a snapshot; raise ``CorruptLogError`` if it is damaged in any way."""
    def bad(why: str) -> CorruptLogError:
        return CorruptLogError(f"session {session_id!r}: snapshot damaged: {why}",
                               session_id=session_id, where="snapshot")

    if len(blob) <= _CHECK_LEN or blob[-_CHECK_LEN:-66] != _CHECK_OPEN:
        raise bad("truncated or not a snapshot")
    body = blob[:-_CHECK_LEN] + b"}"
    if hashlib.sha256(body).hexdigest().encode() != blob[-66:-2]:
        raise bad("checksum does not match")
    try:
        obj = orjson.loads(body)
        if obj["eventlog_snapshot"] != SNAPSHOT_FORMAT or obj["session_id"] != session_id:
            raise bad("belongs to another session or format")
        state = SessionState(
            session_id=session_id, head=Head(int(obj["seq"]), str(obj["h"])),
            participants=list(obj["participants"]), metadata=dict(obj["metadata"]),
            created_at=float(obj["created_at"]), last_activity=float(obj["last_activity"]),
            message_count=int(obj["message_count"]))
        forked = obj.get("forked_from")
        if forked is not None:
            state.forked_from = (str(forked[0]), int(forked[1]))
        state.rewinds = [(int(lo), int(hi)) for lo, hi in obj.get("rewinds", ())]
        position = obj["position"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise bad(str(exc)) from None
    return state, position
