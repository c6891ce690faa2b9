"""A session's snapshots: ``snap-<seq>.json`` files written atomically beside its segments,
the newest ``SNAPSHOTS_KEPT`` kept. Each is self-checking (the store verifies it), so a
reader only needs the newest first."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ...core._errors import EventLogError, SessionNotFoundError, StorageError
from ._dirs import Dirs

SNAPSHOTS_KEPT = 3


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
    for name in names[:-SNAPSHOTS_KEPT]:
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            pass
