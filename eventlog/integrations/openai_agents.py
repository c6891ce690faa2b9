"""An OpenAI Agents SDK session kept in an eventlog session.

    from eventlog.integrations.openai_agents import EventLogSession
    session = EventLogSession("user-42", "chatlogs")   # a store path or URL, or an EventLog
    result = await Runner.run(agent, "Hello", session=session)

``EventLogSession`` satisfies the SDK's ``Session`` protocol (``agents.memory.Session``):
``session_id``, ``session_settings``, and the coroutines ``get_items(limit=None)``,
``add_items(items)``, ``pop_item()`` and ``clear_session()``. Each item is one event of
type ``agents.item`` whose data is the item itself, so it comes back exactly as given.
``add_items`` appends its items as one atomic batch. Nothing is erased: ``pop_item``
rewinds the session to the seq before the newest item (``EventLog.rewind``, reason
``pop_item``) and ``clear_session`` rewinds it to seq 1 (reason ``clear_session``); reads
skip what those hide, and ``EventLog.events()`` shows it all. (Sessions written by
earlier releases hold ``agents.popped`` and ``agents.cleared`` markers instead; they are
read as before.)

``pop_item`` is safe with several processes: it rewinds only if the session has not
changed since it read the newest item (``expected_seq``), and otherwise reads again, so
two poppers never pop the same item.
"""

from __future__ import annotations

import random
import time
from typing import Any, cast

from ..core._errors import ConflictError, InvalidInputError, SessionNotFoundError, StoreClosedError
from ._common import (
    Store,
    append_events,
    async_of,
    missing_framework,
    read_live,
    read_live_data,
    resolve_store,
    session_id_for,
)

try:
    from agents import TResponseInputItem
    from agents.memory import SessionSettings
    from agents.memory.session_settings import coerce_session_settings
except ModuleNotFoundError as exc:
    raise missing_framework(__name__, "openai-agents", "openai-agents", exc) from None

__all__ = ["CLEARED_EVENT", "ITEM_EVENT", "POPPED_EVENT", "EventLogSession"]

ITEM_EVENT = "agents.item"
POPPED_EVENT = "agents.popped"
CLEARED_EVENT = "agents.cleared"
POP_ATTEMPTS = 100
"""How often ``pop_item`` reads again after losing a race, before it raises ``ConflictError``.
Each lost race means another process changed the session, so the session makes progress."""
_SESSION_METADATA = {"integration": "openai-agents"}


class EventLogSession:
    """OpenAI Agents SDK session ``session_id`` in ``store``.

    ``store`` is a path or URL (opened once per process and shared by every session on
    it) or an ``EventLog`` you opened and close yourself. The session is created by the
    first write; until then it reads as empty. ``session_settings`` (a ``SessionSettings``
    or a dict of its fields; an unknown field raises ``TypeError``) sets the default
    ``limit`` of ``get_items``, as in the SDK's own ``SQLiteSession``. ``close()`` ends
    this session object (later calls raise ``StoreClosedError``); the store stays open.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(self, session_id: str, store: Store,
                 session_settings: SessionSettings | dict[str, Any] | None = None) -> None:
        self.session_id = session_id
        self._sid = session_id_for(session_id)
        self.log = resolve_store(store)
        self.session_settings = (SessionSettings() if session_settings is None
                                 else coerce_session_settings(session_settings))
        self._closed = False

    def close(self) -> None:
        """End this session object, as ``SQLiteSession.close`` does; idempotent. It holds
        nothing open of its own: the store is shared (or yours to close)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"session {self.session_id!r} was closed")

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The newest ``limit`` items in chronological order (all of them if None).

        Without a ``limit``, ``session_settings.limit`` applies. Like the SDK's own
        ``SQLiteSession``: 0 gives nothing, a negative limit gives everything.
        """
        self._check_open()
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if type(limit) is bool:
            limit = int(limit)  # as SQLiteSession, whose SQL takes True for 1
        if limit is not None and type(limit) is not int:
            raise InvalidInputError(f"limit must be an int or None, not {limit!r}")
        if limit == 0:
            return []
        newest = None if limit is None or limit < 0 else limit
        # In batches, not one call: a worker thread building 4,000 items stopped the loop
        # 56-75 ms (the GIL, held by the worker between the loop's turns; see _async).
        items = await read_live_data(self.log, self._sid, item=ITEM_EVENT, cleared=CLEARED_EVENT,
                                     retracted=POPPED_EVENT, limit=newest)
        return cast("list[TResponseInputItem]", items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Store ``items`` as one atomic batch: all of them, in order, or none."""
        self._check_open()
        batch: list[tuple[str, Any]] = [(ITEM_EVENT, item) for item in items]
        if batch:
            await async_of(self.log).run_write(self._append, batch)

    def _append(self, batch: list[tuple[str, Any]]) -> None:
        append_events(self.log, self._sid, batch, metadata=_SESSION_METADATA)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None if there is none), by appending a marker."""
        self._check_open()
        return await async_of(self.log).run_write(self._pop)

    def _pop(self) -> TResponseInputItem | None:
        conflict: ConflictError | None = None
        for attempt in range(POP_ATTEMPTS):
            live = read_live(self.log, self._sid, item=ITEM_EVENT, cleared=CLEARED_EVENT,
                             retracted=POPPED_EVENT, limit=1)
            if not live.items:
                return None
            newest = live.items[0]
            try:
                self.log.rewind(self._sid, newest.seq - 1, reason="pop_item",
                                expected_seq=live.head_seq)
            except ConflictError as exc:
                conflict = exc
                # Jittered, growing pause so racing poppers spread out instead of colliding again.
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** attempt)))
                continue
            except SessionNotFoundError:
                return None  # deleted since the read: nothing left to pop
            return cast("TResponseInputItem", newest.data)
        assert conflict is not None
        raise conflict

    async def clear_session(self) -> None:
        """Hide every item so far (nothing is erased: a rewind to seq 1 records it)."""
        self._check_open()
        await async_of(self.log).run_write(self._clear)

    def _clear(self) -> None:
        try:
            self.log.rewind(self._sid, 1, reason="clear_session")
        except SessionNotFoundError:
            pass  # never written to: nothing to clear
