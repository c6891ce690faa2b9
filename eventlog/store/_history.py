"""Conversation history operations: fork a session, rewind it, and which events are visible.

Both stay append-only. A fork is a new session whose events 1..``at_seq`` are the
source's (seq, type, ts, data and key), followed by a ``session.forked`` event naming the
source, the seq and the source's digest there. A rewind is a ``session.rewound`` event:
from it on, the session's visible history is its events 1..``to_seq`` as they were visible
then, followed by the events after the rewind. ``events()`` still returns everything.

Visibility has one definition, walked from the newest event back: a visible rewind hides
every event between its ``to_seq`` and itself (rewinds among those hide nothing), and
the walk goes on below ``to_seq``. The fold agrees: the state after a rewind is the
(visible) state at its ``to_seq``, with ``last_seq``, ``last_activity``, ``created_at``
and ``forked_from`` those of all events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import orjson

from ..core._codec import (
    ChainReader,
    Head,
    Record,
    Unparseable,
    encode_payload,
    genesis,
    link,
    parse,
    seal,
)
from ..core._errors import (
    InvalidEventError,
    SeqOutOfRangeError,
    SessionExistsError,
    SessionNotFoundError,
)
from ..core._rechain import rechain
from ..core._records import ChatMessage, ChatSession, Event
from ..core._validate import check_key, check_session_id, check_text
from ._state import FORKED, MESSAGE, REWOUND, to_message

if TYPE_CHECKING:
    from ._inputs import Durability
    from ._log import EventLog


def _check_range(sid: str, name: str, seq: object, last: int) -> int:
    if type(seq) is not int or not 1 <= seq <= last:
        raise SeqOutOfRangeError(sid, name, seq, last)
    return seq


def rewind(log: EventLog, sid: str, to_seq: int, reason: str | None,
           expected_seq: int | None) -> Event:
    last = log.backend.last_seq(sid)
    if last == 0 and not log.backend.exists(sid):
        raise SessionNotFoundError(sid)
    _check_range(sid, "to_seq", to_seq, last)
    if reason is not None:
        check_text("reason", reason, empty=True)
    ts = time.time()
    data = {"to_seq": to_seq, "reason": reason}
    # Checked against the head under the lock too: the log may have grown, never shrunk,
    # so to_seq stays in range. ``items`` None: the writer's fold is dropped (refolded).
    log._folds.pop(sid, None)
    log._windows.drop(sid)
    # snapshot=True: a snapshot at the rewind. The state after it is an older state, which
    # a reader would otherwise fold from the newest snapshot at or before to_seq (only the
    # newest few are kept, so in a long session that can be a replay from seq 1): the
    # rewinder pays that once.
    record = log._append_payloads(sid, [encode_payload(REWOUND, ts, data)], expected_seq,
                                  None, snapshot=True)[0]
    log._folds.pop(sid, None)
    log._windows.drop(sid)
    return Event(record.seq, REWOUND, ts, data)


def fork(log: EventLog, source: str, new_id: str | None, at_seq: int | None,
         durability: Durability | None) -> ChatSession:
    """The source's records 1..``at``, their bodies as they are and chained again from the
    new id's genesis (see ``core._rechain``), then the ``session.forked`` event: one bulk
    write (``Backend.create_log``), all or nothing. The fork's state is the source's at
    ``at`` (folded from the nearest snapshot), plus that event; it is saved as a snapshot."""
    sid = check_session_id(source)
    new = uuid.uuid4().hex if new_id is None else check_session_id(new_id)
    last = log.backend.last_seq(sid)
    if last == 0 and not log.backend.exists(sid):
        raise SessionNotFoundError(sid)
    at = last if at_seq is None else _check_range(sid, "at_seq", at_seq, last)
    if new == sid or log.backend.exists(new):
        raise SessionExistsError(new)
    state = log._folding.state(sid, upto=at)
    ts = time.time()
    written: list[Record] = []

    def batches() -> Iterator[list[Record]]:
        scan = log.backend.scan(sid, 0, None)
        reader = ChainReader(sid, scan.start, log.version)
        chunks = scan.chunks if scan.chunks is not None else (
            (source, lineno, [line]) for source, lineno, line in scan.lines)
        head = genesis(new)
        try:
            for batch in rechain(reader, chunks, head, at):
                if log.version == 1:
                    _refuse_keys(batch)
                head = Head(batch[-1].seq, batch[-1].digest)
                yield batch
        finally:
            getattr(chunks, "close", lambda: None)()  # the files read past ``at``
        if reader.head != state.head:
            raise SessionNotFoundError(sid)  # deleted (and maybe created again) meanwhile
        data = {"parent": sid, "seq": at, "h": reader.digest}
        written[:] = seal([encode_payload(FORKED, ts, data)], head, log.max_event_bytes,
                          log.version)
        yield written

    position = log.backend.create_log(new, batches(), durable=log._durable(durability))
    record = written[0]
    fold = state.copy()
    fold.session_id = new
    fold.apply(Event(record.seq, FORKED, ts, {"parent": sid, "seq": at}))
    fold.head = Head(record.seq, record.digest)
    log._windows.drop(new)
    log._folding.save_snapshot(new, record.seq, fold.copy(), position)
    log._folding.remember_fold(new, fold)
    log._mark(new)
    return fold.to_session()


def _refuse_keys(batch: list[Record]) -> None:
    """A version 1 store written before keys were version 2's may hold keyed records; a
    fork must not copy one, or the store would hold a record its own releases take for
    damage (an import refuses them the same way). Only a line holding the bytes of a
    member named k is decoded to tell whether the record (not its data) has one."""
    for record in batch:
        if b'"k":' in record.line:
            key = orjson.loads(record.line).get("k")
            if key is not None:
                check_key(key, 1, f"event {record.seq}'s key")


def _digest_at(log: EventLog, sid: str, seq: int) -> str:
    chain, events, _ = log._scan_events(sid, seq - 1)
    for event in events:
        if event.seq == seq:
            return chain.digest
    raise SessionNotFoundError(sid)


def check_forked(event: Event, where: str) -> None:
    """An imported ``session.forked`` or ``session.rewound`` event must look like one
    eventlog writes (the fold trusts its shape)."""
    data = event.data
    if type(data) is not dict:
        raise InvalidEventError(f"{where}: data must be an object")
    if event.type == FORKED:
        check_session_id(data.get("parent"))
        if type(data.get("seq")) is not int or data["seq"] != event.seq - 1 \
                or type(data.get("h")) is not str:
            raise InvalidEventError(f"{where}: a fork's seq must be the seq before it, and h "
                                    "the source's digest there")
    else:
        to_seq = data.get("to_seq")
        if type(to_seq) is not int or not 1 <= to_seq < event.seq:
            raise InvalidEventError(f"{where}: to_seq must be an int from 1 to the seq before it")
        if data.get("reason") is not None:
            check_text(f"{where} reason", data["reason"], empty=True)


def verify_fork(log: EventLog, sid: str, event: Event) -> list[str]:
    """Problems with a fork's copied history: its events 1..seq, chained as the source's
    (from the source's genesis), must end in the digest the fork recorded; and while the
    source exists, its own digest at that seq must be that one too."""
    parent, at, want = event.data["parent"], event.data["seq"], event.data["h"]
    problems = []
    digest = genesis(parent).digest
    scan = log.backend.scan(sid, 0, None)
    lines = ((s, n, line) for s, n, block in scan.chunks for line in block) \
        if scan.chunks is not None else scan.lines
    for _source, _lineno, line in lines:
        try:
            obj, body, _ = parse(line)
        except Unparseable:
            continue
        if obj["seq"] > at:
            break
        digest = link(digest, body, log.version)
    if digest != want:
        problems.append(f"session {sid!r}: its events 1..{at} are not the history of "
                        f"{parent!r} it was forked from (the digest there differs)")
    try:
        if log.backend.exists(parent) and _digest_at(log, parent, at) != want:
            problems.append(f"session {sid!r}: the source session {parent!r} no longer holds "
                            f"the history it was forked from at seq {at}")
    except SessionNotFoundError:
        pass
    except Exception as exc:  # the source's damage is the source's report, but say it here
        problems.append(f"session {sid!r}: the source session {parent!r} can't be read at seq "
                        f"{at}: {exc}")
    return problems


def visible(items: Iterable[Event]) -> Iterator[Event]:
    """Of events given newest first, the visible ones (newest first). The walk needs every
    rewind newer than the oldest event wanted; other events may be left out of ``items``."""
    skip_above: int | None = None
    for event in items:
        if skip_above is not None:
            if event.seq > skip_above:
                continue
            skip_above = None
        yield event
        if event.type == REWOUND:
            skip_above = event.data["to_seq"]


def visible_messages(log: EventLog, sid: str, low: int, high: int | None) -> list[ChatMessage]:
    """Every visible message with ``low < seq < high``, in order (``get_messages`` without a
    limit): read forward to the end (a later rewind can hide earlier messages), keeping
    the messages in range and every rewind, then walked back."""
    kept: list[Event] = []
    rewinds = False
    for event in log.events(sid, after_seq=low):
        if event.type == MESSAGE:
            if high is None or event.seq < high:
                kept.append(event)
        elif event.type == REWOUND:
            kept.append(event)
            rewinds = True
    if not rewinds:
        return [to_message(sid, e) for e in kept]
    shown = [e for e in visible(reversed(kept)) if e.type == MESSAGE]
    shown.reverse()
    return [to_message(sid, e) for e in shown]


def newest_messages(log: EventLog, sid: str, low: int, high: int | None,
                    limit: int) -> list[ChatMessage]:
    """The newest ``limit`` visible messages with ``low < seq < high``, read from the end."""
    newest_first = []
    for event in visible(log._events_backward(sid)):
        if event.seq <= low:
            break
        if event.type != MESSAGE or (high is not None and event.seq >= high):
            continue
        newest_first.append(to_message(sid, event))
        if len(newest_first) == limit:
            break
    newest_first.reverse()
    return newest_first
