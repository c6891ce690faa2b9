"""``EventLog``: the public store. It owns every rule; a ``Backend`` only keeps bytes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

from ..backends._base import Backend, Scan
from ..core._codec import (
    ChainReader,
    Head,
    Record,
    Unparseable,
    encode_payload,
    genesis,
    link,
    looks_like_record,
    new_event,
    parse,
    seal,
    to_event,
)
from ..core._errors import (
    ConflictError,
    CorruptLogError,
    EventLogError,
    InvalidEventError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
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
    RESERVED_PREFIXES,
    TS_END,
    check_event_type,
    check_json,
    check_session_id,
    check_text,
    check_timestamp,
    shown,
)
from . import _history, _retries
from ._compaction import compact
from ._retention import cleanup_old_sessions
from ._search import SearchPage, build_query, make_scope, search
from ._state import (
    CREATED,
    FORKED,
    JOINED,
    LEFT,
    MESSAGE,
    REWOUND,
    SessionState,
    decode_snapshot,
    encode_snapshot,
    message_data,
    own_json,
)

Durability = Literal["os", "fsync"]
DEFAULT_MAX_EVENT_BYTES = 16 << 20
FOREVER = 2**31
"""Seconds (68 years): a ``follow`` timeout this long or longer waits forever, as None does.
Longer ones overflowed the backends' waits (a lock's timeout, a Redis BLOCK in ms)."""
FOLDS_KEPT = 1024


def _check_durability(value: object) -> Durability:
    if value not in ("os", "fsync"):
        raise InvalidEventError(f"durability must be 'os' or 'fsync', not {value!r}")
    return value


def _check_seq(name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < 0:
        raise InvalidEventError(f"{name} must be a non-negative int, not {value!r}")


class EventLog:
    """Append-only session logs on a backend. Use ``eventlog.open(...)`` to get one.

    Thread-safe; survives ``fork()``; share one per process.
    """

    def __init__(self, backend: Backend, *, durability: Durability = "os",
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, snapshot_every: int = 1000) -> None:
        self.backend = backend
        self.durability = _check_durability(durability)
        if type(max_event_bytes) is not int or max_event_bytes < 64:
            raise InvalidEventError(f"max_event_bytes must be an int of at least 64, not {max_event_bytes!r}")
        if type(snapshot_every) is not int or snapshot_every < 1:
            raise InvalidEventError(f"snapshot_every must be a positive int, not {snapshot_every!r}")
        self.max_event_bytes = max_event_bytes
        self.snapshot_every = snapshot_every
        self._closed = False
        # The fold of sessions this process appends to, advanced under the append lock while
        # no other writer interleaves, so checkpoint snapshots need no re-reading.
        self._folds: dict[str, SessionState] = {}
        # The fold each reader call last reached, with the backend's position after it.
        self._views: dict[str, tuple[SessionState, dict[str, Any]]] = {}
        # Recent message ids and idempotency keys per session (see _retries).
        self._windows = _retries.Windows()

    # Lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
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
        return _check_durability(durability) == "fsync"

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
        if participants is not None and type(participants) not in (list, tuple):
            # Not any iterable: a str or a dict would be taken apart silently.
            raise InvalidEventError("participants must be a list of names, not "
                                    f"{type(participants).__name__}")
        people = [] if participants is None else list(participants)
        seen = set()
        for person in people:
            check_text("participant", person)
            if person in seen:
                raise InvalidEventError(f"participant {person!r} is listed twice")
            seen.add(person)
        if metadata is not None and type(metadata) is not dict:
            raise InvalidEventError(f"metadata must be a dict, not {type(metadata).__name__}")
        meta = {} if metadata is None else metadata
        check_json(meta, "metadata")
        ts = time.time() if created_at is None else check_timestamp("created_at", created_at)
        payload = encode_payload(CREATED, ts, {"participants": people, "metadata": meta})
        record = seal([payload], genesis(sid), self.max_event_bytes)[0]
        self.backend.create(sid, record, durable=self._durable(durability))
        state = SessionState(sid, Head(1, record.digest), participants=people,
                             metadata=own_json(meta), created_at=ts, last_activity=ts)
        self._remember_fold(sid, state.copy())
        return state

    def _append_payloads(  # noqa: PLR0913 - the batch, its conditions and what it feeds
            self, sid: str, payloads: list[bytes], expected_seq: int | None,
            durability: Durability | None, items: list[tuple[str, float, Any]] | None = None,
            guard: Callable[[Head], None] | None = None,
            window: tuple[list[tuple[str, int]], str | None] | None = None,
            snapshot: bool = False) -> list[Record]:
        """Append encoded payloads; ``items`` ((type, ts, data) of each) feed the writer's fold.
        ``guard(head)`` runs first under the lock (see ``_retries``); ``window``: the message
        ids (by index in the batch) and the key the batch adds to the session's window."""
        _check_seq("expected_seq", expected_seq)
        limit = self.max_event_bytes
        every = self.snapshot_every
        captured: list[SessionState] = []
        # The writer's fold may only advance where build runs once, under the append lock;
        # an optimistic backend may build on a head its write then finds moved.
        folds = self._folds if self.backend.exclusive_build else {}

        afters: list[Head] = []

        def build(head: Head) -> list[Record]:
            if guard is not None:
                guard(head)
            if expected_seq is not None and head.seq != expected_seq:
                raise ConflictError(sid, expected_seq, head.seq)
            records = seal(payloads, head, limit)
            afters[:] = [head]
            fold = folds.get(sid)
            if fold is not None:
                if fold.head == head and items is not None:
                    for record, (kind, ts, data) in zip(records, items, strict=True):
                        fold.apply(Event(record.seq, kind, ts, data))
                    fold.head = Head(records[-1].seq, records[-1].digest)
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
        self._windows.after_batch(sid, records, afters, result.position,
                                  None if items is None else window or ([], None))
        if records and (snapshot or records[-1].seq // every != (records[0].seq - 1) // every):
            self._save_snapshot(sid, records[-1].seq, captured[0] if captured else None,
                                result.position)
        return records

    def _append_one(  # noqa: PLR0913 - the event's parts, passed apart to spare a tuple per call
            self, sid: str, payload: bytes, kind: str, ts: float, data: Any,
            expected_seq: int | None, durability: Durability | None,
            guard: Callable[[Head], None] | None = None, key: str | None = None) -> Head:
        """``_append_payloads`` for one event, kept flat: every ``add_message`` and ``append``
        comes this way, and each Python call here costs about as much as a syscall. Returns
        the new head."""
        if expected_seq is not None:
            _check_seq("expected_seq", expected_seq)
        durable = self.durability == "fsync" if durability is None else self._durable(durability)
        try:
            head, after, position = self.backend.append_one(sid, payload, self.max_event_bytes,
                                                            expected_seq, durable, guard)
        except _retries.Stored:
            raise
        except BaseException:
            self._folds.pop(sid, None)
            raise
        if sid in self._windows.table:
            self._windows.advanced(sid, after, head, position,
                                   [(data["id"], head[0])] if kind == MESSAGE else None,
                                   None if key is None else [(key, head[0])])
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
            else:
                self._folds.pop(sid, None)  # another writer got in between
        if boundary:
            self._save_snapshot(sid, seq, captured, position)
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
        ts = time.time()
        if idempotency_key is None:
            # The fold ignores custom events' data: it is not handed on (a caller may mutate it).
            head = self._append_one(sid, encode_payload(type, ts, data), type, ts, None,
                                    expected_seq, durability)
            return Event(head.seq, type, ts, data)
        check_text("idempotency_key", idempotency_key)
        try:
            head = self._append_one(sid, encode_payload(type, ts, data, idempotency_key), type,
                                    ts, None, expected_seq, durability,
                                    _retries.key_guard(self, sid, idempotency_key),
                                    idempotency_key)
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
            check_text("idempotency_key", key)
        items = list(events)
        ts = time.time()
        payloads = []
        for index, item in enumerate(items):
            if not isinstance(item, tuple) or len(item) != 2:
                raise InvalidEventError(f"append_many item {index} must be a (type, data) tuple")
            check_event_type(item[0])
            check_json(item[1], f"event {index} data")
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
                               else _message_session(message))
        payload, ts, data = _message_payload(message)
        try:
            head = self._append_one(sid, payload, MESSAGE, ts, data, expected_seq, durability,
                                    _retries.message_guard(self, sid, data["id"]))
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
        sid = self._live(_message_session(messages[0]))
        payloads, items, ids = [], [], []
        for message in messages:
            if _message_session(message) != sid:
                raise InvalidEventError("a batch of messages must all belong to one session")
            payload, ts, data = _message_payload(message)
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
        return [_with_seq(m, r.seq) for m, r in zip(messages, records, strict=True)]

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
        iterator = iter(events)
        first = next(iterator, None)
        if first is None:
            raise InvalidEventError("nothing to import: a history starts with session.created")
        first = _check_imported(first, 1)
        if first.type != CREATED or not isinstance(first.data, dict):
            raise InvalidEventError("an imported history must start with a session.created event")
        # Where our own writes end: the created record's head, known without reading it back
        # (a read that failed here left the half import in place).
        head = self._create(sid, first.data.get("participants"), first.data.get("metadata"),
                            first.ts, durability).head
        try:
            seq = 1
            batch: list[bytes] = []
            # What the batch adds to the writer's fold, so its snapshots need no re-reading;
            # None for a batch holding a rewind, whose state only a read can tell.
            items: list[tuple[str, float, Any]] | None = []
            for event in iterator:
                seq += 1
                if check:
                    event = _check_imported(event, seq)
                batch.append(encode_payload(event.type, event.ts, event.data, event.key))
                if items is not None:
                    items.append((event.type, event.ts, event.data))
                    if event.type == REWOUND:
                        items = None
                if len(batch) >= batch_size:
                    last = self._append_payloads(sid, batch, seq - len(batch), durability,
                                                 items)[-1]
                    head, batch, items = Head(last.seq, last.digest), [], []
            if batch:
                self._append_payloads(sid, batch, seq - len(batch), durability, items)
        except BaseException as exc:
            # Remove the half import only if nobody wrote to it meanwhile: deleting it
            # regardless dropped their acknowledged events (a conflict is how we notice them).
            try:
                self.backend.delete(sid, if_head=head)
            except EventLogError as failed:
                if isinstance(exc, EventLogError):
                    # Say so: this time the import is not all or nothing (a full disk may
                    # have no room even for the delete).
                    raise StorageError(f"{exc}; and the partly imported session {sid!r} was "
                                       f"not removed ({failed}): check it before importing "
                                       "again") from exc
            raise
        return self.get_session(sid)

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
        self._folds.pop(sid, None)
        self._views.pop(sid, None)
        self._windows.drop(sid)
        self.backend.delete(sid)

    # Reading -------------------------------------------------------------------------

    def _scan_events(self, sid: str, after_seq: int,
                     position: dict[str, Any] | None = None) -> tuple[ChainReader, Iterator[Event], Any]:
        scan = self.backend.scan(sid, after_seq, position)
        chain = ChainReader(sid, scan.start)
        return chain, _read(chain, scan), scan.position

    def events(self, session_id: str, after_seq: int = 0) -> Iterator[Event]:
        """Every event after ``after_seq``, in order, each checked against the digest chain."""
        sid = self._live(session_id)
        _check_seq("after_seq", after_seq, optional=False)
        scan = self.backend.scan(sid, after_seq, None)
        events = _read(ChainReader(sid, scan.start), scan)
        return events if scan.start.seq >= after_seq else self._skip_to(events, after_seq)

    @staticmethod
    def _skip_to(events: Iterator[Event], after_seq: int) -> Iterator[Event]:
        for event in events:
            if event.seq > after_seq:
                yield event
                yield from events
                return

    def get_session(self, session_id: str) -> ChatSession:
        """The session's state: the newest valid snapshot plus the events after it."""
        return self._state(self._live(session_id)).to_session()

    def _state(self, sid: str, upto: int | None = None) -> SessionState:
        if upto is None:
            view = self._views.get(sid)
            if view is not None:
                # The fold this process last read, and where the log stood: read only what
                # came after it (checked to continue from it; if not, start over).
                try:
                    return self._fold_from(sid, view[0].copy(), view[1], None)
                except CorruptLogError:
                    self._views.pop(sid, None)
        for blob in self.backend.snapshots(sid):
            try:
                state, position = decode_snapshot(sid, blob)
            except CorruptLogError:
                continue  # damaged: an older one, or a full replay, answers instead
            if upto is not None and state.head.seq > upto:
                continue
            try:
                return self._fold_from(sid, state, position, upto)
            except CorruptLogError:
                continue  # the log does not continue from this snapshot: don't trust it
        return self._fold_from(sid, SessionState(sid, genesis(sid)), None, upto)

    def _fold_from(self, sid: str, state: SessionState, position: dict[str, Any] | None,
                   upto: int | None) -> SessionState:
        """Apply to ``state`` the events after it (up to ``upto``), checking that the log
        really continues from the state's head; raise ``CorruptLogError`` if not."""
        after = state.head
        scan = self.backend.scan(sid, after.seq, position)
        chain = ChainReader(sid, scan.start)
        if scan.start.seq == after.seq and scan.start.digest != after.digest:
            raise chain.corrupt("snapshot does not match the log", "snapshot", 0, after.seq)
        head = after if scan.start.seq >= after.seq else None
        # The digest before ``head``: a kept position carries it, so whoever trusts the
        # position later can re-check the newest record itself, not just where it ends.
        before = position.get("prev") if position is not None else None
        for event in _read(chain, scan):
            if event.seq <= after.seq:
                if event.seq == after.seq:
                    if chain.digest != after.digest:
                        raise chain.corrupt("snapshot does not match the log", "snapshot", 0,
                                            after.seq)
                    head = after
                continue
            if upto is not None and event.seq > upto:
                break
            if event.type == REWOUND:
                state = _history.rewound(self, sid, state, event)
            else:
                state.apply(event)
            before = head.digest if head is not None else None
            head = Head(event.seq, chain.digest)
        else:
            if head is not None and head.seq and chain.torn_at is None and upto is None:
                end = scan.position()
                if end is not None and head.seq == chain.seq and before is not None:
                    state.head = head
                    _remember(self._views, sid, (state.copy(), {
                        **end, "seq": head.seq, "h": head.digest, "prev": before}))
        if head is None:
            raise chain.corrupt("the log is shorter than a snapshot of it", "snapshot", 0,
                                after.seq)
        if head.seq == 0:
            raise chain.corrupt("the log holds no events", "log", 0, 0)
        state.head = head
        return state

    def get_messages(self, session_id: str, limit: int | None = None, before_seq: int | None = None,
                     after_seq: int | None = None) -> list[ChatMessage]:
        """Messages with ``after_seq < seq < before_seq``; the newest ``limit`` of them,
        in chronological order. With a limit, it reads from the end of the log."""
        sid = self._live(session_id)
        _check_seq("limit", limit)
        _check_seq("before_seq", before_seq)
        _check_seq("after_seq", after_seq)
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
        return self._events_backward(self._live(session_id))

    def _events_backward(self, sid: str) -> Iterator[Event]:
        """Events from the newest back, each checked against the one before it.

        An event is yielded only once its predecessor has vouched for it (or it is seq 1),
        so a damaged record is never returned even on this fast path.
        """
        newer: tuple[dict[str, Any], bytes, str] | None = None
        torn = True
        for source, lineno, line in self.backend.scan_back(sid):
            try:
                obj, body, digest = parse(line)
            except Unparseable:
                if torn and not looks_like_record(line):
                    continue  # a torn tail: writers will quarantine it
                raise CorruptLogError(f"session {sid!r}, {source} byte {-lineno}: unreadable "
                                      "record before readable ones", session_id=sid,
                                      where=source) from None
            torn = False
            if newer is not None:
                n_obj, n_body, n_digest = newer
                if n_obj["seq"] != obj["seq"] + 1 or link(digest, n_body) != n_digest:
                    raise CorruptLogError(
                        f"session {sid!r}, {source}: seq {n_obj['seq']} does not follow seq "
                        f"{obj['seq']} in the digest chain", session_id=sid, seq=n_obj["seq"],
                        where=source)
                yield to_event(n_obj)
            newer = (obj, body, digest)
        if newer is None:
            return
        n_obj, n_body, n_digest = newer
        if n_obj["seq"] != 1 or link(genesis(sid).digest, n_body) != n_digest:
            raise CorruptLogError(f"session {sid!r}: the log does not start at seq 1 "
                                  f"(oldest readable record is seq {n_obj['seq']})",
                                  session_id=sid, seq=n_obj["seq"])
        yield to_event(n_obj)

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

    def list_sessions(self) -> list[ChatSession]:
        """Every session's state, by id; sessions deleted meanwhile are left out."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        found = []
        for sid in self.backend.session_ids():
            try:
                found.append(self._state(sid).to_session())
            except SessionNotFoundError:
                continue
        return found

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
        timeout = _follow_timeout(timeout)
        sid, start, life = self._follow_start(session_id, after_seq, timeout)
        return self._follow(sid, start, timeout, life)

    def _follow_start(self, session_id: str, after_seq: int | None,
                      timeout: float | None) -> tuple[str, int, object]:
        """Check ``follow``'s arguments; return the id, the seq to follow from and the
        session's life. (The server's follower threads resume ``_follow`` with the same
        life after each idle timeout, so a stream, too, follows one life of the id.)"""
        sid = self._live(session_id)
        _check_seq("after_seq", after_seq)
        _follow_timeout(timeout)
        # Taken with the start, at the call: a follower follows one life of the id.
        life = self.backend.incarnation(sid)
        start = self.backend.last_seq(sid) if after_seq is None else after_seq
        return sid, start, life

    def _follow(self, sid: str, seq: int, timeout: float | None, life: object) -> Iterator[Event]:
        position: dict[str, Any] | None = None
        while True:
            chain, events, where = self._scan_events(sid, seq, position)
            checked = False
            for event in events:
                if event.seq > seq:
                    if not checked:
                        # The session may have been deleted and created again since the
                        # wait, and this read found the new log (its digests can match ours:
                        # import_events makes exact copies). A life never comes back, so if
                        # the session is still ours now that the read has begun, so was the read.
                        if self.backend.incarnation(sid) != life:
                            raise SessionNotFoundError(sid)
                        checked = True
                    yield event
                    seq = event.seq
            if chain.head.seq == seq and chain.torn_at is None:
                found = where()
                if found is not None:
                    position = {**found, "seq": seq, "h": chain.head.digest}
            if not self.backend.wait(sid, seq, timeout, incarnation=life):
                return

    # Upkeep --------------------------------------------------------------------------

    def _save_snapshot(self, sid: str, seq: int, state: SessionState | None,
                       position: dict[str, Any] | None) -> None:
        """Write a checkpoint snapshot at ``seq``, outside the append lock.

        ``state`` is the writer's own fold when it saw every event up to ``seq``; otherwise
        the fold is rebuilt from the newest snapshot (reading only immutable records) and
        kept, so the next checkpoints of a steady writer cost no reading at all.
        """
        try:
            if state is None or state.head.seq != seq:
                state = self._state(sid, upto=seq)
                if state.head.seq != seq:
                    return
                self._remember_fold(sid, state.copy())
            self.backend.save_snapshot(sid, seq, encode_snapshot(state, position), durable=False)
        except (EventLogError, OSError):
            # A snapshot is a cache of the fold; the append it follows already succeeded,
            # and readers fall back to older snapshots or a full replay.
            pass

    def _remember_fold(self, sid: str, state: SessionState) -> None:
        _remember(self._folds, sid, state)

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
            return compact(self, None)
        return compact(self, self._live(session_id))

    def cleanup_old_sessions(self, days: float, *, archive_dir: str | os.PathLike[str] | None = None,
                             dry_run: bool = False) -> list[str]:
        """Remove every session whose last activity (its newest event timestamp) is more
        than ``days`` ago (fractions allowed); return their ids.

        ``archive_dir``: first write each one's history there as ``<id>.jsonl`` (a sealed
        segment: header, records with digests, trailer). ``dry_run``: only return the ids.
        A session appended to meanwhile is kept whole; damaged sessions are kept."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return cleanup_old_sessions(self, days, archive_dir, dry_run)

    def verify(self, session_id: str | None = None) -> VerifyReport:
        """Check digests, seq continuity, structure and snapshots; never raises for damage."""
        if session_id is None:
            if self._closed:
                raise StoreClosedError("the store is closed")
            ids = self.backend.session_ids()
        else:
            ids = [self._live(session_id)]
            # A session the store lists but can't find the head of (a file store's session
            # directory without its lock file) is damage to report, not a missing session:
            # listing it as damaged in one place and ok in another gave two answers.
            if not self.backend.exists(ids[0]) and ids[0] not in self.backend.session_ids():
                raise SessionNotFoundError(ids[0])
        problems: list[str] = []
        checked = 0
        for sid in ids:
            count, found = self._verify_one(sid)
            checked += count
            problems.extend(found)
        return VerifyReport(events_checked=checked, problems=problems, sessions_checked=len(ids))

    def _verify_one(self, sid: str) -> tuple[int, list[str]]:
        problems = list(self.backend.check(sid))
        state = SessionState(sid, genesis(sid))
        folds: dict[int, SessionState] = {}
        snaps = []
        for blob in self.backend.snapshots(sid):
            try:
                snaps.append(decode_snapshot(sid, blob)[0])
            except CorruptLogError as exc:
                problems.append(str(exc))
        wanted = {s.head.seq for s in snaps}
        count = 0
        try:
            chain, events, _ = self._scan_events(sid, 0)
            for event in events:
                if event.type == REWOUND:
                    # The state at to_seq: the fold kept at that seq if any, else a read.
                    state = _history.rewound(self, sid, state, event)
                else:
                    state.apply(event)
                    if event.type == FORKED:
                        problems.extend(_history.verify_fork(self, sid, event))
                count += 1
                if event.seq in wanted:
                    state.head = chain.head
                    folds[event.seq] = state.copy()
            state.head = chain.head
        except CorruptLogError as exc:
            problems.append(str(exc))
            return count, problems
        if count == 0:
            problems.append(f"session {sid!r}: the log holds no events")
        elif state.head.seq != count:
            problems.append(f"session {sid!r}: {count} events but last seq {state.head.seq}")
        for snap in snaps:
            fold = folds.get(snap.head.seq)
            if fold is None or not fold.same_as(snap):
                problems.append(f"session {sid!r}, snapshot at seq {snap.head.seq}: does not "
                                "equal the fold of the events it covers")
        return count, problems


