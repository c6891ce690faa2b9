"""A pydantic-ai agent's message history kept in an eventlog session.

    from eventlog.integrations.pydantic_ai import EventLogMessageHistory
    history = EventLogMessageHistory("user:42", "chatlogs")   # a store path or URL, or an EventLog
    result = agent.run_sync("Hello", message_history=history.load())
    history.append(result.new_messages())

Each message is one event of type ``pydantic_ai.message`` whose data is the message in
pydantic-ai's own JSON form (``ModelMessagesTypeAdapter.dump_python(..., mode="json")``), so
``load()`` gives back exactly what was appended (``ModelMessagesTypeAdapter`` validates it
back). ``append`` stores its messages as one atomic batch; with ``expected_seq`` (the
``seq`` of the ``load`` it extends, ``load_with_seq``) it stores them only if nobody else
appended meanwhile (``ConflictError`` otherwise). ``clear()`` appends
``pydantic_ai.cleared``; nothing is erased.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core._errors import SessionNotFoundError
from ._common import (
    Store,
    append_events,
    async_of,
    missing_framework,
    read_live,
    resolve_store,
    session_id_for,
)

try:
    from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
except ModuleNotFoundError as exc:
    raise missing_framework(__name__, "pydantic-ai", "pydantic-ai", exc) from None

__all__ = ["CLEARED_EVENT", "MESSAGE_EVENT", "EventLogMessageHistory"]

MESSAGE_EVENT = "pydantic_ai.message"
CLEARED_EVENT = "pydantic_ai.cleared"
_SESSION_METADATA = {"integration": "pydantic-ai"}


class EventLogMessageHistory:
    """The message history of conversation ``session_id`` in ``store`` (a path or URL,
    shared per process, or an ``EventLog`` you opened). The session is created by the
    first ``append``; until then ``load()`` is empty."""

    def __init__(self, session_id: str, store: Store) -> None:
        self.session_id = session_id
        self._sid = session_id_for(session_id)
        self.log = resolve_store(store)

    def load(self, limit: int | None = None) -> list[ModelMessage]:
        """The messages since the last ``clear()``, oldest first (the newest ``limit``)."""
        return self.load_with_seq(limit)[0]

    def load_with_seq(self, limit: int | None = None) -> tuple[list[ModelMessage], int]:
        """``load()`` and the session's seq when it was read (0: not created yet), to pass
        to ``append(expected_seq=)``."""
        live = read_live(self.log, self._sid, item=MESSAGE_EVENT, cleared=CLEARED_EVENT, limit=limit)
        return ModelMessagesTypeAdapter.validate_python([e.data for e in live.items]), live.head_seq

    def append(self, messages: Sequence[ModelMessage], *, expected_seq: int | None = None) -> None:
        """Store ``messages`` (say ``result.new_messages()``) as one atomic batch."""
        batch = _batch(messages)
        if batch:
            append_events(self.log, self._sid, batch, metadata=_SESSION_METADATA,
                          expected_seq=expected_seq)

    def clear(self) -> None:
        """Hide every message so far (a ``pydantic_ai.cleared`` event records it)."""
        try:
            self.log.append(self._sid, CLEARED_EVENT, {})
        except SessionNotFoundError:
            pass

    async def aload(self, limit: int | None = None) -> list[ModelMessage]:
        return await async_of(self.log).run(self.load, limit)

    async def aappend(self, messages: Sequence[ModelMessage], *, expected_seq: int | None = None) -> None:
        batch = _batch(messages)  # serialised now: the caller may change the messages meanwhile
        if batch:
            await async_of(self.log).run_write(append_events, self.log, self._sid, batch,
                                               metadata=_SESSION_METADATA,
                                               expected_seq=expected_seq)

    async def aclear(self) -> None:
        await async_of(self.log).run_write(self.clear)


def _batch(messages: Sequence[ModelMessage]) -> list[tuple[str, Any]]:
    return [(MESSAGE_EVENT, data)
            for data in ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")]
