"""The record format and its digest chain, shared by every backend.

A record is one JSON object on one line::

    {"seq":7,"type":"message","ts":1732233600.5,"data":{...},"h":"<32 hex>"}

The ``"h"`` member is always last and always 32 hex digits, so the bytes it covers
(the *body*: the line with ``,"h":"..."`` cut out) can be sliced out without
re-encoding, and a reader checks a record with one SHA-256 and no second
serialisation. ``h = sha256(prev_h + body)[:32 hex]``, where ``prev_h`` is the
previous record's ``h`` and, for seq 1, a genesis value derived from the session
id, so records can't be moved between sessions unnoticed. Editing, dropping,
reordering or flipping a bit in any record breaks the chain at that record.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson

from ._errors import CorruptLogError, EventTooLargeError, InvalidEventError
from ._records import Event, keyed_event

DIGEST_HEX = 32
_SUFFIX_OPEN = b',"h":"'
SUFFIX_LEN = len(_SUFFIX_OPEN) + DIGEST_HEX + 2  # ,"h":"<hex>"}
# Objects orjson would encode on its own (dataclasses, datetimes, str/int/dict subclasses) go to
# ``default``, which refuses them: stored data is plain JSON or nothing.
_DUMPS_OPTS = (orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
               | orjson.OPT_PASSTHROUGH_SUBCLASS)
_RECORD_KEYS = frozenset(("seq", "type", "ts", "data", "h"))
_KEYED_RECORD_KEYS = frozenset(("seq", "type", "ts", "data", "k", "h"))
_sha256 = hashlib.sha256
_loads = orjson.loads
# Builds a NamedTuple (Event, Record) without the keyword handling of its generated __new__.
new_event = _new_tuple = tuple.__new__
# An event's fields from its record object in one C call (KeyError if one is missing).
_EVENT_FIELDS = operator.itemgetter("seq", "type", "ts", "data")


class Head(NamedTuple):
    """Where a session's chain ends: the last seq and its digest (``seq`` 0: the genesis).

    NamedTuples (here and for ``Record``): every append builds and compares a few,
    and a frozen dataclass costs several times as much to build and compare."""

    seq: int
    digest: str


def genesis(session_id: str) -> Head:
    return Head(0, _sha256(b"eventlog/1\0" + session_id.encode()).hexdigest()[:DIGEST_HEX])


def link(prev_digest: str, body: bytes) -> str:
    return _sha256(prev_digest.encode() + body).hexdigest()[:DIGEST_HEX]


def _refuse(obj: object) -> None:
    raise InvalidEventError(f"{type(obj).__name__} is not plain JSON")


def encode_payload(event_type: str, ts: float, data: Any, key: str | None = None) -> bytes:
    """Encode everything but the seq, outside any lock: ``{"type":..,"ts":..,"data":..}``,
    and ``"k":..`` after the data for an event appended with an idempotency key (so the
    record's digest covers it, and it is never part of the data)."""
    obj = {"type": event_type, "ts": ts, "data": data}
    if key is not None:
        obj["k"] = key
    try:
        return orjson.dumps(obj, default=_refuse, option=_DUMPS_OPTS)
    except InvalidEventError:
        raise
    except (TypeError, orjson.JSONEncodeError) as exc:
        # Lone surrogates, integers past 64 bits, nesting past orjson's limit.
        raise InvalidEventError(f"event data can't be stored as JSON: {exc}") from exc


class Record(NamedTuple):
    """An encoded record ready to store: its seq, digest and line (no newline)."""

    seq: int
    digest: str
    line: bytes


def seal_one(payload: bytes, head: Head, max_bytes: int) -> Record:
    """Number and chain one pre-encoded payload after ``head``. Runs under the lock, once per
    appended event, so it is kept to one hash and two byte formats."""
    seq = head[0] + 1
    body = b'{"seq":%d,' % seq + payload[1:]
    digest = _sha256(head[1].encode() + body).hexdigest()[:DIGEST_HEX]
    line = b'%s,"h":"%s"}' % (body[:-1], digest.encode())
    if len(line) >= max_bytes:  # the line and its newline must fit
        raise too_large(len(line) + 1, max_bytes)
    return _new_tuple(Record, (seq, digest, line))


def too_large(size: int, max_bytes: int) -> EventTooLargeError:
    return EventTooLargeError(f"event of {size} bytes is over the store's limit of {max_bytes} bytes")


def seal(payloads: Iterable[bytes], head: Head, max_bytes: int) -> list[Record]:
    """Number and chain pre-encoded payloads after ``head``."""
    records = []
    for payload in payloads:
        record = seal_one(payload, head, max_bytes)
        records.append(record)
        head = _new_tuple(Head, (record.seq, record.digest))
    return records


class Unparseable(Exception):
    """A line that is not a record at all (a torn write, garbage, NUL bytes)."""


_TRAILER_START = b'{"sealed":'


def looks_like_record(line: bytes) -> bool:
    """Whether a whole line was written as a record: it starts or ends like one.

    A torn write never leaves such a line behind: a write cut short lacks its final
    newline, and the members of a cut batch end in a space. So a record-shaped line
    that can't be read is damage, even at the very end of a log; one bit flip leaves
    either its start or its end intact. (Segment trailers end like records too.)
    """
    if type(line) is not bytes:
        return True  # a backend handed over something no writer of ours stored: damage
    return line.startswith(b'{"seq":') or (
        line[-SUFFIX_LEN:-DIGEST_HEX - 2] == _SUFFIX_OPEN and not line.startswith(_TRAILER_START))


def parse(line: bytes) -> tuple[dict[str, Any], bytes, str]:
    """Split a line into its decoded object, its body and its stated digest."""
    if len(line) <= SUFFIX_LEN or line[-SUFFIX_LEN:-DIGEST_HEX - 2] != _SUFFIX_OPEN:
        raise Unparseable("not a record line")
    try:
        obj = _loads(line)
    except orjson.JSONDecodeError as exc:
        raise Unparseable(str(exc)) from None
    if type(obj) is not dict or (obj.keys() != _RECORD_KEYS and (
            obj.keys() != _KEYED_RECORD_KEYS or type(obj["k"]) is not str)):
        raise Unparseable("not a record object")
    return obj, line[:-SUFFIX_LEN] + b"}", line[-DIGEST_HEX - 2:-2].decode("ascii", "replace")


def to_event(obj: dict[str, Any]) -> Event:
    """The event of a parsed record (see ``parse``), a ``KeyedEvent`` if it has a key."""
    return keyed_event(obj["seq"], obj["type"], obj["ts"], obj["data"], obj.get("k"))


class ChainReader:
    """Checks records in order against the chain and turns them into events.

    Lines come as ``(source, line number, line)``. Unreadable lines are held back:
    if nothing readable follows them they are a torn tail and ignored; a readable
    record after an unreadable line is corruption. ``head`` is where the chain
    stands after the last record read.
    """

    __slots__ = ("digest", "seq", "session_id", "torn_at")

    def __init__(self, session_id: str, head: Head) -> None:
        self.session_id = session_id
        self.seq = head.seq
        self.digest = head.digest
        self.torn_at: tuple[str, int] | None = None

    @property
    def head(self) -> Head:
        """Where the chain stands: the last record read (or the start)."""
        return Head(self.seq, self.digest)

    def corrupt(self, message: str, source: str, lineno: int, seq: object) -> CorruptLogError:
        where = f"{source} line {lineno}"
        return CorruptLogError(f"session {self.session_id!r}, {where}, seq {seq}: {message}",
                               session_id=self.session_id,
                               seq=seq if isinstance(seq, int) else None, where=where)

    def read(self, lines: Iterable[tuple[str, int, bytes]]) -> Iterator[Event]:
        """Events from ``(source, line number, line)`` items."""
        return self.read_chunks((source, lineno, [line]) for source, lineno, line in lines)

    def read_chunks(self, chunks: Iterable[tuple[str, int, list[bytes]]]) -> Iterator[Event]:
        """Events from ``(source, first line number, lines)`` blocks: the replay hot loop.

        ``parse()`` and ``link()`` inlined by hand, the chain's place kept in locals and
        written back before each event is handed out (callers read ``head`` as they go).
        A line the fast loop can't take whole (torn, damaged, out of place) goes to
        ``_read_line``, which decides what it is exactly as it always did."""
        sha = _sha256
        loads = _loads
        build = new_event
        pick = _EVENT_FIELDS
        suffix_open = _SUFFIX_OPEN
        for source, first, lines, objs in _decoded_runs(chunks):
            seq = self.seq
            prev = self.digest.encode()
            whole = self.torn_at is None  # after a torn line, each readable one is an error
            for index, line in enumerate(lines):
                # The line's end is checked whole, ``"}`` too: a run's objects are known to
                # be its lines' only where each line ends its object (see _decoded_runs).
                if whole and line[-SUFFIX_LEN:-DIGEST_HEX - 2] == suffix_open and line[-2:] == b'"}':
                    try:
                        obj = loads(line) if objs is None else objs[index]
                        if type(obj) is dict and len(obj) == 5:
                            fields = pick(obj)  # KeyError if one is missing
                            if fields[0] == seq + 1:
                                digest = sha(prev + line[:-SUFFIX_LEN] + b"}").hexdigest()[:DIGEST_HEX]
                                prev = line[-DIGEST_HEX - 2:-2]
                                if digest.encode() == prev:
                                    seq = self.seq = fields[0]
                                    self.digest = digest
                                    yield build(Event, fields)
                                    continue
                    except (orjson.JSONDecodeError, KeyError):
                        pass
                # The run's objects are only known to be its lines' while every line before
                # was a whole record (see _decoded_runs): from here on, one at a time.
                objs = None
                found = self._read_line(source, first + index, line)
                seq = self.seq
                prev = self.digest.encode()
                whole = self.torn_at is None
                if found is not None:
                    yield found

    def _read_line(self, source: str, lineno: int, line: bytes) -> Event | None:
        """One line the fast loop in ``read_chunks`` did not take: its event, ``None`` for an
        unreadable line that may be a torn tail, or ``CorruptLogError``."""
        obj: Any = None
        if line[-SUFFIX_LEN:-DIGEST_HEX - 2] == _SUFFIX_OPEN:
            try:
                obj = _loads(line)
            except orjson.JSONDecodeError:
                pass
        try:
            # Five members, or six with a string "k" (an idempotency key): the fast loop in
            # read_chunks takes only the first kind, so every keyed record comes here.
            if type(obj) is not dict or not (len(obj) == 5 or (
                    len(obj) == 6 and type(obj.get("k")) is str)):
                raise KeyError
            seq = obj["seq"]
            event: Event = (new_event(Event, (seq, obj["type"], obj["ts"], obj["data"]))
                            if len(obj) == 5 else
                            keyed_event(seq, obj["type"], obj["ts"], obj["data"], obj["k"]))
        except KeyError:
            if looks_like_record(line):
                # Not a torn tail (see looks_like_record): damage, wherever it is.
                raise self.corrupt("a complete record can't be read", source, lineno,
                                   self.seq + 1) from None
            if self.torn_at is None:
                self.torn_at = (source, lineno)
            return None
        if self.torn_at is not None:
            raise self.corrupt("an unreadable record is followed by readable ones",
                               *self.torn_at, self.seq + 1)
        digest = line[-DIGEST_HEX - 2:-2].decode("ascii", "replace")
        if link(self.digest, line[:-SUFFIX_LEN] + b"}") != digest:
            raise self.corrupt("digest does not match: the record was altered, or one "
                               "before it is missing or out of order", source, lineno, seq)
        if seq != self.seq + 1:
            raise self.corrupt(f"expected seq {self.seq + 1}", source, lineno, seq)
        self.seq = seq
        self.digest = digest
        return event


_RUN = 128
"""Lines decoded by one ``orjson.loads``: a call per line costs about a fifth of the
decoding itself, and a run much longer keeps more decoded objects alive at once than
the garbage collector's youngest generation holds."""


def _decoded_runs(chunks: Iterable[tuple[str, int, list[bytes]]]
                  ) -> Iterator[tuple[str, int, list[bytes], list[Any] | None]]:
    """Chunks in runs of ``_RUN`` lines, each with its lines decoded by one ``orjson.loads``
    of them joined as a JSON array, or ``None`` if that fails (a line is not JSON, or not
    bytes), and the lines are decoded one by one.

    The objects are each line's only so long as every line before it in the run was
    taken whole: its digest covers all of it but the closing ``"}``, which is checked
    too, so it is a record as written, one complete JSON object, and the parser, in step
    at the run's start, reads exactly it and stands at the next separator. ``read_chunks``
    drops the objects at the first line it doesn't take: a damaged line can leave the
    array parseable with the lines after it decoded out of step (an object left open,
    closed by the next line)."""
    loads = _loads
    for source, first, lines in chunks:
        for start in range(0, len(lines), _RUN):
            run = lines if len(lines) <= _RUN else lines[start:start + _RUN]
            objs = None
            if len(run) > 1:
                try:
                    objs = loads(b"[" + b",".join(run) + b"]")
                except (orjson.JSONDecodeError, TypeError):
                    pass
                if objs is not None and len(objs) != len(run):
                    objs = None
            yield source, first + start, run, objs


def decode_line(line: bytes) -> dict[str, Any]:
    try:
        obj = _loads(line)
    except orjson.JSONDecodeError as exc:
        raise Unparseable(str(exc)) from None
    if type(obj) is not dict:
        raise Unparseable("not an object")
    return obj


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)
