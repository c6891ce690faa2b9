"""The values users hold: events, chat messages, session summaries and verify reports."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

JSON = Any
"""A plain JSON value: dict (str keys), list, str, int (64 bit), finite float, bool, None."""


class Event(NamedTuple):
    """One stored event: its per-session ``seq`` (1-based, gapless), ``type``, ``ts`` and ``data``.

    ``ts`` is Unix seconds: the caller's timestamp for messages and session creation,
    the append time for everything else.

    A NamedTuple rather than a frozen dataclass: a replay builds one per record, and
    here a frozen dataclass costs 1.6 microseconds to build against 0.25 for this.
    """

    seq: int
    type: str
    ts: float
    data: JSON

    @property
    def key(self) -> str | None:
        """The idempotency key the event was appended with (``append(..., idempotency_key=)``),
        or None. Events with a key are ``KeyedEvent``s, otherwise the same."""
        return None


class KeyedEvent(Event):
    """An ``Event`` stored with an idempotency key, which ``key`` returns.

    A subclass rather than a fifth field: an ``Event`` stays a 4-tuple (code that unpacks
    ``seq, type, ts, data`` keeps working) and the replay's hot loop, which builds one per
    record, is untouched; only records that carry a key (rare) take this class. The key
    lives in the instance dict, so it compares like the ``Event`` of the same fields."""

    @property
    def key(self) -> str | None:
        return self.__dict__.get("_key")

    def __repr__(self) -> str:
        return (f"KeyedEvent(seq={self.seq!r}, type={self.type!r}, ts={self.ts!r}, "
                f"data={self.data!r}, key={self.key!r})")


def keyed_event(seq: int, type: str, ts: float, data: JSON, key: str | None) -> Event:
    """An ``Event``, or a ``KeyedEvent`` when ``key`` is not None."""
    if key is None:
        return Event(seq, type, ts, data)
    event = tuple.__new__(KeyedEvent, (seq, type, ts, data))
    event.__dict__["_key"] = key
    return event


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """A chat message. ``recipient=None`` means everyone in the session.

    ``seq`` is None until the message is stored; ``add_message`` returns a copy with it set.
    """

    sender: str
    content: str
    session_id: str
    recipient: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)
    message_type: str = "text"
    metadata: dict[str, JSON] | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ChatSession:
    """A session's folded state, as of ``last_seq``."""

    session_id: str
    participants: list[str]
    created_at: float
    last_activity: float
    message_count: int
    last_seq: int
    metadata: dict[str, JSON]
    forked_from: tuple[str, int] | None = None
    """``(source session id, seq)`` for a session made by ``fork``; None otherwise."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found. ``ok`` is True when ``problems`` is empty."""

    events_checked: int
    problems: list[str]
    sessions_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class _Unfrozen:
    """ChatMessage's slots, without its frozen ``__setattr__``: see ``build_message``."""

    __slots__ = ChatMessage.__slots__


def build_message(  # noqa: PLR0913 - one argument per field of the record it builds
        sender: str, content: str, session_id: str, recipient: str | None, id: str,
        timestamp: float, message_type: str, metadata: dict[str, JSON] | None,
        seq: int | None) -> ChatMessage:
    """Build a ChatMessage from already checked values.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    which makes it three times dearer than a plain one; the store builds one per
    message it returns (one per ``add_message``, fifty for every ``get_messages(limit=50)``).
    So the fields are set on an object of a class with the same slots and no frozen
    ``__setattr__`` (plain, fast attribute stores), and the object then becomes a
    ChatMessage: Python allows that switch only between classes of the same layout, and
    refuses it with a TypeError otherwise. Users still get the frozen, checked value.
    """
    message: Any = object.__new__(_Unfrozen)
    message.sender = sender
    message.content = content
    message.session_id = session_id
    message.recipient = recipient
    message.id = id
    message.timestamp = timestamp
    message.message_type = message_type
    message.metadata = metadata
    message.seq = seq
    message.__class__ = ChatMessage
    return message  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What ``compact`` did.

    ``sessions`` compacted; ``segments_archived`` sealed segments compressed; the
    compacted sessions' storage in bytes before and after; wall-clock ``seconds``;
    and ``problems``: sessions left as they were because they are damaged (only when
    compacting every session; compacting one raises instead).
    """

    sessions: int
    segments_archived: int
    bytes_before: int
    bytes_after: int
    seconds: float
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems
