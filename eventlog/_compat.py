"""``SessionPersistence``: the original multichat design's API, on an ``EventLog``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._errors import InvalidInputError
from ._open import open as open_store
from ._records import ChatMessage, ChatSession
from ._store import EventLog

STORAGE_TYPES = ("json",)


class SessionPersistence:
    """The original design's persistence facade; ``storage_type="json"`` is the JSONL file store."""

    def __init__(self, storage_type: str = "json", storage_path: str = "sessions", **options: Any) -> None:
        if storage_type not in STORAGE_TYPES:
            raise InvalidInputError(
                f"unknown storage_type {storage_type!r}; use one of {', '.join(STORAGE_TYPES)}")
        self.storage_type = storage_type
        self.storage_path = storage_path
        self.log: EventLog = open_store(storage_path, **options)

    def create_session(self, session_id: str | None = None, participants: Iterable[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> ChatSession:
        return self.log.create_session(session_id, participants, metadata, **kwargs)

    def add_message(self, message: ChatMessage, **kwargs: Any) -> ChatMessage:
        return self.log.add_message(message, **kwargs)

    def get_session(self, session_id: str) -> ChatSession:
        return self.log.get_session(session_id)

    def get_messages(self, session_id: str, limit: int | None = None, **kwargs: Any) -> list[ChatMessage]:
        return self.log.get_messages(session_id, limit=limit, **kwargs)

    def list_sessions(self) -> list[ChatSession]:
        return self.log.list_sessions()

    def delete_session(self, session_id: str) -> None:
        self.log.delete_session(session_id)

    def cleanup_old_sessions(self, days: float = 7, **kwargs: Any) -> list[str]:
        """Remove sessions inactive for more than ``days``; see ``EventLog.cleanup_old_sessions``."""
        return self.log.cleanup_old_sessions(days, **kwargs)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> SessionPersistence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
