"""eventlog: durable, append-only event logs for multi-agent chat sessions."""

from __future__ import annotations

from ._async import AsyncEventLog, open_async
from ._compat import SessionPersistence
from ._errors import (
                      ConflictError,
                      CorruptLogError,
                      EventLogError,
                      EventTooLargeError,
                      InvalidEventError,
                      InvalidInputError,
                      InvalidSessionIdError,
                      LockTimeoutError,
                      SessionExistsError,
                      SessionNotFoundError,
                      SessionPoisonedError,
                      StorageError,
                      StoreClosedError,
)
from ._open import open
from ._records import ChatMessage, ChatSession, CompactionReport, Event, VerifyReport
from ._store import EventLog

__version__ = "0.1.0"

__all__ = [
    "AsyncEventLog",
    "ChatMessage",
    "ChatSession",
    "CompactionReport",
    "ConflictError",
    "CorruptLogError",
    "Event",
    "EventLog",
    "EventLogError",
    "EventTooLargeError",
    "InvalidEventError",
    "InvalidInputError",
    "InvalidSessionIdError",
    "LockTimeoutError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionPersistence",
    "SessionPoisonedError",
    "StorageError",
    "StoreClosedError",
    "VerifyReport",
    "open",
    "open_async",
]
