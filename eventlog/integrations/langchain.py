"""A LangChain chat message history kept in an eventlog session.

    from eventlog.integrations.langchain import EventLogChatMessageHistory
    history = EventLogChatMessageHistory("user-42", "chatlogs")   # a store path or URL, or an EventLog

Each message is one event of type ``langchain.message`` whose data is LangChain's own
``message_to_dict`` form, so type, content, tool calls, additional kwargs, response
metadata, names and ids come back exactly through ``messages_from_dict``. ``add_messages``
appends its messages as one atomic batch: several processes may add to one history at
once and every message lands exactly once, whole, in one order all readers agree on.
``clear()`` erases nothing: it rewinds the session to seq 1 (``EventLog.rewind``, reason
``clear``), after which ``messages`` starts empty, while ``EventLog.events()`` still
replays everything. (Histories written by earlier releases hold ``langchain.cleared``
markers instead; they are read as before.)
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
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
except ModuleNotFoundError as exc:
    raise missing_framework(__name__, "langchain-core", "langchain", exc) from None

__all__ = ["CLEARED_EVENT", "MESSAGE_EVENT", "EventLogChatMessageHistory"]

MESSAGE_EVENT = "langchain.message"
CLEARED_EVENT = "langchain.cleared"
_SESSION_METADATA = {"integration": "langchain"}


class EventLogChatMessageHistory(BaseChatMessageHistory):
    """LangChain chat history in eventlog session ``session_id`` of ``store``.

    ``store`` is a path or URL (opened once per process and shared by every history on
    it) or an ``EventLog`` you opened and close yourself. The session is created by the
    first write; until then ``messages`` is empty.
    """

    def __init__(self, session_id: str, store: Store) -> None:
        self.session_id = session_id
        self._sid = session_id_for(session_id)
        self.log = resolve_store(store)

    # The base class declares ``messages`` as a plain attribute; LangChain's own stores
    # override it with a read-only property the same way.
    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The messages since the last ``clear()``, oldest first."""
        live = read_live(self.log, self._sid, item=MESSAGE_EVENT, cleared=CLEARED_EVENT)
        return messages_from_dict([event.data for event in live.items])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` as one atomic batch: all of them, in order, or none."""
        self._append(_batch(messages))

    def _append(self, batch: list[tuple[str, Any]]) -> None:
        if batch:
            append_events(self.log, self._sid, batch, metadata=_SESSION_METADATA)

    def add_message(self, message: BaseMessage) -> None:
        self.add_messages([message])

    def clear(self) -> None:
        """Hide every message so far (nothing is erased: a rewind to seq 1 records it)."""
        try:
            self.log.rewind(self._sid, 1, reason="clear")
        except SessionNotFoundError:
            pass  # never written to: nothing to clear

    async def aget_messages(self) -> list[BaseMessage]:
        return await async_of(self.log).run(lambda: self.messages)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        batch = _batch(messages)  # serialised now: the caller may change the messages meanwhile
        await async_of(self.log).run_write(self._append, batch)

    async def aclear(self) -> None:
        await async_of(self.log).run_write(self.clear)


def _batch(messages: Sequence[BaseMessage]) -> list[tuple[str, Any]]:
    return [(MESSAGE_EVENT, message_to_dict(message)) for message in messages]
