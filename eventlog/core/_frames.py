"""The lines that frame a run of records: a header naming the head before the run's first
record, and a trailer naming the head the run is sealed at::

    {"eventlog":1,"session":"s1","first_seq":1,"prev":"<hex>"}   header
    {"sealed":9,"h":"<hex>"}                                    trailer

The file backend's segments use them, and so do the histories written outside any backend
(retention's ``archive_dir``, the CLI's export and import), which is why they live here in
the record format's layer rather than in the file backend.
"""

from __future__ import annotations

import hashlib

import orjson

from ._codec import DIGEST_HEX, SUFFIX_LEN, Head, genesis, payload_chain

HEADER = b'{"eventlog":'
TRAILER = b'{"sealed":'


def header_line(session_id: str, start: Head, version: int) -> bytes:
    return orjson.dumps({"eventlog": version, "session": session_id, "first_seq": start.seq + 1,
                         "prev": start.digest})


def trailer_line(head: Head) -> bytes:
    return orjson.dumps({"sealed": head.seq, "h": head.digest})


def parse_header(line: bytes) -> Head | None:
    """The head before a segment's first record, from its header line."""
    if not line.startswith(HEADER):
        return None
    try:
        obj = orjson.loads(line)
        return Head(int(obj["first_seq"]) - 1, str(obj["prev"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def header_version(line: bytes) -> int | None:
    """The format version a segment's header line names, or None."""
    if not line.startswith(HEADER):
        return None
    try:
        version = orjson.loads(line).get("eventlog")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return version if type(version) is int else None


def parse_trailer(line: bytes) -> Head | None:
    if not line.startswith(TRAILER):
        return None
    try:
        obj = orjson.loads(line)
        return Head(int(obj["sealed"]), str(obj["h"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def chain_reaches(session_id: str, runs: list[bytes], head: Head, version: int) -> bool:
    """Whether these runs (a session's segment files, whole and in order) hold a log whose
    records chain from the session's genesis to exactly ``head``, each digest checked, with
    nothing after it. False for anything else: another head, damage, a torn tail, a shape
    this quick check does not know; the caller then reads the log the thorough way (where
    a torn tail is not damage). Checks what a replay would, without making events:
    retention's test that a session it removes is not damaged."""
    seq, prev = 0, genesis(session_id).digest.encode()
    spaced = False
    for data in runs:
        lines = data.split(b"\n")
        if lines.pop() != b"":
            return False  # no newline at its end: a torn tail
        for number, raw in enumerate(lines):
            if not raw.startswith(b'{"seq":'):
                found = (parse_header(raw) if number == 0 else
                         parse_trailer(raw) if number == len(lines) - 1 else None)
                if spaced or found is None or found != (seq, prev.decode()):
                    return False
                continue
            line = raw.rstrip(b" ")
            spaced = len(line) != len(raw)  # a batch's member: its last must follow
            prefix = b'{"seq":%d,' % (seq + 1)
            if (not line.startswith(prefix) or line[-SUFFIX_LEN:-DIGEST_HEX - 2] != b',"h":"'
                    or line[-2:] != b'"}'):
                return False
            payload = b"{" + line[len(prefix):-SUFFIX_LEN] + b"}"
            chain = payload[1:] if version == 1 else payload_chain(payload)
            digest = hashlib.sha256(prev + prefix + chain).hexdigest()[:DIGEST_HEX].encode()
            if digest != line[-DIGEST_HEX - 2:-2]:
                return False
            seq, prev = seq + 1, digest
    return not spaced and seq == head.seq and prev.decode() == head.digest
