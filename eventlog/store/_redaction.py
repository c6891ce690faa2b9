"""Redaction: erasing the data of events while the digest chain still proves the rest.

In format version 2 the chain covers a hash of each event's data (see ``core._codec``), so
an event's data can be replaced by a *tombstone* that states that hash: the record keeps
its seq, type, ts and digest, and every digest after it still checks. ``redact`` appends
one ``session.redacted`` event naming the seqs and the reason, then has the backend swap
the records' lines for their tombstones' and erase the old bytes (see
``Backend.redact``). A crash between the two leaves a redaction event whose seqs still
hold their data: ``verify`` reports it, and running the redaction again finishes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from ..backends._base import Lines, Replacement
from ..core._codec import (
    SUFFIX_LEN,
    ChainReader,
    data_digest,
    data_span,
    encode_payload,
    link,
    tombstone_digest,
)
from ..core._errors import InvalidEventError, RedactionError
from ..core._records import Event
from ..core._validate import check_text
from . import _catalog
from ._state import FORKED
from ._state import REDACTED as REDACTED  # re-exported: the event's name lives with the fold

if TYPE_CHECKING:
    from ._log import EventLog

MOST_SEQS = 100_000
"""Seqs one call may redact: the redaction event names them all."""


def redact(log: EventLog, sid: str, seqs: Iterable[int], reason: str) -> Event:
    """``EventLog.redact``: see its docstring."""
    if log.version == 1:
        raise RedactionError(f"session {sid!r}: the store is of format version 1, whose chain "
                             "covers the data itself, so no event of it can be redacted; move it "
                             "to version 2 with eventlog copy")
    check_text("reason", reason)
    wanted = _checked_seqs(seqs)
    found = _read_targets(log, sid, wanted)
    ts = time.time()
    data = {"seqs": wanted, "reason": reason}
    record = log._append_payloads(sid, [encode_payload(REDACTED, ts, data)], None, "fsync",
                                  [(REDACTED, ts, data)])[0]
    replacements = [_tombstoned(seq, prev, line, reason, record.seq) for seq, (prev, line)
                    in sorted(found.items())]
    log.backend.redact(sid, replacements, durable=True)
    # What this process folded or read of the session saw the erased data.
    log._folding.forget(sid)
    # The catalog's entry of the session named the erased senders: a fresh one replaces it
    # (the backend's redact dropped the old one where entries pile up, as in a file store).
    state = log._state(sid)
    if not state.unerased:
        _catalog.save(log, [_catalog.fresh_entry(sid, state)])
    return Event(record.seq, REDACTED, ts, data)


def _checked_seqs(seqs: Iterable[int]) -> list[int]:
    if isinstance(seqs, (str, bytes, dict)) or not isinstance(seqs, Iterable):
        raise RedactionError(f"seqs must be a list of seqs, not {type(seqs).__name__}")
    wanted = list(seqs)
    if not wanted:
        raise RedactionError("nothing to redact: seqs is empty")
    if len(wanted) > MOST_SEQS:
        raise RedactionError(f"at most {MOST_SEQS} seqs per redaction, not {len(wanted)}")
    for seq in wanted:
        if type(seq) is not int or seq < 1:
            raise RedactionError(f"a seq is a positive int, not {seq!r}")
    if len(set(wanted)) != len(wanted):
        raise RedactionError("a seq is listed twice")
    return sorted(wanted)


def _read_targets(log: EventLog, sid: str, wanted: list[int]) -> dict[int, tuple[str, bytes]]:
    """Each wanted seq's line and the digest before it, read through the chain check;
    ``RedactionError`` for a seq the session does not hold, a ``session.*`` event, or one
    already redacted."""
    todo = set(wanted)
    found: dict[int, tuple[str, bytes]] = {}
    scan = log.backend.scan(sid, wanted[0] - 1, None)
    chain = ChainReader(sid, scan.start, log.version)
    last: list[bytes] = []
    prev = chain.digest
    events = chain.read(_tap(scan.lines, last))
    try:
        for event in events:
            if event.seq in todo:
                if event.type.startswith("session."):
                    raise RedactionError(f"session {sid!r}, seq {event.seq}: a {event.type} "
                                         "event is the store's own and can't be redacted")
                if tombstone_digest(event.data) is not None:
                    raise RedactionError(f"session {sid!r}, seq {event.seq}: already redacted")
                found[event.seq] = (prev, last[0].removesuffix(b" "))
                todo.discard(event.seq)
                if not todo:
                    break
            prev = chain.digest
    finally:
        getattr(events, "close", lambda: None)()
    if todo:
        raise RedactionError(f"session {sid!r} holds no seq {min(todo)} (it ends at seq "
                             f"{chain.seq})")
    return found


def _tap(lines: Lines, last: list[bytes]) -> Iterator[tuple[str, int, bytes]]:
    # ChainReader yields each event right after taking its line.
    for item in lines:
        last[:] = [item[2]]
        yield item


def _tombstoned(seq: int, prev: str, line: bytes, reason: str, by: int) -> Replacement:
    """The replacement of ``line`` by its tombstone's line, checked to keep its digest."""
    body = line[:-SUFFIX_LEN] + b"}"
    start, end = data_span(body)
    tomb = orjson.dumps({"redacted": {"reason": reason, "seq": by,
                                      "sha256": data_digest(body[start:end])}})
    new = line[:start] + tomb + line[end:]
    digest = line[-SUFFIX_LEN + 6:-2].decode()
    if link(prev, new[:-SUFFIX_LEN] + b"}", 2) != digest:  # never: the rule guarantees it
        raise RedactionError(f"seq {seq}: its tombstone would not keep its digest")
    return Replacement(seq, line, new)


