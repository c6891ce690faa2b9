"""A session's snapshots: ``snap-<seq>.json`` files written atomically beside its segments,
those ``_base.snapshot_seqs_dropped`` spares kept. Each is self-checking (the store verifies it), so a
reader only needs the newest first."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ...core._errors import EventLogError, SessionNotFoundError, StorageError
from .._base import snapshot_seqs_dropped
from ._dirs import Dirs


def snapshots(dirs: Dirs, session_id: str) -> Iterator[bytes]:
    try:
        yield from _snapshots(dirs, session_id)
    except EventLogError:
        raise
    except OSError as exc:
        raise dirs.os_error(session_id, exc) from exc


def _snapshots(dirs: Dirs, session_id: str) -> Iterator[bytes]:
    directory = dirs.dir(session_id)
    try:
        names = sorted((n for n in os.listdir(directory)
                        if n.startswith("snap-") and n.endswith(".json")), reverse=True)
    except FileNotFoundError:
        raise SessionNotFoundError(session_id) from None
    for name in names:
        try:
            yield (directory / name).read_bytes()
        except FileNotFoundError:
            continue  # pruned meanwhile


def save_snapshot(dirs: Dirs, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
    directory = dirs.dir(session_id)
    try:
        dirs.write_atomic(directory, f"snap-{seq:016d}.json", blob, durable=durable)
        names = sorted(n for n in os.listdir(directory)
                       if n.startswith("snap-") and n.endswith(".json"))
    except FileNotFoundError:
        raise SessionNotFoundError(session_id) from None
    except OSError as exc:
        raise StorageError(exc.errno, f"can't write snapshot of {session_id!r}: {exc}") from exc
    for seq in snapshot_seqs_dropped(int(name[5:-5]) for name in names if name[5:-5].isdigit()):
        try:
            os.unlink(directory / f"snap-{seq:016d}.json")
        except FileNotFoundError:
            pass
