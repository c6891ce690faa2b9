"""The record format and its digest chain, shared by every backend.

A record is one JSON object on one line::

    {"seq":7,"type":"message","ts":1732233600.5,"data":{...},"h":"<32 hex>"}

The ``"h"`` member is always last and always 32 hex digits, so the bytes it covers
(the *body*: the line with ``,"h":"..."`` cut out) can be sliced out without
re-encoding. ``prev_h`` is the previous record's ``h`` and, for seq 1, a genesis
value derived from the session id, so records can't be moved between sessions
unnoticed. Editing, dropping, reordering or flipping a bit in any record breaks the
chain at that record.

Format version 1: ``h = sha256(prev_h + body)[:32 hex]``: the chain covers the data itself.

Format version 2: ``h = sha256(prev_h + chain_body)[:32 hex]``, where the *chain body* is
the body with the data's bytes replaced by the JSON string of their SHA-256 (64 hex). So
the chain covers a hash of the data, and the digest survives the data: a redacted record
holds a *tombstone* in its place (``{"redacted":{"reason":..,"seq":..,"sha256":..}}``)
whose ``sha256`` stands in for the bytes that are gone. A store is of one version (see
``Backend.record_version``); every record of it follows that version's rule.
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
FORMAT_VERSION = 2
"""The record format new stores are written in."""
FORMAT_VERSIONS = (1, 2)
"""Every record format this eventlog reads (and writes, in stores of that version)."""
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


_DATA = b',"data":'
_DATA_LEN = len(_DATA)
_TOMB = b'{"redacted":{'
_TOMB_LEN = len(_TOMB)
_TOMB_KEYS = ("reason", "seq", "sha256")
DATA_MEMBER = _DATA
"""What precedes a record's (or a payload's) data: the first such bytes are the member's."""
TOMB_START = _TOMB
"""How a tombstone's bytes start (see ``tombstone_digest``)."""
_HEX = frozenset("0123456789abcdef")


def tombstone_digest(data: Any) -> str | None:
    """The data digest a tombstone stands in for, or None if ``data`` is not a tombstone:
    an object with the single member ``redacted``, an object of exactly ``reason`` (a
    string), ``seq`` (an integer) and ``sha256`` (64 lowercase hex digits)."""
    if type(data) is not dict or len(data) != 1:
        return None
    inner = data.get("redacted")
    if type(inner) is not dict or tuple(sorted(inner)) != _TOMB_KEYS:
        return None
    digest = inner["sha256"]
    if (type(inner["reason"]) is not str or type(inner["seq"]) is not int
            or type(digest) is not str or len(digest) != 64 or not _HEX.issuperset(digest)):
        return None
    return digest


def is_tombstone(data: Any) -> bool:
    return tombstone_digest(data) is not None


def data_digest(raw: bytes) -> str:
    """What the version 2 chain covers in place of a record's data bytes ``raw``: their
    SHA-256, or the one a tombstone stands in for."""
    if raw.startswith(_TOMB):
        try:
            stated = tombstone_digest(_loads(raw))
        except orjson.JSONDecodeError:
            stated = None
        if stated is not None:
            return stated
    return _sha256(raw).hexdigest()


def data_span(body: bytes) -> tuple[int, int]:
    """Where a body's data value starts and ends. The first ``,"data":`` is the member's:
    ``seq`` and ``ts`` are numbers and ``type`` a string, in which a bare ``"`` can't
    stand. Members after ``data`` (none so far) are found by encoding them again."""
    start = body.find(_DATA) + _DATA_LEN
    if start < _DATA_LEN:
        raise Unparseable("no data member")
    try:
        obj = _loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unparseable(str(exc)) from None
    if type(obj) is not dict or "data" not in obj:
        raise Unparseable("not a record object")
    keys = list(obj)
    tail = b"".join(b",%s:%s" % (orjson.dumps(key), orjson.dumps(obj[key]))
                    for key in keys[keys.index("data") + 1:] if key != "h") + b"}"
    if not body.endswith(tail) or len(body) - len(tail) <= start:
        raise Unparseable("the members after data are not as written")
    return start, len(body) - len(tail)


