"""The JSONL file backend: the whole store contract, plus what only files have
(privacy modes, the root directory, fork safety, locks)."""

from __future__ import annotations

import pytest

from .conformance import StoreContract


class TestFileStore(StoreContract):
    shared_between_processes = True
    storage_type = "json"

    @pytest.fixture(autouse=True)
    def _temp(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def fresh_url(self) -> str:
        return str(self._tmp.mktemp("store"))
