"""``SessionPersistence``: the original multichat design's API, on an ``EventLog``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core._errors import InvalidInputError
from ..core._records import ChatMessage, ChatSession
from ..store._log import EventLog
from ..store._open import open as open_store

STORAGE_TYPES = ("json", "sqlite", "memory", "redis", "postgresql")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DEFAULT_PATH = "sessions"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def store_url(storage_type: str, storage_path: str | os.PathLike[str] = DEFAULT_PATH) -> str:
    """The ``eventlog.open`` location for the original design's (storage_type, storage_path).

    - ``json``: the path is the JSONL store's directory
    - ``sqlite``: a directory, in which ``sessions.db`` is kept, or a file path ending in
      ``.db``, ``.sqlite`` or ``.sqlite3`` (an ``sqlite:///`` URL is taken as it is)
    - ``memory``: the path is ignored, and every ``SessionPersistence`` gets a private store
      (unless the path is a ``memory://NAME`` URL: then that shared store)
    - ``redis``: the path is the server's URL; the default ``"sessions"`` means
      ``redis://127.0.0.1:6379/0``
    - ``postgresql``: the path is the server's URL (``postgresql://...`` or ``postgres://...``,
      ``?schema=NAME`` to pick the schema); there is no default server
    """
    if storage_type not in STORAGE_TYPES:
        raise InvalidInputError(
            f"unknown storage_type {storage_type!r}; use one of {', '.join(STORAGE_TYPES)}")
    path = os.fspath(storage_path)
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"storage_path must be a non-empty path, not {storage_path!r}")
    if storage_type == "json":
        return path
    if storage_type == "memory":
        return path if path.startswith("memory://") else "memory://"
    if storage_type == "redis":
        if path == DEFAULT_PATH:
            return DEFAULT_REDIS
        if not path.startswith(("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")):
            raise InvalidInputError(f"storage_type='redis' needs the server's URL as storage_path "
                                    f"(redis://host:port/db, or redis+cluster://host:port), "
                                    f"not {path!r}")
        return path
    if storage_type == "postgresql":
        if not path.startswith(("postgresql://", "postgres://")):
            raise InvalidInputError(f"storage_type='postgresql' needs the server's URL as storage_path "
                                    f"(postgresql://user@host:port/dbname), not {path!r}")
        return path
    if path.startswith("sqlite:"):
        return path
    file = Path(path)
    if file.suffix.lower() not in SQLITE_SUFFIXES:
        file = file / "sessions.db"
    return "sqlite:///" + str(file)


class SessionPersistence:
    """The original design's persistence facade, on any backend (see ``store_url``)."""

    def __init__(self, storage_type: str = "json", storage_path: str = DEFAULT_PATH,
                 **options: Any) -> None:
        self.storage_type = storage_type
        self.storage_path = storage_path
        self.log: EventLog = open_store(store_url(storage_type, storage_path), **options)

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
