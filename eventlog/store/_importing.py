"""``EventLog.import_events`` (and ``fork``'s copy): a whole history written as given, as a
new session, in batches; all or nothing, since a failed import removes what it wrote unless
someone else wrote to the session meanwhile."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core._codec import Head, encode_payload
from ..core._errors import EventLogError, InvalidEventError, StorageError
from ..core._records import ChatSession, Event
from ..core._validate import check_key
from ._inputs import Durability, check_imported
from ._redaction import check_imported as check_redactions
from ._state import CREATED, REWOUND

if TYPE_CHECKING:
    from ._log import EventLog


def import_history(log: EventLog, sid: str, events: Iterable[Event],
                   durability: Durability | None, batch_size: int, check: bool) -> ChatSession:
    """``check`` False for events read from this store's own chain (``fork``): they are not
    checked again."""
    # The tombstones and redaction events are checked against each other as they pass.
    iterator = iter(check_redactions(sid, events))
    first = next(iterator, None)
    if first is None:
        raise InvalidEventError("nothing to import: a history starts with session.created")
    first = check_imported(first, 1)
    if first.type != CREATED or not isinstance(first.data, dict):
        raise InvalidEventError("an imported history must start with a session.created event")
    # Where our own writes end: the created record's head, known without reading it back
    # (a read that failed here left the half import in place).
    head = log._create(sid, first.data.get("participants"), first.data.get("metadata"),
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
                event = check_imported(event, seq)
            batch.append(_payload(event, seq, log.version))
            if items is not None:
                items.append((event.type, event.ts, event.data))
                if event.type == REWOUND:
                    items = None
            if len(batch) >= batch_size:
                last = log._append_payloads(sid, batch, seq - len(batch), durability,
                                            items)[-1]
                head, batch, items = Head(last.seq, last.digest), [], []
        if batch:
            log._append_payloads(sid, batch, seq - len(batch), durability, items)
    except BaseException as exc:
        # Remove the half import only if nobody wrote to it meanwhile: deleting it
        # regardless dropped their acknowledged events (a conflict is how we notice them).
        try:
            log.backend.delete(sid, if_head=head)
        except EventLogError as failed:
            if isinstance(exc, EventLogError):
                # Say so: this time the import is not all or nothing (a full disk may
                # have no room even for the delete).
                raise StorageError(f"{exc}; and the partly imported session {sid!r} was "
                                   f"not removed ({failed}): check it before importing "
                                   "again") from exc
        raise
    return log.get_session(sid)


def _payload(event: Event, seq: int, version: int) -> bytes:
    if event.key is not None and version == 1:
        # A keyed record would make the store unreadable to its own releases.
        check_key(event.key, 1, f"event {seq}'s key")
    return encode_payload(event.type, event.ts, event.data, event.key)
