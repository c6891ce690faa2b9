"""Retention: remove (or move aside) sessions whose last activity is older than N days.

Last activity is the newest event timestamp, so imported history with old timestamps
ages by its own clock. A session is removed with ``Backend.delete(if_head=...)``: if
anything was appended after its age was judged, the delete is refused and the session
stays whole, so retention never removes half of an active session.

The candidates come from the session catalog with the head each one's age was read at.
Without ``archive_dir`` the backend may remove them without a fold
(``Backend.delete_deferred``: it checks the log's digest chain up to that head under the
session's lock, so a damaged log stays); otherwise, or when it can't, each session is
folded from its log first.

``archive_dir`` keeps each removed session's history as one JSONL file in the format
of a sealed segment (header, records with their digests, trailer), written and synced
*before* the session is deleted: a crash in between leaves a copy too many, never one
too few.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ..backends._base import Lines
from ..backends.files._names import file_name
from ..core._codec import ChainReader, Head, genesis
from ..core._errors import (
    CleanupError,
    CorruptLogError,
    EventLogError,
    InvalidInputError,
    LockTimeoutError,
    SessionNotFoundError,
    StorageError,
)
from ..core._frames import header_line, trailer_line
from ..core._validate import finite, shown
from ._folding import Folding
from ._lives import another_life, life_of

DAY = 86400.0
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def cleanup_old_sessions(log: Folding, days: float, archive_dir: str | os.PathLike[str] | None,
                         dry_run: bool,
                         candidates: Callable[[float], list[tuple[str, Head, float]]] | None = None,
                         ) -> list[str]:
    """Remove (or, with ``dry_run``, name) the sessions last active before ``days`` ago.
    ``candidates(cutoff)``: the sessions that are old, oldest first, each with the head its
    age was read at (the session catalog's answer); every session, each folded, when None."""
    if type(days) not in (int, float) or not finite(days) or days < 0:
        raise InvalidInputError(f"days must be a non-negative number, not {shown(days)}")
    if type(dry_run) is not bool:
        raise InvalidInputError(f"dry_run must be a bool, not {dry_run!r}")
    target = None if archive_dir is None else Path(archive_dir)
    cutoff = time.time() - days * DAY
    removed: list[str] = []
    failed: dict[str, EventLogError] = {}
    found: list[tuple[str, Head | None, float]] = (
        [(sid, None, 0.0) for sid in log.backend.session_ids()] if candidates is None
        else list(candidates(cutoff)))
    try:
        for sid, head, last in found:
            outcome: bool | EventLogError | None
            if head is None or target is not None:
                outcome = _fold_and_remove(log, sid, cutoff, target, dry_run)
            elif not last < cutoff:
                continue
            elif dry_run:
                outcome = True
            else:
                outcome = _remove_as_listed(log, sid, head)
                if outcome is None:  # the backend can't vouch for the log cheaply: fold it
                    outcome = _fold_and_remove(log, sid, cutoff, None, False)
            if isinstance(outcome, EventLogError):
                failed[sid] = outcome
            elif outcome:
                removed.append(sid)
    finally:
        log.backend.settle_deletes()
    if failed:
        raise CleanupError(sorted(removed), failed)
    return sorted(removed)


def _remove_as_listed(log: Folding, sid: str, head: Head) -> bool | EventLogError | None:
    """Remove a session the catalog listed as old at ``head`` (which the backend vouched for
    when it was read), folding nothing: the backend checks under the session's lock that
    the log is sound and ends at exactly that head, so a damaged session stays and one
    written to since is kept whole; and the catalog's entry for that head is the log's fold
    at it (``_catalog``'s invariants). None: the backend can't check (nothing was done)."""
    try:
        return log.backend.delete_deferred(sid, if_head=head)
    except (SessionNotFoundError, LockTimeoutError):
        return False  # someone else removed it meanwhile, or holds it: the next run decides
    except CorruptLogError:
        return False  # never destroy a log that can't be read: verify() reports it
    except StorageError as exc:
        return exc


def _fold_and_remove(log: Folding, sid: str, cutoff: float, target: Path | None,
                     dry_run: bool) -> bool | EventLogError:
    """Fold the session from its log, and remove it (archived first, into ``target``) if
    it is old."""
    try:
        life = life_of(log.backend, sid)
        state = log.state(sid)
    except SessionNotFoundError:
        return False
    except CorruptLogError:
        return False  # never destroy a log that can't be read: verify() reports it
    if state.last_activity >= cutoff:
        return False
    if dry_run:
        return True
    return _remove_one(log, sid, state.head, target, life)


def _remove_one(log: Folding, sid: str, head: Head, target: Path | None,
                life: object) -> bool | EventLogError:
    """Remove one old session (True) or keep it (False), or the error that kept it: one
    session's trouble never stops the others (the CleanupError comes at the end)."""
    try:
        return _remove(log, sid, head, target)
    except SessionNotFoundError:
        return False  # deleted by someone else meanwhile
    except CorruptLogError as exc:
        # Created again meanwhile, so not old (another life is not damage), or damaged.
        return False if another_life(log.backend, sid, life) else exc
    except StorageError as exc:
        return exc


def _remove(log: Folding, sid: str, head: Head, target: Path | None) -> bool:
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


def _history(log: Folding, sid: str, head: Head) -> Iterator[bytes]:
    """The session's record lines up to ``head``, each checked against the chain."""
    scan = log.backend.scan(sid, 0, None)
    chain = ChainReader(sid, scan.start, log.backend.record_version)
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


def export_history(log: Folding, sid: str, head: Head, directory: Path) -> Path:
    """Write the session's history up to ``head`` into ``directory`` as ``<name>.jsonl``
    (``<name>~2.jsonl`` and so on if taken; the name is the id's, as a file store names its
    directory), durably; return its path."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = directory / f".{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(header_line(sid, genesis(sid), log.backend.record_version) + b"\n")
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
    # The id's file name (as a file store names its directory: safe for any id; a long one
    # if the suffix would take it past 255 bytes), and for a second copy ``<name>~2.jsonl``:
    # no id's name ends in ``~`` and a few digits.
    name = file_name(sid, 255 - len("~9999.jsonl"))
    for n in range(1, 10_000):
        final = directory / (f"{name}.jsonl" if n == 1 else f"{name}~{n}.jsonl")
        try:
            os.link(temp, final)  # never replaces an existing file, unlike rename
            return final
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory} holds too many archived copies of session {sid!r}")