def _follow_timeout(timeout: object) -> float | None:
    """A ``follow`` timeout checked: None for waiting forever."""
    if timeout is None:
        return None
    # ``not timeout >= 0`` refuses NaN too: it compares false with everything, so a NaN
    # deadline was never reached and the follower waited forever.
    if type(timeout) not in (int, float) or not timeout >= 0:  # type: ignore[operator]
        raise InvalidEventError(f"timeout must be a non-negative number or None, not "
                                f"{shown(timeout)}")
    if timeout >= FOREVER:  # type: ignore[operator]
        return None  # inf, 10**400: past what the backends' waits can count
    return timeout  # type: ignore[return-value]


def _check_imported(event: object, seq: int) -> Event:
    if not isinstance(event, Event):
        raise InvalidEventError(f"expected an Event to import, not {type(event).__name__}")
    if event.seq != seq:
        raise InvalidEventError(f"imported events must be gapless from 1: expected seq {seq}, "
                                f"got {event.seq}")
    check_event_type(event.type, allow_reserved=True)
    check_timestamp(f"event {seq} ts", event.ts)
    check_json(event.data, f"event {seq} data")
    if seq > 1 and event.type.startswith(RESERVED_PREFIXES):
        _check_reserved(event)
    key = event.key
    if key is not None:
        check_text(f"event {seq} key", key)
    return event


