"""Issue 13, item 9 on SQLite: after the database file is unlinked (or replaced) under an open
store, an append is never acknowledged into the file no longer in the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import eventlog


@pytest.mark.parametrize("how", ["unlinked", "replaced"])
def test_no_append_is_acknowledged_into_a_removed_database(tmp_path: Path, how: str) -> None:
    path = tmp_path / "store.db"
    with eventlog.open(f"sqlite:///{path}") as log:
        log.create_session("s")
        log.append("s", "x", 1)
        if how == "replaced":  # by a copy of itself (a restored backup)
            for name in ("store.db", "store.db-wal"):
                shutil.copy(tmp_path / name, tmp_path / f"copy-{name}")
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if how == "replaced":
            for name in ("store.db", "store.db-wal"):
                (tmp_path / f"copy-{name}").rename(tmp_path / name)
        for call in (lambda: log.append("s", "x", 2),
                     lambda: log.append_many("s", [("b", 1), ("b", 2)]),
                     lambda: log.create_session("t")):
            with pytest.raises(eventlog.StorageError, match="removed or replaced"):
                call()
    if how == "replaced":
        with eventlog.open(f"sqlite:///{path}") as fresh:  # a fresh store uses the file there
            assert [e.seq for e in fresh.events("s")] == [1, 2]  # none of the refused appends
            assert fresh.append("s", "x", 2).seq == 3
