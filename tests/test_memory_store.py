"""The store contract on the memory backend (process-local, so no multi-process parts)."""

from __future__ import annotations

import uuid

from .conformance import StoreContract


class TestMemoryStore(StoreContract):
    shared_between_processes = False
    storage_type = "memory"

    def fresh_url(self) -> str:
        return f"memory://contract-{uuid.uuid4().hex}"