def _remember(cache: dict[str, Any], sid: str, value: Any) -> None:
    """Keep ``value`` for ``sid``, forgetting the oldest entries past ``FOLDS_KEPT``."""
    cache.pop(sid, None)
    cache[sid] = value
    while len(cache) > FOLDS_KEPT:
        cache.pop(next(iter(cache)), None)


def _check_reserved(event: Event) -> None:
    """An imported eventlog-owned event must look like one eventlog writes: the fold trusts
    its shape (a join without a participant used to fail later as a raw KeyError, and a
    second session.created silently reset the session)."""
    data, where = event.data, f"event {event.seq} ({event.type})"
    if type(data) is not dict:
        raise InvalidEventError(f"{where}: data must be an object")
    if event.type in (FORKED, REWOUND):
        _history.check_forked(event, where)
    elif event.type in (JOINED, LEFT):
        check_text(f"{where} participant", data.get("participant"))
    elif event.type == MESSAGE:
        for name in ("id", "sender"):
            check_text(f"{where} {name}", data.get(name))
        check_text(f"{where} content", data.get("content"), empty=True)
        check_text(f"{where} recipient", data.get("recipient"), optional=True)
        check_text(f"{where} message_type", data.get("message_type", "text"))
        if data.get("metadata") is not None and type(data["metadata"]) is not dict:
            raise InvalidEventError(f"{where}: message metadata must be an object")
    else:
        raise InvalidEventError(f"{where}: only seq 1 is session.created, and eventlog writes no "
                                "other session.* or message* types")


