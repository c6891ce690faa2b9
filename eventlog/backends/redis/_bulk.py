"""A new Redis session written whole (``RedisBackend.create_log``: a fork's copy).

The lines go into a copy of the log under a key of this write's own (``log:creating:<token>``,
beside the session's keys, so in its hash slot), a page per script call (``_scripts.FILL``,
each idempotent, so a call whose reply was lost can be sent again), with an expiry renewed
by each page so that a copy whose writer died goes away by itself. One more script
(``_scripts.CREATE_LOG``) then checks that the id is free and the copy whole, and renames
it into place with the head: nobody sees the session before it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from ...core._codec import Head, Record
from ...core._errors import SessionExistsError, StorageError

if TYPE_CHECKING:
    from ._backend import RedisBackend

_PAGE_LINES = 2000
_PAGE_BYTES = 1 << 20  # a page per script call: the server is never held for long
_COPY_KEPT_MS = 120_000  # a dead writer's copy is gone this long after its last page


def create_log(backend: RedisBackend, session_id: str, batches: Iterable[list[Record]],
               durable: bool) -> dict[str, Any]:
    what = f"creating session {session_id!r}"
    if not backend._marked:
        backend._mark(what)
    if backend.exists(session_id):
        raise SessionExistsError(session_id)
    token = os.urandom(8).hex()
    keys = backend.keys(session_id)
    copy = keys[0].removesuffix("head") + f"log:creating:{token}"
    client = backend.client
    backend._run(what, lambda: client.sadd(backend._registry, session_id))  # as create does
    base, size, heads = 0, 0, [Head(0, "")]
    try:
        for page, page_bytes in _pages(batches, heads):
            base = _fill(backend, what, copy, base, page)
            size += page_bytes
        head = heads[0]
        assert head.seq == base
        done = backend._run(what, lambda: backend._write(
            backend._create_log, [*keys, copy], [token, head.seq, head.digest, size, backend.ttl_ms],
            lambda reply: reply == 1))
    except BaseException:
        try:
            client.delete(copy)
        except Exception:  # the error that stopped the copy is the one to raise
            pass
        raise
    if done == 0:
        raise SessionExistsError(session_id)
    if done != 1:
        raise StorageError(f"{backend.where}: {what}: the copy of its records expired before "
                           "it was complete; nothing was created")
    backend._run(what, lambda: client.sadd(backend._registry, session_id))
    backend._remember(session_id, head)
    if durable:
        backend._sync(what, session_id)
    return {}


def _pages(batches: Iterable[list[Record]], heads: list[Head]) -> Iterator[tuple[list[bytes], int]]:
    """The records' lines in pages, with their bytes (newline counted); ``heads[0]`` is the
    last record's head once they are all handed out."""
    page: list[bytes] = []
    page_bytes = 0
    for batch in batches:
        for record in batch:
            page.append(record.line)
            page_bytes += len(record.line) + 1
            if len(page) >= _PAGE_LINES or page_bytes >= _PAGE_BYTES:
                yield page, page_bytes
                page, page_bytes = [], 0
        if batch:
            heads[0] = Head(batch[-1].seq, batch[-1].digest)
    if page:
        yield page, page_bytes


def _fill(backend: RedisBackend, what: str, copy: str, base: int, lines: list[bytes]) -> int:
    if not backend._run(what, partial(backend._fill, keys=[copy], args=[base, _COPY_KEPT_MS, *lines])):
        raise StorageError(f"{backend.where}: {what}: the copy of its records was changed or "
                           "expired meanwhile; nothing was created")
    return base + len(lines)
