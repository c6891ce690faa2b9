"""The lines that frame a run of records: a header naming the head before the run's first
record, and a trailer naming the head the run is sealed at::

    {"eventlog":1,"session":"s1","first_seq":1,"prev":"<hex>"}   header
    {"sealed":9,"h":"<hex>"}                                    trailer

The file backend's segments use them, and so do the histories written outside any backend
(retention's ``archive_dir``, the CLI's export and import), which is why they live here in
the record format's layer rather than in the file backend.
"""

from __future__ import annotations

import orjson

from ._codec import Head

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
