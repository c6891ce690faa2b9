"""File-system faults below SQLite, at every file operation of every store operation.

SQLite does its I/O in C, so the faults come from a preloaded shim (tests/_fault_shim.c)
in front of libc: for k = 1, 2, 3, ... the k-th write, pwrite, fsync, ftruncate, open
(creating), rename, link, unlink or mkdir under the store's directory fails (EIO once;
ENOSPC from then on, its first write cut short, as on a disk that filled up) or the
process exits right there (as if SIGKILLed), until the operation completes without
reaching k. After each: the call returned or raised a ``StorageError``; a fresh process
reads every acknowledged event exactly once and nothing unacknowledged (a killed call:
all of its events or none); ``verify`` is ok; the same store object and a fresh one both
append. A real full disk (a small tmpfs) is in test_a_real_full_disk.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog

from . import _fault_harness as harness
from . import _fault_ops as ops
from ._fault_harness import Processes, shim
from ._tmpfs import tmpfs

__all__ = ["shim"]  # a fixture used here

MODES: dict[str, dict[str, Any]] = {
    "EIO-once": {"errno": errno.EIO},
    "ENOSPC-from-then-on": {"errno": errno.ENOSPC, "sticky": True},
    "killed": {"crash": 1},
}
TALLY: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def procs(shim: Path) -> Iterator[Processes]:
    processes = Processes(shim)
    yield processes
    processes.close()
    harness.print_tally("SQLite: faults injected per operation:", TALLY)


def _one_fault(procs: Processes, op: str, directory: Path, at: int, mode: str) -> bool:
    return harness.one_fault(procs, op, directory, at, mode, MODES[mode], backend="sqlite",
                             url=f"sqlite:///{directory / 'store.db'}",
                             copy_url=f"sqlite:///{directory / 'copy.db'}", copy_made=directory / "copy.db")


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("op", list(ops.OPS))
def test_a_fault_at_every_file_operation(procs: Processes, fast_tmp: Path, op: str, mode: str) -> None:
    faults = harness.walk_fault_points(
        lambda directory, at: _one_fault(procs, op, directory, at, mode), fast_tmp, op)
    TALLY.setdefault(op, {})[mode] = faults
    print(f"SQLite {op}: {faults} faults ({mode})")
    assert faults >= 1, f"{op} made no file operation at all"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own."""
    with tmpfs(tmp_path / "tmpfs", "size=2m") as where:
        yield where


def test_a_real_full_disk(procs: Processes, small_tmpfs: Path) -> None:
    """SQLite on a tmpfs that fills up: appends fail with StorageError (SQLITE_FULL) from a
    real ENOSPC, a fresh process reads exactly the acknowledged events, verify is ok, and
    once there is room again the same store appends and the write-ahead log shrinks back."""
    from eventlog.backends._sqlite import WAL_KEPT_BYTES

    url = f"sqlite:///{small_tmpfs / 'store.db'}"
    acked: list[int] = []
    failures: list[BaseException] = []
    with eventlog.open(url) as log:
        log.create_session(ops.SID)
        while len(failures) < 5:
            try:
                acked.append(log.append(ops.SID, "fill", "z" * 3000).seq)
            except eventlog.EventLogError as exc:
                failures.append(exc)
        assert all(isinstance(f, eventlog.StorageError) for f in failures), failures
        assert "full" in str(failures[0])
        seen = procs.read({"url": url})
        assert seen.get("error") is None and seen["problems"] == []
        assert [r[0] for r in seen["sessions"][ops.SID]] == [1, *acked]
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
        for _ in range(3):
            acked.append(log.append(ops.SID, "room", 1).seq)
        assert acked[-3:] == [acked[-4] + 1, acked[-4] + 2, acked[-4] + 3]
        assert os.path.getsize(f"{small_tmpfs / 'store.db'}-wal") <= WAL_KEPT_BYTES
    seen = procs.read({"url": url, "append": ops.SID})
    assert seen["problems"] == [] and [r[0] for r in seen["sessions"][ops.SID]] == [1, *acked]
    print(f"\nSQLite on a full 2 MiB tmpfs: {len(acked) - 3} appends acknowledged, then "
          f"{len(failures)} refused with StorageError; nothing lost")