def chain_body(body: bytes) -> bytes:
    """The bytes the version 2 chain hashes for a record of ``body``."""
    start, end = data_span(body)
    return b'%s"%s"%s' % (body[:start], data_digest(body[start:end]).encode(), body[end:])


def link(prev_digest: str, body: bytes, version: int) -> str:
    """The ``h`` of a record of ``body`` after one whose ``h`` is ``prev_digest`` ("" for a
    version 2 body whose data can't be found: it links to nothing)."""
    if version != 1:
        try:
            body = chain_body(body)
        except Unparseable:
            return ""
    return _sha256(prev_digest.encode() + body).hexdigest()[:DIGEST_HEX]


def line_links(prev_digest: str, line: bytes, version: int) -> bool:
    """Whether a whole record ``line`` ends as a record does and states the ``h`` that
    ``link`` gives it after a record whose ``h`` is ``prev_digest``.

    Tried first the way replay's hot loop takes it (``ChainReader.read_chunks``): the data
    as the last member but ``h``, found at the first ``,"data":``. That is so of every
    record eventlog writes but a keyed or redacted one (whose quick digest differs), which
    the careful ``link`` then decides (a parse, and the members after the data encoded
    again: about 16k instructions more under callgrind). A line of other members' order,
    which no writer makes, could pass the quick way and not the careful one, as it passes
    replay's and verify's (whose reader takes the same quick way)."""
    if line[-SUFFIX_LEN:-DIGEST_HEX - 2] != _SUFFIX_OPEN:
        return False  # not a record line (see parse)
    stated = line[-DIGEST_HEX - 2:-2]
    if version != 1:
        before, _, after = line.partition(_DATA)
        quick = _sha256(b'%s%s,"data":"%s"}' % (
            prev_digest.encode(), before, _sha256(after[:-SUFFIX_LEN]).hexdigest().encode(),
        )).hexdigest()[:DIGEST_HEX]
        if quick.encode() == stated:
            return True
    return link(prev_digest, line[:-SUFFIX_LEN] + b"}", version).encode() == stated


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


def seal_one(payload: bytes, head: Head, max_bytes: int, version: int = FORMAT_VERSION,
             chain: bytes | None = None) -> Record:
    """Number and chain one pre-encoded payload after ``head``. Runs under the lock, once per
    appended event, so it is kept to one hash and two byte formats: ``chain`` is the
    payload's ``payload_chain`` (computed here if None; a caller may compute it before
    taking its lock, and version 1 never needs it)."""
    seq = head[0] + 1
    if version == 1:
        chain = payload[1:]
    elif chain is None:
        chain = payload_chain(payload)
    digest = _sha256(b'%s{"seq":%d,%s' % (head[1].encode(), seq, chain)).hexdigest()[:DIGEST_HEX]
    line = b'{"seq":%d,%s,"h":"%s"}' % (seq, payload[1:-1], digest.encode())
    if len(line) >= max_bytes:  # the line and its newline must fit
        raise too_large(len(line) + 1, max_bytes)
    return _new_tuple(Record, (seq, digest, line))


_KEY_MEMBER = b',"k":"'


def payload_chain(payload: bytes) -> bytes:
    """What the version 2 chain hashes of a record of ``payload`` (an ``encode_payload``
    result) after its ``{"seq":N,``: the rest of the chain body, the payload without its
    ``{`` and with its data bytes replaced by the data hash. Found without parsing, from
    what encode_payload writes, ``{"type":T,"ts":N,"data":D}`` or ``{..,"data":D,"k":K}``
    (T and K strings): the data starts after the first ``,"data":`` (see ``data_span``),
    and ends before the payload's ``}``, or before its ``"k"`` member, which it has only
    if it ends in ``"}`` (D alone ends so only as a string). That member is then the last
    ``,"k":"`` in the payload: in compact JSON those bytes stand only as an object member
    named ``k`` holding a string (a ``"`` inside a string is always escaped), and D's own
    members come before it. No hashing or encoding happens under the append lock."""
    start = payload.find(_DATA) + _DATA_LEN
    end = len(payload) - 1
    if payload[-2:] == b'"}':
        keyed = payload.rfind(_KEY_MEMBER, start)
        if keyed > 0:
            end = keyed
    raw = payload[start:end]
    digest = data_digest(raw) if raw[:_TOMB_LEN] == _TOMB else _sha256(raw).hexdigest()
    return b'%s"%s"%s' % (payload[1:start], digest.encode(), payload[end:])