def _read(chain: ChainReader, scan: Scan) -> Iterator[Event]:
    return chain.read(scan.lines) if scan.chunks is None else chain.read_chunks(scan.chunks)


def _message_session(message: object) -> str:
    if not isinstance(message, ChatMessage):
        raise InvalidEventError(f"expected a ChatMessage, not {type(message).__name__}")
    return message.session_id


def _message_payload(message: ChatMessage) -> tuple[bytes, float, dict[str, Any]]:
    """Check a message's fields and encode it as one ``message`` event: its payload, its
    timestamp (as a float) and its data."""
    ts = message.timestamp
    recipient = message.recipient
    # One combined test for the common, valid case; the detailed checks name the problem.
    if not (type(message.sender) is str and message.sender and type(message.content) is str
            and type(message.id) is str and message.id and message.message_type == "text"
            and (recipient is None or (type(recipient) is str and recipient))
            and type(ts) is float and 0.0 <= ts < TS_END and message.metadata is None):
        check_text("message id", message.id)
        check_text("sender", message.sender)
        check_text("recipient", recipient, optional=True)
        check_text("content", message.content, empty=True)
        check_text("message_type", message.message_type)
        ts = check_timestamp("timestamp", ts)
        if message.metadata is not None:
            if type(message.metadata) is not dict:
                raise InvalidEventError("message metadata must be a dict")
            check_json(message.metadata, "message metadata")
    data = message_data(message)
    return encode_payload(MESSAGE, ts, data), ts, data


def _with_seq(m: ChatMessage, seq: int) -> ChatMessage:
    # Not dataclasses.replace: it costs more than the rest of an append's Python work.
    return build_message(m.sender, m.content, m.session_id, m.recipient, m.id, float(m.timestamp),
                         m.message_type, None if m.metadata is None else own_json(m.metadata), seq)
