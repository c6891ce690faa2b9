"""Compaction: seal each session's active segment, snapshot that boundary, archive the rest.

The store owns the policy (which sessions, the snapshot's content, what a report
says); the backend supplies two hooks, ``seal`` and ``archive``, which backends
without segments leave as their cheap defaults.
"""

from __future__ import annotations

import time

from ..backends._base import Sealed
from ..core._errors import CorruptLogError, LockTimeoutError, SessionNotFoundError, StorageError
from ..core._records import CompactionReport
from ._folding import Folding
from ._lives import another_life, life_of
from ._state import decode_snapshot, encode_snapshot

COMPACT_MIN_BYTES = 4096
"""A session smaller than this in all is left as it is: compacting it would make it larger."""


def compact(log: Folding, session_id: str | None) -> CompactionReport:
    """Compact one session (errors raise) or every session (damaged or busy ones, and
    those whose files raised a storage error, are reported in ``problems`` and left as they
    are; sessions deleted meanwhile are skipped).
    A session deleted and created again while it was compacted is deleted, not damaged:
    ``SessionNotFoundError`` for one, skipped among all (see ``_lives``)."""
    started = time.perf_counter()
    backend = log.backend
    ids = backend.session_ids() if session_id is None else [session_id]
    sessions = archived = before = after = 0
    problems: list[str] = []
    for sid in ids:
        life: object = None
        try:
            life = life_of(backend, sid)
            size = backend.size(sid)
            if size < COMPACT_MIN_BYTES:
                # Sealing adds a trailer and the next segment's header, the boundary snapshot
                # takes a few hundred bytes, and gzip's framing about as many: below this, a
                # compacted session is larger than it was (476 B became 935 B).
                sessions += 1
                before += size
                after += size
                continue
            sealed = backend.seal(sid, durable=True)
            snapshot_boundary(log, sid, sealed)
            done = backend.archive(sid)
            after += backend.size(sid)
        except SessionNotFoundError:
            if session_id is not None:
                raise
            continue
        except (CorruptLogError, LockTimeoutError) as exc:
            if isinstance(exc, CorruptLogError) and life is not None and another_life(backend, sid, life):
                # Deleted (and maybe created again) while we compacted it: gone, not damaged.
                if session_id is not None:
                    raise SessionNotFoundError(sid) from None
                continue
            # Damaged, or another process holds its compaction lock for longer than the
            # lock timeout (compacting a huge segment): leave it, go on with the rest.
            if session_id is not None:
                raise
            problems.append(str(exc))
            continue
        except StorageError as exc:
            # One session's files failed (a full disk, EIO): compaction leaves it whole (the
            # fault tests prove every step), and the others may still be compacted, freeing
            # space. Reported, as cleanup reports what it could not remove.
            if session_id is not None:
                raise
            problems.append(f"session {sid!r}: {exc}")
            continue
        sessions += 1
        archived += done.segments
        before += size
    return CompactionReport(sessions=sessions, segments_archived=archived, bytes_before=before,
                            bytes_after=after, seconds=time.perf_counter() - started,
                            problems=tuple(problems))


def snapshot_boundary(log: Folding, sid: str, sealed: Sealed) -> None:
    """Make sure a durable snapshot stands at the sealed head, so that reading the
    session's state starts there and never needs the archives behind it."""
    backend = log.backend
    for blob in backend.snapshots(sid):
        try:
            state, _ = decode_snapshot(sid, blob)
        except CorruptLogError:
            continue
        if state.head == sealed.head:
            return  # nothing appended since the last compaction's snapshot
        break
    state = log.state(sid, upto=sealed.head.seq)
    if state.head != sealed.head:
        raise CorruptLogError(f"session {sid!r}: the log does not reach the head it was sealed "
                              f"at (seq {sealed.head.seq})", session_id=sid, seq=sealed.head.seq)
    backend.save_snapshot(sid, sealed.head.seq, encode_snapshot(state, sealed.position), durable=True)
