"""Redaction in a Redis store: the client works out the new lines and archive chunks, and
one script (``_scripts.REDACT``) checks and swaps them atomically; a cold file archive is
redacted by its file store right after."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ...core._errors import RedactionError, SessionNotFoundError
from .._base import Replacement
from .._chunks import replace_in
from ._archive import FileArchive

if TYPE_CHECKING:
    from ._backend import RedisBackend

_ATTEMPTS = 10  # compaction moving the archive mark meanwhile sends the client back
_PAGE = 20_000  # log entries copied per script call: a few tens of milliseconds of the server


def redact_redis(backend: RedisBackend, session_id: str, replacements: list[Replacement],
                 durable: bool) -> None:
    """``RedisBackend.redact``."""
    what = f"redacting in session {session_id!r}"
    head_key, log_key, snap_key, arch_key = backend.keys(session_id)[:4]
    copy_key, arch_copy_key = backend.keys(session_id)[6:8]
    client = backend.client
    for _ in range(_ATTEMPTS):
        generation, mark = backend._run(what, lambda: client.hmget(head_key, ["g", "archived"]))
        if generation is None:
            raise SessionNotFoundError(session_id)
        archived = int(mark or 0)
        lines: list[Any] = [archived, len(replacements)]
        for seq, old, new in replacements:
            lines += [seq, old, new]
        chunks: list[Any] = []
        if not isinstance(backend.cold, FileArchive):
            chunks = _chunk_args(backend, session_id, arch_key,
                                 [r for r in replacements if r.seq <= archived])
        # Only a log that holds a replaced line is copied (page by page, then the rest by the
        # final script); archived lines are in chunks, copied by the final script.
        copied = (_copy_log(backend, what, log_key, copy_key, replacements)
                  if max(r.seq for r in replacements) > archived else "")
        args: list[Any] = [archived, copied, *lines[1:], len(chunks) // 3, *chunks]
        keys = [head_key, log_key, snap_key, arch_key, copy_key, arch_copy_key]
        done: Any = backend._run(what, partial(backend._redact, keys=keys, args=args))
        if done[0] == 0:
            break
        if done[0] == 2:
            raise SessionNotFoundError(session_id)
        if done[0] == 3:
            raise RedactionError(f"session {session_id!r}, seq {int(done[1])}: changed meanwhile; "
                                 "nothing was redacted")
    else:
        raise RedactionError(f"session {session_id!r}: compaction kept moving records while "
                             "redacting; nothing was redacted, try again")
    if isinstance(backend.cold, FileArchive):
        _redact_cold(backend.cold, session_id, replacements)
    backend._heads.pop(session_id, None)
    if durable:
        backend._sync(what, session_id)


def _copy_log(backend: RedisBackend, what: str, log_key: str, copy_key: str,
              replacements: list[Replacement]) -> str:
    """Copy the log into ``copy_key`` a page per call (see ``_scripts.REDACT_COPY``); return the
    last entry id copied. Entries appended meanwhile are copied by the final script."""
    swaps: list[Any] = []
    for seq, _old, new in replacements:
        swaps += [f"0-{seq}", new]
    backend._run(what, partial(backend.client.delete, copy_key))
    copied = ""
    while True:
        found: Any = backend._run(what, partial(backend._redact_copy, keys=[log_key, copy_key],
                                                 args=[copied, _PAGE, *swaps]))
        last = found.decode() if isinstance(found, bytes) else str(found)
        if not last:
            return copied
        copied = last


def _chunk_args(backend: RedisBackend, session_id: str, arch_key: str,
                archived: list[Replacement]) -> list[Any]:
    """(first, old z, new z) of each ``arch`` chunk that holds a replaced line."""
    found: dict[int, tuple[int, bytes, dict[int, tuple[bytes, bytes]]]] = {}
    for seq, old, new in archived:
        entries: Any = backend._run("redacting", partial(
            backend.client.xrevrange, arch_key, f"0-{seq}", "-", count=1))
        if not entries:
            raise RedactionError(f"session {session_id!r}: no archive chunk holds seq {seq}")
        entry_id, fields = entries[0]
        first = int(entry_id.partition(b"-")[2])
        found.setdefault(first, (int(fields[b"last"]), fields[b"z"], {}))[2][seq] = (old, new)
    args: list[Any] = []
    for first, (last, blob, swaps) in sorted(found.items()):
        args += [first, blob, replace_in(session_id, first, last, blob, swaps)]
    return args


def _redact_cold(cold: FileArchive, session_id: str, replacements: list[Replacement]) -> None:
    """The cold tier's copy of the records it holds (a crashed archive run may have left
    some there past the mark: those too)."""
    try:
        held = cold.files.last_seq(session_id)
    except SessionNotFoundError:
        return
    there = [r for r in replacements if r.seq <= held]
    if there:
        cold.files.redact(session_id, there, durable=True)
