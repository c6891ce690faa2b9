"""A Google ADK session service kept in eventlog.

    from eventlog.integrations.adk import EventLogSessionService
    runner = Runner(agent=agent, app_name="app", session_service=EventLogSessionService("chatlogs"))

The mapping (ids as the store keeps them: every id is valid since issue 15):

- ADK session ``(app, user, id)`` is eventlog session ``adk/<app>/<user>/<id>`` (``%`` and
  ``/`` inside a part written ``%25`` and ``%2F``), created by ``create_session`` with
  metadata ``{"integration": "adk", "app_name", "user_id", "session_id", "state"}`` (the
  initial session-scoped state). Each appended ADK event is one ``adk.event`` event whose
  data is the event as ADK's own database service stores it (``model_dump(mode="json",
  exclude_none=True)``); the session's state is the initial state updated by each event's
  ``state_delta`` (its unprefixed keys).
- ``app:`` state is session ``adk-app/<app>``, ``user:`` state ``adk-user/<app>/<user>``:
  one ``adk.state`` event (``{key: value}``, prefix removed) per change, folded in order.
  ``temp:`` keys are never stored, as ADK defines them.
- ``delete_session`` deletes the eventlog session; app and user state stay.

``append_event`` is optimistic: the session object remembers the seq it was read at, and
the event is appended only if the session is still there (``expected_seq``), so two
runners appending to one session from stale copies never interleave: the second gets ADK's
``StaleSessionError`` and nothing is written. The event is the commit point; app and user
state follow it (a crash between them leaves the event stored and the shared state not
updated; nothing else).
"""

from __future__ import annotations

import uuid
from typing import Any

from ..core._errors import ConflictError, SessionExistsError, SessionNotFoundError
from ..core._records import Event as LogEvent
from ._common import (
    Fold,
    FoldCache,
    Store,
    append_event,
    async_of,
    framework_id_of,
    missing_framework,
    resolve_store,
    session_id_for,
)

try:
    from google.adk.errors._stale_session_error import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError as AdkSessionNotFound
    from google.adk.events.event import Event
    from google.adk.sessions import _session_util
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State
except ModuleNotFoundError as exc:
    raise missing_framework(__name__, "google-adk", "adk", exc) from None

__all__ = ["EVENT_EVENT", "STATE_EVENT", "EventLogSessionService", "adk_names"]

EVENT_EVENT = "adk.event"
STATE_EVENT = "adk.state"
INTEGRATION = "adk"


def _part(text: str) -> str:
    return text.replace("%", "%25").replace("/", "%2F")


def _unpart(text: str) -> str:
    return text.replace("%2F", "/").replace("%25", "%")


def _session_key(app_name: str, user_id: str, session_id: str) -> str:
    return session_id_for(f"adk/{_part(app_name)}/{_part(user_id)}/{_part(session_id)}")


class _Session(Fold):
    """One ADK session: who it belongs to, its session-scoped state and its events."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] | None = None
        self.created = 0.0
        self.state: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.updated = 0.0

    def apply(self, event: LogEvent) -> None:
        if event.type == EVENT_EVENT:
            data = event.data
            self.events.append(data)
            delta = (data.get("actions") or {}).get("state_delta") or {}
            self.state.update(_session_util.extract_state_delta(delta)["session"])
            self.updated = float(data.get("timestamp", event.ts))
        elif event.seq == 1 and type(event.data) is dict:
            meta = event.data.get("metadata") or {}
            if meta.get("integration") == INTEGRATION:
                self.meta = meta
                self.state = dict(meta.get("state") or {})
                self.created = self.updated = event.ts


class _State(Fold):
    """App or user state: the ``adk.state`` deltas, folded."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def apply(self, event: LogEvent) -> None:
        if event.type == STATE_EVENT:
            self.state.update(event.data)