class RedactionAudit:
    """Checks, event by event, that tombstones and redaction events agree: each tombstone
    is named by the redaction event it points to (with its reason), and each seq a
    redaction event names holds a tombstone (of it, or of a later redaction)."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.tombstones: dict[int, tuple[int, str]] = {}
        self.unnamed: set[int] = set()
        self.problems: list[str] = []

    def see(self, event: Event) -> None:
        data: Any = event.data
        if type(data) is dict and "redacted" in data and tombstone_digest(data) is not None:
            inner = data["redacted"]
            self.tombstones[event.seq] = (inner["seq"], inner["reason"])
            self.unnamed.add(event.seq)
        if event.type == FORKED:
            # A fork copies the source's records up to its seq as they were: a tombstone of
            # a redaction the source made after that seq is named by no event of the fork.
            self.unnamed -= {seq for seq in self.unnamed if self.tombstones[seq][0] > event.seq - 1}
        if event.type != REDACTED:
            return
        seqs = data.get("seqs") if type(data) is dict else None
        if type(seqs) is not list or type(data.get("reason")) is not str:
            self.problems.append(f"session {self.sid!r}, seq {event.seq}: a {REDACTED} event "
                                 "without seqs and reason")
            return
        for seq in seqs:
            tomb = self.tombstones.get(seq)
            if tomb is None:
                self.problems.append(
                    f"session {self.sid!r}, seq {seq}: named by the redaction at seq "
                    f"{event.seq}, but still holds its data (an interrupted redact: run it again)")
            elif tomb == (event.seq, data["reason"]):
                self.unnamed.discard(seq)
            elif tomb[0] == event.seq:
                self.problems.append(f"session {self.sid!r}, seq {seq}: its tombstone's reason is "
                                     f"not the one of the redaction at seq {event.seq}")

    def finish(self) -> list[str]:
        return self.problems + [
            f"session {self.sid!r}, seq {seq}: a tombstone that the redaction event it names "
            f"(seq {self.tombstones[seq][0]}) does not name" for seq in sorted(self.unnamed)]


def check_imported(sid: str, events: Iterable[Event]) -> Iterator[Event]:
    """Pass imported events through, then refuse the import (``InvalidEventError``, so it is
    removed again) if its tombstones and redaction events don't agree."""
    audit = RedactionAudit(sid)
    for event in events:
        if isinstance(event, Event):  # anything else is refused by the import's own checks
            audit.see(event)
        yield event
    problems = audit.finish()
    if problems:
        raise InvalidEventError(f"the imported history's redactions don't check: {problems[0]}")
