"""eventlog: durable, append-only event logs for multi-agent chat sessions."""

from __future__ import annotations

from .core._errors import (
                      ConflictError,
                      CorruptLogError,
                      DuplicateMessageError,
                      EventLogError,
                      EventTooLargeError,
                      InvalidEventError,
                      InvalidInputError,
                      InvalidSessionIdError,
                      LockTimeoutError,
                      SeqOutOfRangeError,
                      SessionExistsError,
                      SessionNotFoundError,
                      SessionPoisonedError,
                      StorageError,
                      StoreClosedError,
                      StoreNotFoundError,
)
from .core._records import (
    ChatMessage,
    ChatSession,
    CompactionReport,
    Event,
    KeyedEvent,
    VerifyReport,
)
from .integrations._persistence import SessionPersistence
from .store._async import AsyncEventLog, open_async
from .store._log import EventLog
from .store._open import open
from .store._search import SearchHit, SearchPage

__version__ = "0.1.0"

__all__ = [
    "AsyncEventLog",
    "ChatMessage",
    "ChatSession",
    "CompactionReport",
    "ConflictError",
    "CorruptLogError",
    "DuplicateMessageError",
    "Event",
    "EventLog",
    "EventLogError",
    "EventTooLargeError",
    "InvalidEventError",
    "InvalidInputError",
    "InvalidSessionIdError",
    "KeyedEvent",
    "LockTimeoutError",
    "SearchHit",
    "SearchPage",
    "SeqOutOfRangeError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionPersistence",
    "SessionPoisonedError",
    "StorageError",
    "StoreClosedError",
    "StoreNotFoundError",
    "VerifyReport",
    "open",
    "open_async",
]