class EventLogSessionService(BaseSessionService):
    """ADK ``BaseSessionService`` over eventlog ``store`` (a path or URL, shared per
    process, or an ``EventLog`` you opened), safe across processes."""

    def __init__(self, store: Store) -> None:
        self.log = resolve_store(store)
        self._sessions: FoldCache[_Session] = FoldCache(self.log, _Session)
        self._states: FoldCache[_State] = FoldCache(self.log, _State)
        self._async = async_of(self.log)

    # The service ----------------------------------------------------------------------

    async def create_session(self, *, app_name: str, user_id: str, state: dict[str, Any] | None = None,
                             session_id: str | None = None) -> Session:
        return await self._async.run_write(self._create, app_name, user_id, state, session_id)

    async def get_session(self, *, app_name: str, user_id: str, session_id: str,
                          config: GetSessionConfig | None = None) -> Session | None:
        return await self._async.run(self._get, app_name, user_id, session_id, config)

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        return await self._async.run(self._list, app_name, user_id)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        await self._async.run_write(self._delete, app_name, user_id, session_id)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return await self._async.run(self._state, _user_key(app_name, user_id))

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        await self._async.run_write(self._append, session, event)
        return self._commit_event_to_session(session, event)

    # In a worker thread ----------------------------------------------------------------

    def _create(self, app_name: str, user_id: str, state: dict[str, Any] | None,
                session_id: str | None) -> Session:
        session_id = (session_id.strip() if session_id else "") or uuid.uuid4().hex
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        key = _session_key(app_name, user_id, session_id)
        meta = {"integration": INTEGRATION, "app_name": app_name, "user_id": user_id,
                "session_id": session_id, "state": deltas["session"]}
        if self.log.session_exists(key):
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        self._put_state(app_name, user_id, deltas)
        try:
            created = self.log.create_session(key, metadata=meta)
        except SessionExistsError:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from None
        session = Session(app_name=app_name, user_id=user_id, id=session_id,
                          state=self._merged(app_name, user_id, deltas["session"]),
                          last_update_time=created.created_at)
        session._storage_update_marker = str(created.last_seq)
        return session

    def _get(self, app_name: str, user_id: str, session_id: str,
             config: GetSessionConfig | None) -> Session | None:
        with self._sessions.use(_session_key(app_name, user_id, session_id)) as (fold, seq):
            if fold.meta is None:
                return None
            records = list(fold.events)
            state, updated = dict(fold.state), fold.updated
        if config is not None:
            if config.num_recent_events is not None:
                records = records[-config.num_recent_events:] if config.num_recent_events else []
            if config.after_timestamp is not None:
                records = [r for r in records if r.get("timestamp", 0.0) >= config.after_timestamp]
        session = Session(app_name=app_name, user_id=user_id, id=session_id,
                          state=self._merged(app_name, user_id, state),
                          events=[Event.model_validate(r) for r in records], last_update_time=updated)
        session._storage_update_marker = str(seq)
        return session

    def _list(self, app_name: str, user_id: str | None) -> ListSessionsResponse:
        prefix = f"adk/{_part(app_name)}/" + ("" if user_id is None else f"{_part(user_id)}/")
        found = []
        # The store's catalog narrows by prefix (an index on SQLite and PostgreSQL, the file
        # store's catalog file), so listing one app's or user's sessions reads only theirs.
        for listed in self.log.list_sessions(prefix=prefix):
            sid = listed.session_id
            name = framework_id_of(sid)
            if name.count("/") != 3:
                continue
            with self._sessions.use(sid) as (fold, _):
                if fold.meta is None:
                    continue
                meta, state, updated = fold.meta, dict(fold.state), fold.updated
            owner = meta["user_id"]
            found.append(Session(app_name=app_name, user_id=owner, id=meta["session_id"],
                                 state=self._merged(app_name, owner, state), last_update_time=updated))
        found.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=found)

    def _delete(self, app_name: str, user_id: str, session_id: str) -> None:
        key = _session_key(app_name, user_id, session_id)
        try:
            self.log.delete_session(key)
        except SessionNotFoundError:
            pass
        self._sessions.forget(key)

    def _append(self, session: Session, event: Event) -> None:
        key = _session_key(session.app_name, session.user_id, session.id)
        marker = session._storage_update_marker
        data = event.model_dump(mode="json", exclude_none=True)
        try:
            if marker is None:
                # A session object this service did not hand out: compare with the log.
                with self._sessions.use(key) as (fold, seq):
                    if fold.meta is None:
                        raise AdkSessionNotFound(f"Session {session.id} not found.")
                    if fold.updated > session.last_update_time:
                        raise StaleSessionError("The session was changed since it was read.")
                    marker = str(seq)
            stored = self.log.append(key, EVENT_EVENT, data, expected_seq=int(marker))
        except ConflictError:
            raise StaleSessionError(
                f"Session {session.id} was appended to since this copy was read (at seq "
                f"{marker}); read it again with get_session.") from None
        except SessionNotFoundError:
            raise AdkSessionNotFound(f"Session {session.id} not found.") from None
        session._storage_update_marker = str(stored.seq)
        session.last_update_time = event.timestamp
        delta = event.actions.state_delta if event.actions else None
        if delta:
            self._put_state(session.app_name, session.user_id,
                            _session_util.extract_json_safe_state_delta(delta))

    # App and user state ----------------------------------------------------------------

    def _put_state(self, app_name: str, user_id: str, deltas: dict[str, dict[str, Any]]) -> None:
        for key, delta in ((_app_key(app_name), deltas["app"]),
                           (_user_key(app_name, user_id), deltas["user"])):
            if delta:
                append_event(self.log, key, STATE_EVENT, delta, metadata={"integration": INTEGRATION})

    def _state(self, key: str) -> dict[str, Any]:
        with self._states.use(key) as (fold, _):
            return dict(fold.state)

    def _merged(self, app_name: str, user_id: str, state: dict[str, Any]) -> dict[str, Any]:
        merged = dict(state)
        for name, value in self._state(_app_key(app_name)).items():
            merged[State.APP_PREFIX + name] = value
        for name, value in self._state(_user_key(app_name, user_id)).items():
            merged[State.USER_PREFIX + name] = value
        return merged


def _app_key(app_name: str) -> str:
    return session_id_for(f"adk-app/{_part(app_name)}")


def _user_key(app_name: str, user_id: str) -> str:
    return session_id_for(f"adk-user/{_part(app_name)}/{_part(user_id)}")


# Kept for the mapping's round trip (and a reader of the store that wants the ADK names back).
def adk_names(session_id: str) -> tuple[str, str, str] | None:
    """``(app_name, user_id, session_id)`` of an eventlog session that holds an ADK session."""
    name = framework_id_of(session_id)
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "adk":
        return None
    return _unpart(parts[1]), _unpart(parts[2]), _unpart(parts[3])

