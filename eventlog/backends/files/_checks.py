"""Damage checks of a session's segment structure (``FileBackend.check``): names, headers and
trailers continuing each other across segments, a plain segment and its archive holding the
same bytes, and each archive's own integrity (see ``ArchiveReader.check``). The records
themselves are checked by the store, which reads them through ``scan``.
"""

from __future__ import annotations

import hashlib
import mmap
import os

import orjson

from ...core._codec import Head, genesis
from ...core._errors import CorruptLogError
from ...core._frames import TRAILER
from ._archive import ArchiveError, read_index
from ._dirs import O_CLOEXEC, Dirs, Source
from ._segments import archive_name, parse_header, parse_trailer, segment_name

_TRAILER_START = b"\n" + TRAILER


def check(dirs: Dirs, session_id: str) -> list[str]:
    problems: list[str] = []
    listing = sorted(dirs.listing(session_id).items())
    if dirs.lockless(session_id):
        problems.append(str(dirs.lock_damage(session_id)))
    previous = genesis(session_id)
    for i, (first, (plain, archived)) in enumerate(listing):
        names = ([segment_name(first)] if plain else []) + ([archive_name(first)] if archived else [])
        for name in names:
            where = f"session {session_id!r}, {name}"
            try:
                source = dirs.open_read(session_id, first, name)
            except FileNotFoundError:
                continue  # archived (the plain name) or the session deleted meanwhile
            except CorruptLogError as exc:
                problems.append(str(exc))
                continue
            try:
                found = _check_segment(source, first, previous, i == len(listing) - 1)
                found[:0] = _header_problems(source, session_id, dirs.record_version)
                problems.extend(f"{where}: {problem}" for problem in found)
            except CorruptLogError as exc:
                problems.append(str(exc))
            finally:
                source.close()
        if plain and archived and not _twins_agree(dirs, session_id, first):
            problems.append(f"session {session_id!r}, {segment_name(first)}: differs from "
                            f"its archive {archive_name(first)}")
        previous = Head(-1, "")  # unknown until a trailer is read
        if names:
            trailer = _trailer(dirs, session_id, first)
            if trailer is not None:
                previous = trailer
    return problems


def _check_segment(source: Source, first: int, previous: Head, newest: bool) -> list[str]:
    problems = []
    if source.archive is not None:
        problems.extend(source.archive.check(first, os.fstat(source.fd).st_size))
    header = parse_header(source.pread(source.fd, 4096, 0).split(b"\n", 1)[0])
    if header is None or header.seq + 1 != first:
        problems.append("header missing or does not match the file name")
    elif previous.seq >= 0 and header != previous:
        problems.append(f"header (after seq {header.seq}) does not continue the previous "
                        f"segment, sealed at seq {previous.seq}")
    last_start, last = next(source.backward(), (0, b""))
    if not newest and parse_trailer(last) is None:
        problems.append("not the newest segment, but not sealed")
    if source.archive is None:  # an archive's own check refuses lines after its trailer
        # Only whole lines count: a torn tail (a trailer cut short by a full disk, say) is
        # what readers skip and the next writer cuts away, not a line after the trailer.
        first_trailer = _first_trailer(source, last_start + len(last) + 1)
        if first_trailer is not None and first_trailer != last_start:
            problems.append(f"lines after its trailer (at byte {first_trailer}): no reader sees them")
    return problems


_HEADER_KEYS = ["eventlog", "session", "first_seq", "prev"]


def _header_problems(source: Source, session_id: str, version: int) -> list[str]:
    """What a header says beyond where the log starts (``_check_segment`` checks that): the
    store's format version and this session, with the spec's members in the spec's order.
    Readers need only ``first_seq`` and ``prev``, so a header naming another version or
    session read back as if intact, and only this check sees it."""
    try:
        header = orjson.loads(source.pread(source.fd, 4096, 0).split(b"\n", 1)[0])
    except orjson.JSONDecodeError:
        return []  # no header at all: ``_check_segment`` says so
    if not isinstance(header, dict) or list(header) != _HEADER_KEYS:
        return ["header is not the format's (its members are not eventlog, session, "
                "first_seq, prev)"]
    problems = []
    found = header["eventlog"]
    if type(found) is not int or found != version:
        problems.append(f"header names format version {found!r}, but the store is version {version}")
    if header["session"] != session_id:
        problems.append(f"header names session {header['session']!r}, not this one")
    return problems


def _first_trailer(source: Source, end: int) -> int | None:
    """Where the segment's first trailer line starts, among its whole lines (those before
    byte ``end``), or None. Readers stop at the first trailer, so a line after it (a second
    trailer, records) is hidden from every read and from the record checks: only this
    search sees it. A record line starts with ``{"seq":``, and JSON escapes newlines inside
    strings, so the bytes below only ever begin a trailer."""
    if source.size == 0:
        return None
    with mmap.mmap(source.fd, source.size, access=mmap.ACCESS_READ) as view:
        found = view.find(_TRAILER_START, 0, min(end, source.size))
    return None if found < 0 else found + 1


def _twins_agree(dirs: Dirs, session_id: str, first: int) -> bool:
    directory = dirs.dir(session_id)
    try:
        digest = hashlib.sha256()
        with open(directory / segment_name(first), "rb") as plain:
            while chunk := plain.read(1 << 20):
                digest.update(chunk)
        fd = os.open(directory / archive_name(first), os.O_RDONLY | O_CLOEXEC)
    except FileNotFoundError:
        return True  # the twin was removed meanwhile
    try:
        return read_index(fd).sha256 == digest.digest()
    except ArchiveError:
        return False
    finally:
        os.close(fd)


def _trailer(dirs: Dirs, session_id: str, first: int) -> Head | None:
    try:
        source = dirs.open_read(session_id, first)
    except (FileNotFoundError, CorruptLogError):
        return None
    try:
        last = next(source.backward(), (0, b""))[1]
        return parse_trailer(last)
    except CorruptLogError:
        return None
    finally:
        source.close()
