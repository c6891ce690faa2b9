"""How a session id becomes the name of its directory in a file store, and back.

Any valid id (``core/_validate``: 1 to 255 characters, no control character, no lone
surrogate) gets a name that is safe everywhere: made only of ``a-z 0-9 _ - . ~ %``, so
no separator, no ``.``/``..``, no upper case (two ids never meet on a case-insensitive
file system such as macOS's or Windows'), no byte outside ASCII (nothing for a file
system to normalise), no Windows device name, no trailing dot, and at most 255 bytes.

- **Plain**: an id of ``a-z 0-9 _ - .`` that does not start or end with ``.`` and whose
  part before the first ``.`` is not a Windows device name (``con``, ``prn``, ``aux``,
  ``nul``, ``com1``-``com9``, ``lpt1``-``lpt9``) is its own name.
- **Escaped**: any other id is ``~`` followed by the id with each character of
  ``a-z 0-9 _ -`` kept and every other character written as its UTF-8 bytes, each as
  ``%`` and two lower-case hex digits (``Team`` -> ``~%54eam``, ``user:42`` ->
  ``~user%3a42``, ``..`` -> ``~%2e%2e``).
- **Long**: an escaped name over ``MAX_NAME`` bytes is cut to its first ``CUT`` bytes (at
  a whole escape) and ends with ``~`` and 16 hex digits of the id's BLAKE2b-64 digest;
  the directory then holds the id itself, in UTF-8, in the file ``id`` (written before
  the directory appears, like every file of a new session).
- **Legacy**: stores written before issue 15 named every directory by its id (ids were
  ``[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}``). Such a directory is still read as its id:
  for an id of that form whose name above differs (upper case, a trailing dot, a device
  name), a directory named by the id itself is used while it exists. Both layouts are
  read; nothing is renamed. New sessions always get the names above.

A name is never another id's: plain names hold no ``~`` or ``%``, escaped ones start with
``~`` (which no legacy name does), and the escaping is reversible.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from ...core._validate import LEGACY_ID_RE

MAX_NAME = 255
CUT = 200
ID_FILE = "id"
_PLAIN_RE = re.compile(r"[a-z0-9_-](?:[a-z0-9._-]*[a-z0-9_-])?")
_DEVICES = frozenset(["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(1, 10)]
                     + [f"lpt{i}" for i in range(1, 10)])
_ESCAPE_RE = re.compile(r"(?:[a-z0-9_-]|%[0-9a-f]{2})*")
_ESCAPED_RE = re.compile(r"[^a-z0-9_-]+")


def is_plain(session_id: str) -> bool:
    return (_PLAIN_RE.fullmatch(session_id) is not None and len(session_id) <= MAX_NAME
            and session_id.split(".", 1)[0] not in _DEVICES)


@lru_cache(maxsize=65536)
def dir_name(session_id: str) -> str:
    """The directory name of a (valid) session id in a store written by this release."""
    if is_plain(session_id):
        return session_id
    return _shortened(session_id, _escaped(session_id), MAX_NAME)


def file_name(session_id: str, most: int) -> str:
    """``dir_name``, or if that is over ``most`` bytes, a long name within them (for a
    file whose name adds a suffix, such as cleanup's ``<name>.jsonl``; the file holds the
    id itself)."""
    name = dir_name(session_id)
    return name if len(name) <= most else _shortened(session_id, _escaped(session_id), most)


def _escape_one(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02x}" for byte in match.group().encode("utf-8"))


def _escaped(session_id: str) -> str:
    # Every character outside ``a-z 0-9 _ -`` as its UTF-8 bytes in %xx (a regex: a listing of
    # many sessions checks each name's spelling with this).
    return "~" + _ESCAPED_RE.sub(_escape_one, session_id)


def _shortened(session_id: str, name: str, most: int) -> str:
    if len(name) <= most:
        return name
    cut = name[:min(CUT, most - 17)]
    percent = cut.rfind("%", len(cut) - 2)
    if percent != -1:
        cut = cut[:percent]  # never half an escape
    digest = hashlib.blake2b(session_id.encode("utf-8"), digest_size=8).hexdigest()
    return f"{cut}~{digest}"


def is_long(name: str) -> bool:
    """Whether ``name`` is a long name, whose id is in the directory's ``id`` file."""
    return name.startswith("~") and "~" in name[1:]


def legacy_name(session_id: str) -> str | None:
    """The name a store written before issue 15 gave this id, if it differs from today's."""
    if LEGACY_ID_RE.fullmatch(session_id) and dir_name(session_id) != session_id:
        return session_id
    return None


def id_of(name: str) -> str | None:
    """The session id of a directory name, or None if ``name`` is not a session's (a
    temporary or trashed directory, or anything else). A long name's id is in its ``id``
    file: this returns None for it, and the caller reads that file."""
    if name.startswith("~"):
        if is_long(name) or not _ESCAPE_RE.fullmatch(name, 1):
            return None
        return _unescape(name[1:])
    if is_plain(name):
        return name
    if LEGACY_ID_RE.fullmatch(name):
        return name  # a legacy directory
    return None


def _unescape(body: str) -> str | None:
    # ``body`` matched _ESCAPE_RE: kept characters, and %xx escapes of two hex digits.
    first, *rest = body.split("%")
    try:
        sid = (first.encode() + b"".join(bytes.fromhex(part[:2]) + part[2:].encode()
                                         for part in rest)).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return sid if dir_name(sid) == "~" + body else None  # only the one spelling of an id
