"""Retention: remove (or move aside) sessions whose last activity is older than N days.

Last activity is the newest event timestamp, so imported history with old timestamps
ages by its own clock. A session is removed with ``Backend.delete(if_head=...)``: if
anything was appended after its age was judged, the delete is refused and the session
stays whole, so retention never removes half of an active session.

``archive_dir`` keeps each removed session's history as one JSONL file in the format
of a sealed segment (header, records with their digests, trailer), written and synced
*before* the session is deleted: a crash in between leaves a copy too many, never one
too few.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends._base import Lines
from ..backends.files._segments import header_line, trailer_line
from ..core._codec import ChainReader, Head, genesis
from ..core._errors import (
    CorruptLogError,
    InvalidInputError,
    LockTimeoutError,
    SessionNotFoundError,
    StorageError,
)
from ..core._validate import finite, shown

if TYPE_CHECKING:
    from ._log import EventLog

DAY = 86400.0
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def cleanup_old_sessions(log: EventLog, days: float, archive_dir: str | os.PathLike[str] | None,
                         dry_run: bool) -> list[str]:
    if type(days) not in (int, float) or not finite(days) or days < 0:
        raise InvalidInputError(f"days must be a non-negative number, not {shown(days)}")
    if type(dry_run) is not bool:
        raise InvalidInputError(f"dry_run must be a bool, not {dry_run!r}")
    target = None if archive_dir is None else Path(archive_dir)
    cutoff = time.time() - days * DAY
    removed = []
    for sid in log.backend.session_ids():
        try:
            state = log._state(sid)
        except SessionNotFoundError:
            continue
        except CorruptLogError:
            continue  # never destroy a log that can't be read: verify() reports it
        if state.last_activity >= cutoff:
            continue
        if dry_run or _remove(log, sid, state.head, target):
            removed.append(sid)
    return removed


def _remove(log: EventLog, sid: str, head: Head, target: Path | None) -> bool:
    exported = None if target is None else export_history(log, sid, head, target)
    try:
        gone = log.backend.delete(sid, if_head=head)
    except (SessionNotFoundError, LockTimeoutError):
        gone = False  # someone else removed it meanwhile, or holds it: the next run decides
    except BaseException:
        if exported is not None:
            _discard(exported)
        raise
    if not gone and exported is not None:
        _discard(exported)  # appended to meanwhile: it stays, so its copy goes
    return gone


def _discard(exported: Path) -> None:
    """Remove an archived copy of a session that stays. If that fails too, a copy too many
    is left, never one too few: the error that matters is the one being raised (an OSError
    here replaced the StorageError of the delete that had failed)."""
    try:
        exported.unlink(missing_ok=True)
    except OSError:
        pass


def _tap(lines: Lines, last: list[bytes]) -> Lines:
    # ChainReader yields each event right after taking its line, so ``last`` holds the
    # line of the event just yielded.
    for item in lines:
        last[:] = [item[2]]
        yield item


def _history(log: EventLog, sid: str, head: Head) -> Iterator[bytes]:
    """The session's record lines up to ``head``, each checked against the chain."""
    scan = log.backend.scan(sid, 0, None)
    chain = ChainReader(sid, scan.start, log.version)
    if scan.start != genesis(sid):
        raise CorruptLogError(f"session {sid!r}: the log does not start at its genesis",
                              session_id=sid)
    last: list[bytes] = []
    events = chain.read(_tap(scan.lines, last))
    try:
        for event in events:
            yield last[0]
            if event.seq == head.seq:
                break
    finally:
        # Close the generators, and so the scan's open segment, now rather than at collection.
        getattr(events, "close", lambda: None)()
    if chain.head != head:
        raise CorruptLogError(f"session {sid!r}: the log does not reach seq {head.seq} "
                              "with the digest it was judged at", session_id=sid, seq=head.seq)


def export_history(log: EventLog, sid: str, head: Head, directory: Path) -> Path:
    """Write the session's history up to ``head`` into ``directory`` as
    ``<id>.jsonl`` (``<id>~2.jsonl`` and so on if taken), durably; return its path."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = directory / f".{sid}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(header_line(sid, genesis(sid), log.version) + b"\n")
                for line in _history(log, sid, head):
                    out.write(line + b"\n")
                out.write(trailer_line(head) + b"\n")
            os.fsync(fd)
            final = _link_unique(temp, directory, sid)
        finally:
            os.close(fd)
            temp.unlink(missing_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"can't archive session {sid!r} into {directory}: {exc}") from exc
    return final


def _link_unique(temp: Path, directory: Path, sid: str) -> Path:
    # ``~`` can't occur in a session id, so ``a~2.jsonl`` is never another session's name.
    for n in range(1, 10_000):
        final = directory / (f"{sid}.jsonl" if n == 1 else f"{sid}~{n}.jsonl")
        try:
            os.link(temp, final)  # never replaces an existing file, unlike rename
            return final
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory} holds too many archived copies of session {sid!r}")