def too_large(size: int, max_bytes: int) -> EventTooLargeError:
    return EventTooLargeError(f"event of {size} bytes is over the store's limit of {max_bytes} bytes")


def seal(payloads: Iterable[bytes], head: Head, max_bytes: int,
         version: int = FORMAT_VERSION, chains: list[bytes] | None = None) -> list[Record]:
    """Number and chain pre-encoded payloads after ``head`` (``chains``: their
    ``payload_chain``, if the caller computed them before taking its lock). ``seal_one``
    for each, inlined: a batch of imports or messages runs it once per event."""
    seq, prev = head
    records = []
    sha = _sha256
    for index, payload in enumerate(payloads):
        seq += 1
        chain = (payload[1:] if version == 1 else
                 payload_chain(payload) if chains is None else chains[index])
        prev = sha(b'%s{"seq":%d,%s' % (prev.encode(), seq, chain)).hexdigest()[:DIGEST_HEX]
        line = b'{"seq":%d,%s,"h":"%s"}' % (seq, payload[1:-1], prev.encode())
        if len(line) >= max_bytes:  # the line and its newline must fit
            raise too_large(len(line) + 1, max_bytes)
        records.append(_new_tuple(Record, (seq, prev, line)))
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

    __slots__ = ("digest", "seq", "session_id", "torn_at", "version")

    def __init__(self, session_id: str, head: Head, version: int) -> None:
        self.session_id = session_id
        self.seq = head.seq
        self.digest = head.digest
        self.torn_at: tuple[str, int] | None = None
        self.version = version

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
        v2 = self.version != 1
        data_key = _DATA
        for source, first, lines, objs in _decoded_runs(chunks):
            seq = self.seq
            prev = self.digest.encode()
            whole = self.torn_at is None  # after a torn line, each readable one is an error
            for index, line in enumerate(lines):
                # The line's end is checked whole, ``"}`` too, in the one comparison of its
                # last SUFFIX_LEN bytes with the digest's: a run's objects are known to be its
                # lines' only where each line ends its object (see _decoded_runs), and a line
                # not so ended (or not a record) fails that test, or an earlier one here.
                if whole:
                    try:
                        obj = loads(line) if objs is None else objs[index]
                        if type(obj) is dict and len(obj) == 5:
                            fields = pick(obj)  # KeyError if one is missing
                            if fields[0] == seq + 1:
                                if v2:
                                    # link(), version 2, inlined: a record's data is its last
                                    # member but h here (len(obj) == 5), and the first
                                    # ``,"data":`` is the member's (see data_span). A tombstone
                                    # (or no data member) does not match here and goes the
                                    # careful way, _read_line, which tells them apart.
                                    # (partition, not find and two slices: find parses its
                                    # arguments; 1k fewer instructions per record.)
                                    before, _, after = line.partition(data_key)
                                    digest = sha(b'%s%s,"data":"%s"}' % (
                                        prev, before,
                                        sha(after[:-SUFFIX_LEN]).hexdigest().encode(),
                                    )).hexdigest()[:DIGEST_HEX]
                                else:
                                    digest = sha(prev + line[:-SUFFIX_LEN] + b"}").hexdigest()[:DIGEST_HEX]
                                prev = digest.encode()
                                if line[-SUFFIX_LEN:] == b'%s%s"}' % (suffix_open, prev):
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
        if link(self.digest, line[:-SUFFIX_LEN] + b"}", self.version) != digest:
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
