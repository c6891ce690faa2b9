"""The store contract on the memory backend (process-local, so no multi-process parts)."""

from __future__ import annotations

import uuid

from eventlog import EventLog
from eventlog.backends._memory import MemoryBackend

from .conformance import StoreContract


class TestMemoryStore(StoreContract):
    shared_between_processes = False
    storage_type = "memory"

    def fresh_url(self) -> str:
        return f"memory://contract-{uuid.uuid4().hex}"

    def raw_contents(self, url: str, log: EventLog) -> bytes:
        # The store is Python objects: every line and snapshot it holds for any session.
        backend = log.backend
        assert isinstance(backend, MemoryBackend)
        return b"\n".join(line for session in backend._data.sessions.values()
                          for line in [*session.lines, *session.snapshots.values(),
                                       *([] if session.catalog is None else [session.catalog[1]])])
