"""``EventLog``: the public store. It owns every rule; a ``Backend`` only keeps bytes.

Over 500 lines (issue 14), for now: the public methods with their docstrings, each a few
lines that check arguments and delegate to the modules beside this one, and the append path
(``_append_payloads``, ``_append_one``), which stays flat here on purpose since every message
takes it and each Python call costs; the retry guards of issue 17 added to it. The next
feature should move the batch append (``_append_payloads`` and its callers) to a module."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from ..backends._base import Backend, Guard, Unique
from ..core._checkpoint import Checkpoint
from ..core._codec import (
    ChainReader,
    Head,
    Record,
    encode_payload,
    genesis,
    new_event,
    payload_chain,
    seal,
)
from ..core._errors import (
    ConflictError,
    InvalidEventError,
    SessionExistsError,
    SessionNotFoundError,
    StoreClosedError,
)
from ..core._records import (
    ChatMessage,
    ChatSession,
    CompactionReport,
    Event,
    VerifyReport,
    build_message,
    keyed_event,
)
from ..core._validate import (
    check_event_type,
    check_json,
    check_key,
    check_not_tombstone,
    check_session_id,
    check_text,
)
from . import _catalog, _history, _retries
from ._checkpoints import take as take_checkpoint
from ._checkpoints import wanted
from ._compaction import compact
from ._folding import Folding
from ._follow import follow, follow_start, follow_timeout
from ._importing import import_history
from ._inputs import (
    Durability,
    check_creation,
    check_durability,
    check_seq,
    message_payload,
    message_session,
    with_seq,
)
from ._reads import events_after, events_backward, scan_events
from ._redaction import redact
from ._retention import cleanup_old_sessions
from ._search import SearchPage, build_query, make_scope, search
from ._state import CREATED, JOINED, LEFT, MESSAGE, SessionState, own_json
from ._verify import verify

DEFAULT_MAX_EVENT_BYTES = 16 << 20


class EventLog:
    """Append-only session logs on a backend. Use ``eventlog.open(...)`` to get one.

    Thread-safe; survives ``fork()``; share one per process.
    """

    # Over 300 lines on purpose: this is the public surface, one method per operation, each
    # checking its arguments and handing the work to the modules beside it (_folding, _reads,
    # _follow, _verify, _inputs, _history, _retries, _compaction, _retention, _search). Only
    # the append path stays here in full, since every message takes it and each call costs.

    def __init__(self, backend: Backend, *, durability: Durability = "os",
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, snapshot_every: int = 1000) -> None:
        self.backend = backend
        self.durability = check_durability(durability)
        if type(max_event_bytes) is not int or max_event_bytes < 64:
            raise InvalidEventError(f"max_event_bytes must be an int of at least 64, not {max_event_bytes!r}")
        if type(snapshot_every) is not int or snapshot_every < 1:
            raise InvalidEventError(f"snapshot_every must be a positive int, not {snapshot_every!r}")
        self.max_event_bytes = max_event_bytes
        self.snapshot_every = snapshot_every
        # The record format of the store (see core/_codec): every seal and chain check uses it.
        self.version = backend.record_version
        self._closed = False
        self._folding = Folding(backend)
        self._folds = self._folding.folds  # the writers' folds, advanced by the append path
        self._views = self._folding.views  # the readers' (tools/_bench_history.py clears it)
        # Recent message ids and idempotency keys per session (see _retries).
        self._windows = _retries.Windows()
        # Sessions whose catalog entry this process's folds can bring up to date (_catalog.py).
        self._marked: set[str] = set()
        # Sessions verify found damaged: listed from their logs, never from catalog entries.
        self._suspects: set[str] = set()

    # Lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            try:
                _catalog.flush(self)
            finally:
                self._closed = True
                self.backend.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self, session_id: object) -> str:
        if self._closed:
            raise StoreClosedError("the store is closed")
        return check_session_id(session_id)

    def _durable(self, durability: Durability | None) -> bool:
        if durability is None:
            return self.durability == "fsync"
        return check_durability(durability) == "fsync"

    # Writing -------------------------------------------------------------------------

    def create_session(self, session_id: str | None = None, participants: Iterable[str] | None = None,
                       metadata: dict[str, Any] | None = None, *, created_at: float | None = None,
                       exist_ok: bool = False, durability: Durability | None = None) -> ChatSession:
        """Create a session; its creation is event seq 1. A None id gets a random one."""
        if session_id is None:
            import uuid
            session_id = uuid.uuid4().hex
        sid = self._live(session_id)
        try:
            state = self._create(sid, participants, metadata, created_at, durability)
        except SessionExistsError:
            if exist_ok:
                return self.get_session(sid)
            raise
        return state.to_session()

    def _create(self, sid: str, participants: Iterable[str] | None, metadata: dict[str, Any] | None,
                created_at: float | None, durability: Durability | None) -> SessionState:
        """Check a session's first event and store it; return the new session's state."""
        people, meta, ts = check_creation(participants, metadata, created_at)
        payload = encode_payload(CREATED, ts, {"participants": people, "metadata": meta})
        record = seal([payload], genesis(sid), self.max_event_bytes, self.version)[0]
        self.backend.create(sid, record, durable=self._durable(durability))
        state = SessionState(sid, Head(1, record.digest), participants=people,
                             metadata=own_json(meta), created_at=ts, last_activity=ts)
        self._folding.remember_fold(sid, state.copy())
        self._mark(sid)
        return state

    def _mark(self, sid: str) -> None:
        marked = self._marked
        if sid not in marked:
            marked.add(sid)
            if len(marked) >= _catalog.FLUSH_EVERY:
                _catalog.flush(self)

    def _append_payloads(  # noqa: PLR0913 - the batch, its conditions and what it feeds
            self, sid: str, payloads: list[bytes], expected_seq: int | None,
            durability: Durability | None, items: list[tuple[str, float, Any]] | None = None,
            guard: Guard | None = None,
            window: tuple[list[tuple[str, int]], str | None] | None = None,
            snapshot: bool = False) -> list[Record]:
        """Append encoded payloads; ``items`` ((type, ts, data) of each) feed the writer's fold.
        ``guard(head)`` runs first under the lock (see ``_retries``); ``window``: the message
        ids (by index in the batch) and the key the batch adds to the session's window."""
        check_seq("expected_seq", expected_seq)
        limit = self.max_event_bytes
        version = self.version
        every = self.snapshot_every
        captured: list[SessionState] = []
        marked: list[str] = []
        # The writer's fold may only advance where build runs once, under the append lock;
        # an optimistic backend may build on a head its write then finds moved.
        folds = self._folds if self.backend.exclusive_build else {}
        # What the chain hashes of each payload, before the lock (and once, however often
        # an optimistic backend builds).
        chains = None if version == 1 else [payload_chain(p) for p in payloads]

        afters: list[Head] = []

        def build(head: Head) -> list[Record]:
            if guard is not None:
                guard(head, None)
            if expected_seq is not None and head.seq != expected_seq:
                raise ConflictError(sid, expected_seq, head.seq)
            records = seal(payloads, head, limit, version, chains)
            afters[:] = [head]
            fold = folds.get(sid)
            if fold is not None:
                if fold.head == head and items is not None:
                    for record, (kind, ts, data) in zip(records, items, strict=True):
                        fold.apply(Event(record.seq, kind, ts, data))
                    fold.head = Head(records[-1].seq, records[-1].digest)
                    marked.append(sid)
                    if records[-1].seq // every != head.seq // every:
                        captured[:] = [fold.copy()]
                else:
                    del folds[sid]  # another writer got in between: refold when needed
            return records

        try:
            # A pinned head must not be rebuilt on by an optimistic backend: that would be a
            # silent retry of an append the caller made conditional.
            result = self.backend.append(sid, build, durable=self._durable(durability),
                                         rebuild=expected_seq is None)
        except _retries.Stored:
            raise
        except BaseException:
            self._folds.pop(sid, None)
            raise
        records = result.records
        if marked:
            self._mark(sid)
        self._windows.after_batch(sid, records, afters, result.position,
                                  None if items is None else window or ([], None))
        if records and (snapshot or records[-1].seq // every != (records[0].seq - 1) // every):
            self._folding.save_snapshot(sid, records[-1].seq, captured[0] if captured else None,
                                result.position)
        return records

    def _append_one(  # noqa: C901, PLR0913 - flat on purpose, and the event's parts passed apart: see below
            self, sid: str, payload: bytes, kind: str, ts: float, data: Any,
            expected_seq: int | None, durability: Durability | None,
            guard: Guard | None = None, key: str | None = None,
            checked: Head | None = None, unique: Unique | None = None) -> Head:
        """``_append_payloads`` for one event, kept flat: every ``add_message`` and ``append``
        comes this way, and each Python call here costs about as much as a syscall. Returns
        the new head."""
        if expected_seq is not None:
            check_seq("expected_seq", expected_seq)
        durable = self.durability == "fsync" if durability is None else self._durable(durability)
        try:
            head, after, position = self.backend.append_one(sid, payload, self.max_event_bytes,
                                                            expected_seq, durable, guard, checked,
                                                            unique)
        except _retries.Stored:
            raise
        except BaseException:
            self._folds.pop(sid, None)
            raise
        # Windows.advanced for one event, inlined for its common case: the window stood at the head
        # this append was sealed after (see _retries.Window).
        window = self._windows.table.get(sid)
        if window is not None and window.at[0] == after:
            if kind == MESSAGE:
                window.ids[data["id"]] = head[0]
            if key is not None:
                window.keys.setdefault(key, head[0])
            window.at = (head, position)
            if not head[0] % _retries.SLACK:
                with self._windows.lock:
                    window.trim()
        # The writer's fold advances after the append, by the head the record was sealed
        # after: it is this record's predecessor only if the fold saw every event up to it.
        # Two threads of this process can reach here in either order; the one whose head
        # is not the fold's drops it (it is refolded when needed). The fold's head is set
        # last, so no other thread passes that test before this one is done with it.
        seq = head[0]
        boundary = not seq % self.snapshot_every
        captured = None
        fold = self._folds.get(sid)
        if fold is not None:
            if fold.head == after:
                if kind == MESSAGE:
                    fold.apply_message(ts, data)
                else:
                    fold.apply(new_event(Event, (seq, kind, ts, data)))
                if boundary:
                    captured = fold.copy()
                    captured.head = head
                fold.head = head
                if sid not in self._marked:
                    self._mark(sid)
            else:
                self._folds.pop(sid, None)  # another writer got in between
        if boundary:
            self._folding.save_snapshot(sid, seq, captured, position)
        return head

    def append(self, session_id: str, type: str, data: Any = None, *,
               expected_seq: int | None = None, durability: Durability | None = None,
               idempotency_key: str | None = None) -> Event:
        """Append one custom event (types ``session.*`` and ``message*`` are reserved).

        With ``idempotency_key``: if the session already holds an event appended with that
        key (see the README for the window), write nothing and return the stored event."""
        sid = self._live(session_id)
        check_event_type(type)
        check_json(data)
        check_not_tombstone(data)
        ts = time.time()
        if idempotency_key is None:
            # The fold ignores custom events' data: it is not handed on (a caller may mutate it).
            head = self._append_one(sid, encode_payload(type, ts, data), type, ts, None,
                                    expected_seq, durability)
            return Event(head.seq, type, ts, data)
        check_key(idempotency_key, self.version)
        # A head at which the writer's window lacks the key, as add_message does for ids.
        window = self._windows.table.get(sid)
        checked = None if window is None else window.lacking(window.keys, idempotency_key)
        try:
            head = self._append_one(sid, encode_payload(type, ts, data, idempotency_key), type,
                                    ts, None, expected_seq, durability,
                                    _retries.key_guard(self, sid, idempotency_key),
                                    idempotency_key, checked, Unique("key", idempotency_key))
        except _retries.Stored as stored:
            return _retries.keyed_events(self, sid, stored.seqs[0], idempotency_key)[0]
        return keyed_event(head.seq, type, ts, data, idempotency_key)

    def append_many(self, session_id: str, events: Iterable[tuple[str, Any]], *,
                    expected_seq: int | None = None, durability: Durability | None = None,
                    idempotency_key: str | None = None) -> list[Event]:
        """Append several custom events as one atomic batch: all are stored, or none.

        With ``idempotency_key`` (stored on each event of the batch): if the session already
        holds events appended with it, write nothing and return those."""
        sid = self._live(session_id)
        key = idempotency_key
        if key is not None:
            check_key(key, self.version)
        items = list(events)
        ts = time.time()
        payloads = []
        for index, item in enumerate(items):
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidEventError(f"append_many item {index} must be a (type, data) tuple")
            check_event_type(item[0])
            check_json(item[1], f"event {index} data")
            check_not_tombstone(item[1])
            payloads.append(encode_payload(item[0], ts, item[1], key))
        if not payloads:
            return []
        if key is None:
            records = self._append_payloads(sid, payloads, expected_seq, durability,
                                            [(t, ts, None) for t, _ in items])
            return [Event(r.seq, t, ts, d) for r, (t, d) in zip(records, items, strict=True)]
        try:
            records = self._append_payloads(sid, payloads, expected_seq, durability,
                                            [(t, ts, None) for t, _ in items],
                                            _retries.key_guard(self, sid, key), ([], key))
        except _retries.Stored as stored:
            return _retries.keyed_events(self, sid, stored.seqs[0], key)
        return [keyed_event(r.seq, t, ts, d, key)
                for r, (t, d) in zip(records, items, strict=True)]

    def add_message(self, message: ChatMessage, *, expected_seq: int | None = None,
                    durability: Durability | None = None) -> ChatMessage:
        """Store a chat message as one event; returns it with its ``seq`` set."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        sid = check_session_id(message.session_id if type(message) is ChatMessage
                               else message_session(message))
        payload, ts, data = message_payload(message)
        mid = data["id"]
        # A head at which the writer's window lacks this id (see _retries.Window): an append
        # that builds on it needs no guard call under the lock.
        # (Window.lacking, inlined: its call cost as much as the test.)
        window = self._windows.table.get(sid)
        checked = None
        if window is not None:
            checked = window.at[0]  # read before the ids: a later head only adds to them
            if mid in window.ids:
                checked = None
        try:
            head = self._append_one(sid, payload, MESSAGE, ts, data, expected_seq, durability,
                                    partial(_retries.check_message, self, sid, mid), None, checked,
                                    new_event(Unique, ("id", mid)))
        except _retries.Stored as stored:
            return _retries.stored_message(self, sid, message, stored.seqs[0])
        metadata = message.metadata
        return build_message(message.sender, message.content, sid, message.recipient, message.id,
                             ts, message.message_type, None if metadata is None else own_json(metadata),
                             head[0])

    def add_messages(self, messages: Sequence[ChatMessage], *, expected_seq: int | None = None,
                     durability: Durability | None = None) -> list[ChatMessage]:
        """Store several messages of one session as one atomic batch.

        Ids already stored: if every message of the batch is (with equal contents), nothing
        is written and the stored messages are returned; a batch mixing stored and new ids
        raises ``DuplicateMessageError`` and writes nothing (all or nothing)."""
        if not messages:
            return []
        sid = self._live(message_session(messages[0]))
        payloads, items, ids = [], [], []
        for message in messages:
            if message_session(message) != sid:
                raise InvalidEventError("a batch of messages must all belong to one session")
            payload, ts, data = message_payload(message)
            payloads.append(payload)
            items.append((MESSAGE, ts, data))
            ids.append(data["id"])
        if len(set(ids)) != len(ids):
            raise InvalidEventError("a batch of messages holds the same message id twice")
        try:
            records = self._append_payloads(
                sid, payloads, expected_seq, durability, items,
                _retries.messages_guard(self, sid, ids), ([(mid, i) for i, mid in enumerate(ids)],
                                                          None))
        except _retries.Stored as stored:
            return _retries.stored_batch(self, sid, list(messages), stored.seqs)
        return [with_seq(m, r.seq) for m, r in zip(messages, records, strict=True)]

    def add_participant(self, session_id: str, participant: str, *,
                        expected_seq: int | None = None) -> Event:
        """Record that a participant joined (an event of type ``session.participant_joined``)."""
        return self._membership(session_id, JOINED, participant, expected_seq)

    def remove_participant(self, session_id: str, participant: str, *,
                           expected_seq: int | None = None) -> Event:
        """Record that a participant left (``session.participant_left``)."""
        return self._membership(session_id, LEFT, participant, expected_seq)

    def _membership(self, session_id: str, kind: str, participant: str,
                    expected_seq: int | None) -> Event:
        sid = self._live(session_id)
        check_text("participant", participant)
        ts = time.time()
        data = {"participant": participant}
        head = self._append_one(sid, encode_payload(kind, ts, data), kind, ts, data,
                                expected_seq, None)
        return Event(head.seq, kind, ts, data)

    def import_events(self, session_id: str, events: Iterable[Event], *,
                      durability: Durability | None = None, batch_size: int = 1000) -> ChatSession:
        """Write a whole history exactly as given (seq, type, ts, data), as a new session.

        The first event must be ``session.created`` with seq 1 and the seqs gapless; every
        event is checked like a new one. The session must not exist. If anything fails
        part-way, the partly imported session is removed again, so an import is all or nothing.
        """
        return self._import(self._live(session_id), events, durability, batch_size, True)

    def _import(self, sid: str, events: Iterable[Event], durability: Durability | None,
                batch_size: int, check: bool) -> ChatSession:
        """``import_events``; ``check`` False for events read from this store's own chain
        (``fork``): they are not checked again."""
        return import_history(self, sid, events, durability, batch_size, check)

    def redact(self, session_id: str, seqs: Iterable[int], *, reason: str) -> Event:
        """Erase the data of the events at ``seqs`` (messages and custom events) and append
        one ``session.redacted`` event naming them and ``reason``; return that event.

        Each redacted event keeps its seq, type and ts; its data becomes a tombstone,
        ``{"redacted": {"reason", "seq" (of the redaction event), "sha256" (of the data)}}``,
        and ``verify`` still checks the whole chain. The original bytes are gone from the
        store when it returns (see ``Backend.redact``). ``RedactionError`` (a ValueError),
        with nothing changed, for a ``session.*`` event, a seq the session does not hold,
        an event already redacted, or a store of format version 1."""
        return redact(self, self._live(session_id), seqs, reason)

    def fork(self, session_id: str, new_session_id: str | None = None, *,
             at_seq: int | None = None, durability: Durability | None = None) -> ChatSession:
        """A new session (a None id gets a random one) whose events 1..``at_seq`` (default:
        the last) are the source's, followed by a ``session.forked`` event; then each goes
        its own way. ``forked_from`` of the new session is ``(session_id, at_seq)``."""
        self._live(session_id)
        return _history.fork(self, session_id, new_session_id, at_seq, durability)

    def rewind(self, session_id: str, to_seq: int, *, reason: str | None = None,
               expected_seq: int | None = None) -> Event:
        """Append a ``session.rewound`` event: from now on the session's visible history is
        its events 1..``to_seq`` followed by the events after this one (``get_session``,
        ``get_messages``); ``events()`` still returns every event."""
        return _history.rewind(self, self._live(session_id), to_seq, reason, expected_seq)

    def delete_session(self, session_id: str) -> None:
        """Remove a session whole; its id can be created again."""
        sid = self._live(session_id)
        self._folding.forget(sid)
        self._windows.drop(sid)
        self.backend.delete(sid)

    # Reading -------------------------------------------------------------------------

    def _scan_events(self, sid: str, after_seq: int,
                     position: dict[str, Any] | None = None) -> tuple[ChainReader, Iterator[Event], Any]:
        return scan_events(self.backend, sid, after_seq, position)

    def events(self, session_id: str, after_seq: int = 0) -> Iterator[Event]:
        """Every event after ``after_seq``, in order, each checked against the digest chain."""
        sid = self._live(session_id)
        check_seq("after_seq", after_seq, optional=False)
        return events_after(self.backend, sid, after_seq)

    def get_session(self, session_id: str) -> ChatSession:
        """The session's state: the newest valid snapshot plus the events after it."""
        return self._state(self._live(session_id)).to_session()

    def _state(self, sid: str, upto: int | None = None) -> SessionState:
        return self._folding.state(sid, upto)

    def get_messages(self, session_id: str, limit: int | None = None, before_seq: int | None = None,
                     after_seq: int | None = None) -> list[ChatMessage]:
        """Messages with ``after_seq < seq < before_seq``; the newest ``limit`` of them,
        in chronological order. With a limit, it reads from the end of the log."""
        sid = self._live(session_id)
        check_seq("limit", limit)
        check_seq("before_seq", before_seq)
        check_seq("after_seq", after_seq)
        low = after_seq or 0
        if limit is None:
            return _history.visible_messages(self, sid, low, before_seq)
        if limit == 0:
            self.backend.last_seq(sid)  # still a missing session's error
            return []
        return _history.newest_messages(self, sid, low, before_seq, limit)

    @property
    def closed(self) -> bool:
        return self._closed

    def events_reversed(self, session_id: str) -> Iterator[Event]:
        """Every event from the newest back to seq 1, reading from the end of the log.

        Each event is yielded only once the one before it has vouched for it (its digest
        links to it), so a damaged record is never returned; stop whenever you have
        enough, and nothing older is read."""
        return events_backward(self.backend, self._live(session_id))

    def _events_backward(self, sid: str) -> Iterator[Event]:
        return events_backward(self.backend, sid)

    def search(  # noqa: PLR0913 - keyword-only filters, one per thing a search narrows by
            self, query: str = "", *, session_id: str | None = None, sender: str | None = None,
            recipient: str | None = None, to_everyone: bool = False,
            types: Sequence[str] | None = None, after_seq: int | None = None,
            before_seq: int | None = None, descending: bool = False, limit: int = 100,
            cursor: str | None = None, scan_limit: int | None = None) -> SearchPage:
        """Events matching ``query`` (case-insensitive, as one substring) and the filters, in
        one session (``session_id``) or across every session (by id), paged.

        The query is looked for in a message's content, sender, recipient and message type,
        and in any other event's type and data (as JSON); an empty query matches every event
        the filters let through. ``sender``, ``recipient`` (or ``to_everyone``: messages to
        everyone) keep only messages; ``types`` only events of those types; ``after_seq`` <
        seq < ``before_seq`` bound a single session's scan. Hits come in seq order, newest
        first with ``descending``. A page holds at most ``limit`` hits; ``next_cursor`` (None
        at the end) continues the same search. ``scan_limit`` stops a call after examining
        that many events, with a cursor to go on from."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        matching = build_query(query, sender, recipient, to_everyone, types)
        scope = make_scope(session_id, after_seq, before_seq, descending, limit, scan_limit)
        return search(self, matching, scope, cursor)

    def list_sessions(  # noqa: PLR0913 - keyword-only filters, one per thing a listing narrows by
            self, *, participant: str | None = None, metadata: dict[str, Any] | None = None,
            prefix: str | None = None, active_after: float | None = None,
            active_before: float | None = None, order: str = "session_id",
            descending: bool = False, limit: int | None = None) -> list[ChatSession]:
        """Sessions' states, by id unless ``order`` says otherwise (``"last_activity"``,
        ``"created_at"``; ties by id), at most ``limit``. Filters: ``participant`` (among
        the current participants), ``metadata`` (each top-level key equal), ``prefix`` (of
        the id), ``active_after < last_activity < active_before`` (Unix seconds). Sessions
        deleted meanwhile are left out."""
        self._open_check()
        query = _catalog.make_query(participant, metadata, prefix, active_after, active_before,
                                    order, descending)
        return _catalog.list_sessions(self, query, _catalog.check_limit(limit, optional=True))

    def page_sessions(  # noqa: PLR0913 - the filters of list_sessions, and the page
            self, limit: int = 100, cursor: str | None = None, *, participant: str | None = None,
            metadata: dict[str, Any] | None = None, prefix: str | None = None,
            active_after: float | None = None, active_before: float | None = None,
            order: str = "session_id", descending: bool = False) -> _catalog.SessionPage:
        """One page of ``list_sessions`` (same filters and order): at most ``limit``
        sessions, and ``next_cursor`` to pass back for the next page (None on the last)."""
        self._open_check()
        query = _catalog.make_query(participant, metadata, prefix, active_after, active_before,
                                    order, descending)
        size = _catalog.check_limit(limit, optional=False)
        assert size is not None
        return _catalog.page_sessions(self, query, size, cursor)

    def count_sessions(
            self, *, participant: str | None = None, metadata: dict[str, Any] | None = None,
            prefix: str | None = None, active_after: float | None = None,
            active_before: float | None = None) -> int:
        """How many sessions ``list_sessions`` with these filters would return."""
        self._open_check()
        query = _catalog.make_query(participant, metadata, prefix, active_after, active_before)
        return _catalog.count_sessions(self, query)

    def _open_check(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    def size(self, session_id: str) -> int:
        """Bytes the session takes in storage (all its segments, snapshots and state)."""
        sid = self._live(session_id)
        if not self.backend.exists(sid):
            raise SessionNotFoundError(sid)
        return self.backend.size(sid)

    def session_ids(self) -> list[str]:
        """Every session's id, sorted; cheap (reads no log)."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return self.backend.session_ids()

    def session_exists(self, session_id: str) -> bool:
        return self.backend.exists(self._live(session_id))

    def follow(self, session_id: str, after_seq: int | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        """Yield events as they are appended (by any process), in order, each once.

        ``after_seq=None`` starts from now. ``timeout`` is an idle timeout in seconds
        after which the iterator ends; None (or inf, or anything of ``FOREVER`` or more)
        waits forever. Raises ``SessionNotFoundError`` once the session is deleted, also
        when its id is created again meanwhile."""
        timeout = follow_timeout(timeout)
        sid, start, life = self._follow_start(session_id, after_seq, timeout)
        return self._follow(sid, start, timeout, life)

    def _follow_start(self, session_id: str, after_seq: int | None,
                      timeout: float | None) -> tuple[str, int, object]:
        """Check ``follow``'s arguments; return the id, the seq to follow from and the
        session's life. (The server's follower threads resume ``_follow`` with the same
        life after each idle timeout, so a stream, too, follows one life of the id.)"""
        sid = self._live(session_id)
        check_seq("after_seq", after_seq)
        follow_timeout(timeout)
        return (sid, *follow_start(self.backend, sid, after_seq))

    def _follow(self, sid: str, seq: int, timeout: float | None, life: object) -> Iterator[Event]:
        return follow(self.backend, sid, seq, timeout, life)

    # Upkeep --------------------------------------------------------------------------

    def compact(self, session_id: str | None = None) -> CompactionReport:
        """Compact one session, or every session when None: seal its active segment,
        write a durable snapshot at that boundary, and compress its sealed segments
        (for files: into gzip archives, read transparently from then on).

        Safe beside appenders and readers in any process, and at any crash point.
        Compacting one session raises for a damaged log; compacting all reports damaged
        sessions in ``problems`` and goes on with the others."""
        if session_id is None:
            if self._closed:
                raise StoreClosedError("the store is closed")
            return compact(self._folding, None)
        return compact(self._folding, self._live(session_id))

    def cleanup_old_sessions(self, days: float, *, archive_dir: str | os.PathLike[str] | None = None,
                             dry_run: bool = False) -> list[str]:
        """Remove every session whose last activity (its newest event timestamp) is more
        than ``days`` ago (fractions allowed); return their ids.

        ``archive_dir``: first write each one's history there as ``<id>.jsonl`` (a sealed
        segment: header, records with digests, trailer). ``dry_run``: only return the ids.
        A session appended to meanwhile is kept whole; damaged sessions are kept."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return cleanup_old_sessions(self._folding, days, archive_dir, dry_run,
                                    lambda cutoff: _catalog.oldest(self, cutoff))

    def checkpoint(self, session_id: str | None = None) -> Checkpoint:
        """A ``Checkpoint`` of the session's head, or (None) of every session's head in one
        Merkle root; keep it outside the store and pass it to ``verify`` later."""
        if session_id is None:
            self._open_check()
            return take_checkpoint(self, None)
        return take_checkpoint(self, self._live(session_id))

    def verify(self, session_id: str | None = None, *,
               checkpoint: Checkpoint | None = None) -> VerifyReport:
        """Check digests, seq continuity, structure and snapshots; never raises for damage.
        With a ``checkpoint``, also report each session it holds whose log no longer
        extends the head it committed to (truncated, rewritten, created anew) or that was
        deleted since."""
        heads = None if checkpoint is None else wanted(
            checkpoint, None if session_id is None else [self._live(session_id)])
        if session_id is None and self._closed:
            raise StoreClosedError("the store is closed")
        sid = None if session_id is None else self._live(session_id)
        folded: dict[str, SessionState] = {}
        report = verify(self._folding, sid, lambda s, event: _history.verify_fork(self, s, event),
                        folded, heads)
        for checked in ([sid] if sid is not None else self.backend.session_ids()):
            _catalog.suspect(self, checked, checked not in folded)
        extra = _catalog.compare(self, folded, whole=session_id is None)
        if not extra:
            return report
        return VerifyReport(events_checked=report.events_checked,
                            problems=[*report.problems, *extra],
                            sessions_checked=report.sessions_checked)

    def reindex(self) -> int:
        """Drop the session catalog and build it again from every session's log (what
        ``eventlog reindex`` does); return how many sessions it holds. Damaged sessions are
        left out (``verify`` names them)."""
        self._open_check()
        self.backend.catalog_reset()
        return _catalog.rebuild(self)
