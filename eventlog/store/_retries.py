"""Idempotent appends: a message id or an idempotency key the session already holds is
answered with what is stored, and nothing is written.

The check runs where the append's head is known and no other writer can move it: inside
the backend's append, under the session's lock (or, on an optimistic backend, against
the head the write is then conditional on), so it holds across processes. It looks in a
``Window``: the ids of the visible messages and the keys of the visible events among the
session's last ``WINDOW`` events (by seq), kept per session by the writer and brought up
to the head by reading only the events appended since (by any process) before each check.

A hit raises ``Stored`` out of the append, which writes nothing; the caller reads the
stored events back (outside the lock) and compares or returns them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import orjson

from ..backends._base import Guard, Since
from ..core._codec import DIGEST_HEX, Head, Record, line_links
from ..core._errors import ConflictError, DuplicateMessageError, EventLogError
from ..core._records import ChatMessage, Event
from ._state import MESSAGE, REWOUND, message_data, to_message

if TYPE_CHECKING:
    from ._log import EventLog

_loads = orjson.loads
WINDOW = 10_000
"""Ids and keys are looked for among the session's last this many events (by seq)."""
SLACK = 1_000
"""A window is trimmed back to ``WINDOW`` events once it holds this many more entries."""
WINDOWS_KEPT = 64
"""Sessions whose window a store keeps (each up to ``WINDOW + SLACK`` entries)."""


class Stored(EventLogError):
    """Raised inside an append that must not write: what it asks for is stored at ``seqs``
    (a message id: one seq each; a key: the first seq of its event(s))."""

    def __init__(self, seqs: list[int]) -> None:
        super().__init__("already stored")
        self.seqs = seqs


class Window:
    """Visible message ids and event keys among a session's recent events, as of ``at``:
    the head and the backend's position after it, one tuple, so that a writer moving the
    window on after its append (``EventLog._append_one``, no lock taken) sets both at once.

    The tables only ever gain entries of events at or before ``at``'s head (and lose those
    past the window in ``trim``), so a window set back to an older head by a slow writer
    is still right: the next check reads on from there, adding what it has already.

    So an id missing from ``ids`` read after ``at`` was missing at ``at``'s head (an entry
    added meanwhile is for a later head, which the append then can't be building on; one
    trimmed was outside the window): ``add_message`` checks this outside the lock and hands
    the backend that head as ``checked``, and an append building on it needs no guard call."""

    __slots__ = ("at", "ids", "keys")

    def __init__(self, head: Head, ids: dict[str, int], keys: dict[str, int],
                 position: dict[str, Any] | None) -> None:
        self.at = (head, position)
        self.ids = ids
        self.keys = keys

    def lacking(self, found: dict[str, int], member: str) -> Head | None:
        """The window's head if ``member`` is not among ``found`` (its ids or keys) there:
        an append that builds on that head needs no guard call under the lock."""
        at = self.at[0]  # read before the members: a later head only adds to them
        return None if member in found else at

    def take(self, event: Event) -> None:
        """One visible event after the window's head, in order."""
        if event.type == MESSAGE:
            self.ids[event.data["id"]] = event.seq
        if event.key is not None:
            self.keys.setdefault(event.key, event.seq)

    def trim(self) -> None:
        floor = self.at[0].seq - WINDOW
        for table in (self.ids, self.keys):
            if len(table) > WINDOW + SLACK:
                # Oldest first (entries are added in seq order), so only the dropped are seen.
                old = []
                for name, seq in table.items():
                    if seq > floor:
                        break
                    old.append(name)
                for name in old:
                    del table[name]


class Windows:
    """The store's windows, by session; one lock guards the table and each window's moves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table: dict[str, Window] = {}

    def drop(self, sid: str) -> None:
        with self.lock:
            self.table.pop(sid, None)

    def advanced(self, sid: str, after: Head, head: Head, position: dict[str, Any] | None,
                 ids: list[tuple[str, int]] | None = None,
                 keys: list[tuple[str, int]] | None = None) -> None:
        """An append sealed after ``after`` wrote up to ``head``: move the window on, if it
        stood at ``after`` (else the next check reads what it missed)."""
        window = self.table.get(sid)
        if window is None:
            return
        if window.at[0] != after:
            return
        if ids:
            window.ids.update(ids)
        if keys:
            for key, seq in keys:
                window.keys.setdefault(key, seq)
        window.at = (head, position)
        if head.seq % SLACK == 0:
            with self.lock:
                window.trim()

    def after_batch(self, sid: str, records: list[Record], afters: list[Head],
                    position: dict[str, Any] | None,
                    added: tuple[list[tuple[str, int]], str | None] | None) -> None:
        """A batch was written after ``afters[-1]``: move the window on by the message ids
        (by index in the batch) and the key in ``added``; None (a rewind, an import): drop it."""
        if added is None:
            self.drop(sid)
        elif records and afters:
            ids, key = added
            first = records[0].seq
            self.advanced(sid, afters[-1], Head(records[-1].seq, records[-1].digest), position,
                          [(mid, first + i) for mid, i in ids],
                          None if key is None else [(key, first)])


def window_at(log: EventLog, sid: str, head: Head, since: Since | None = None) -> Window:
    """The session's window as of ``head`` (called inside an append, with the head it
    builds on): the kept one if it is there, else it read on to ``head``, else rebuilt."""
    windows = log._windows
    window = windows.table.get(sid)
    if window is not None and window.at[0] == head:
        return window
    with windows.lock:
        window = windows.table.get(sid)
        if window is not None and window.at[0] != head:
            if window.at[0].seq < head.seq <= window.at[0].seq + WINDOW:
                window = (since is not None and _read_since(sid, window, head, since,
                                                            log.version)) \
                    or _read_on(log, sid, window, head)
            else:
                window = None
        if window is None:
            window = _rebuild(log, sid, head)
        table = windows.table
        table.pop(sid, None)
        table[sid] = window
        while len(table) > WINDOWS_KEPT:
            table.pop(next(iter(table)))
        return window


def _read_since(sid: str, window: Window, head: Head, since: Since,
                version: int) -> Window | None:
    """``window`` moved on to ``head`` by the lines the backend's ``since`` hands over (read
    under its lock, from where the window's position says); None if it can't.

    These are the records other writers appended since this one's last append, read under
    the append lock before every append, so they are taken at their word: seqs in order
    from the window's head, the last one's ``h`` the head's digest, but no digest is
    recomputed (checking the chain is ``verify``'s and every reader's job; a line that is
    not a plain record sends the check to the full read instead)."""
    start, where = window.at
    try:
        got = since(where)
        if got is None:
            return None
        lines, position = got
        seq, digest = start.seq, start.digest
        found: list[dict[str, Any]] = []
        for line in lines:
            obj = _loads(line)
            if type(obj) is not dict or obj.get("seq") != seq + 1 or obj.get("type") == REWOUND:
                return None
            # The first line must link to the window's head: the lines continue this window's
            # chain (not another life's at the same seq: a backend without positions, Redis,
            # hands over lines after the head its writer sent, not after the window's).
            if not found and (obj.get("h") != line[-DIGEST_HEX - 2:-2].decode("ascii", "replace")
                              or not line_links(digest, line, version)):
                return None
            seq, digest = seq + 1, obj["h"]
            found.append(obj)
    except (ValueError, TypeError, KeyError, OSError, EventLogError):
        return None
    if seq != head.seq or digest != head.digest:
        return None
    ids, keys = window.ids, window.keys
    for obj in found:
        if obj["type"] == MESSAGE:
            ids[obj["data"]["id"]] = obj["seq"]
        key = obj.get("k")
        if key is not None:
            keys.setdefault(key, obj["seq"])
    window.at = (head, position)
    return window


def _read_on(log: EventLog, sid: str, window: Window, head: Head) -> Window | None:
    """``window`` moved on by the events after it up to ``head``; None if it can't be (a
    rewind among them: the visible set is then an older one, so it is rebuilt)."""
    start, hint = window.at
    try:
        chain, events, where = log._scan_events(sid, start.seq, hint)
        if chain.seq == start.seq and chain.digest != start.digest:
            return None
        checked = chain.seq >= start.seq
        reached = None
        whole = True  # the scan read to its end: its position is then the head's
        for event in events:
            if event.seq <= start.seq:
                if event.seq == start.seq:
                    if chain.digest != start.digest:
                        return None
                    checked = True
                continue
            if event.seq > head.seq:  # an optimistic backend's log went on: not ours to read
                whole = False
                break
            if not checked or event.type == REWOUND:
                return None
            window.take(event)
            if event.seq == head.seq:
                reached = chain.digest
        if reached != head.digest:
            return None
        end = where() if whole and chain.torn_at is None else None
    except EventLogError:
        return None
    window.at = (head, None if end is None else {**end, "seq": head.seq, "h": head.digest})
    window.trim()
    return window


def _rebuild(log: EventLog, sid: str, head: Head) -> Window:
    """The window of the last ``WINDOW`` events up to ``head``, read forward and then
    walked back to tell which are visible (a rewind hides the events between its
    ``to_seq`` and itself, and a rewind hidden by a later one hides nothing)."""
    floor = max(0, head.seq - WINDOW)
    chain, events, _ = log._scan_events(sid, floor)
    recent: list[Event] = []
    for event in events:
        if event.seq > floor:
            recent.append(event)
        if event.seq >= head.seq:
            break
    if chain.seq != head.seq or chain.digest != head.digest:
        # Only an optimistic backend's guessed head can miss: it then reads the head again.
        raise ConflictError(sid, head.seq, chain.seq)
    ids: dict[str, int] = {}
    keys: dict[str, int] = {}
    skip_above: int | None = None  # events above this seq (and below a rewind) are hidden
    for event in reversed(recent):
        if skip_above is not None:
            if event.seq > skip_above:
                continue
            skip_above = None
        if event.type == MESSAGE:
            ids.setdefault(event.data["id"], event.seq)
        if event.key is not None:
            keys[event.key] = event.seq  # the batch's first event wins: it comes last here
        if event.type == REWOUND:
            skip_above = event.data["to_seq"]
    # Oldest first, as ``trim`` and appends expect.
    return Window(head, dict(reversed(ids.items())), dict(reversed(keys.items())), None)


def check_message(log: EventLog, sid: str, message_id: str, head: Head,
                  since: Since | None) -> None:
    """The guard of an append of the message ``message_id``: ``add_message`` binds its first
    three arguments with a ``functools.partial``, not a closure (built for every message, and
    most never call it: see its checked head; a partial costs a third of a closure)."""
    seq = window_at(log, sid, head, since).ids.get(message_id)
    if seq is not None:
        raise Stored([seq])


def messages_guard(log: EventLog, sid: str, message_ids: list[str]) -> Guard:
    def guard(head: Head, since: Since | None) -> None:
        ids = window_at(log, sid, head, since).ids
        found = [ids.get(mid) for mid in message_ids]
        if any(seq is not None for seq in found):
            raise Stored([-1 if seq is None else seq for seq in found])
    return guard


def key_guard(log: EventLog, sid: str, key: str) -> Guard:
    def guard(head: Head, since: Since | None) -> None:
        seq = window_at(log, sid, head, since).keys.get(key)
        if seq is not None:
            raise Stored([seq])
    return guard


def stored_event(log: EventLog, sid: str, seq: int) -> Event:
    for event in log.events(sid, after_seq=seq - 1):
        return event
    raise ConflictError(sid, seq, 0)  # unreachable for a stored seq: the log only grows


def keyed_events(log: EventLog, sid: str, seq: int, key: str) -> list[Event]:
    """The events stored with ``key``, from its first one at ``seq`` (a batch is contiguous)."""
    found = []
    for event in log.events(sid, after_seq=seq - 1):
        if event.key != key:
            break
        found.append(event)
    return found


def same_message(message: ChatMessage, data: dict[str, Any]) -> bool:
    """Whether a message equals a stored one in what a retry must repeat: sender, recipient,
    content, message type and metadata (not the timestamp, which a retry may renew)."""
    mine = message_data(message)
    return all(mine.get(name) == data.get(name)
               for name in ("sender", "recipient", "content", "message_type", "metadata"))


def stored_message(log: EventLog, sid: str, message: ChatMessage, seq: int) -> ChatMessage:
    """The stored message at ``seq`` if ``message`` repeats it, else ``DuplicateMessageError``."""
    event = stored_event(log, sid, seq)
    if event.type != MESSAGE or not same_message(message, event.data):
        raise DuplicateMessageError(sid, [message.id], f"stored at seq {seq} with other contents")
    return to_message(sid, event)


def stored_batch(log: EventLog, sid: str, messages: list[ChatMessage],
                 seqs: list[int]) -> list[ChatMessage]:
    """A batch of messages is all stored (a retry: the stored ones) or all new; a mix, or
    one differing from its stored message, raises ``DuplicateMessageError``."""
    new = [m.id for m, seq in zip(messages, seqs, strict=True) if seq < 0]
    if new:
        old = [m.id for m, seq in zip(messages, seqs, strict=True) if seq >= 0]
        raise DuplicateMessageError(sid, old, "are stored already, and the batch also holds new "
                                    f"ones ({', '.join(map(repr, new))}): a batch is stored "
                                    "all at once or not at all")
    return [stored_message(log, sid, m, seq) for m, seq in zip(messages, seqs, strict=True)]
