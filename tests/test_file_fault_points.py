"""File-system faults and SIGKILLs at every file operation of every store operation, on the
file backend (issue 13's proof), through the same shim and runner as the SQLite harness.

For k = 1, 2, 3, ... the k-th write, pwrite, fsync, ftruncate, open (creating), rename,
link, unlink or mkdir under the store's directory fails: EIO once, EFBIG once, ENOSPC or
EDQUOT from then on (the first write cut short, as on a disk that filled up), a write cut
short once (only writes counted), or the process exits right before the call or right
after it (as if SIGKILLed there), until the operation completes without reaching k. After
each: the call returned or raised a ``StorageError``; a fresh process reads every
acknowledged event exactly once and nothing unacknowledged (a killed call, or a durable
append whose fsync failed after its write: all of its events or none); ``verify`` is ok;
the same store object appends (after a failed fsync it may refuse the session with
``SessionPoisonedError`` until reopened: then a fresh one does); and a fresh one appends.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _fault_harness as harness
from . import _fault_ops as ops
from ._fault_harness import Processes, shim

__all__ = ["shim"]  # a fixture used here

MODES = {
    "EIO-once": {"errno": errno.EIO},
    "EFBIG-once": {"errno": errno.EFBIG},
    "ENOSPC-from-then-on": {"errno": errno.ENOSPC, "sticky": True},
    "EDQUOT-from-then-on": {"errno": errno.EDQUOT, "sticky": True},
    "short-write": {"errno": errno.EIO, "writes": True},
    "killed-before": {"crash": 1},
    "killed-after": {"crash": 2},
}
TALLY: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def procs(shim: Path) -> Iterator[Processes]:
    processes = Processes(shim)
    yield processes
    processes.close()
    harness.print_tally("File store: faults injected per operation:", TALLY)


def _in_doubt_after_fsync(op: str, result: dict[str, Any]) -> bool:
    """A durable write whose fsync failed after the write reached the file (outside the
    lock, where concurrent appenders share the fsync) can't be taken back: it raised, and
    its events may be there, all of them or none."""
    return (result["outcome"] == "error" and result.get("kind") == "fsync" and op in ops.WRITES
            and "fsync failed" in result.get("error", ""))


def one_fault(procs: Processes, op: str, directory: Path, at: int, mode: str) -> bool:
    return harness.one_fault(procs, op, directory, at, mode, MODES[mode], backend="file",
                             url=str(directory / "store"), copy_url=str(directory / "copy"),
                             copy_made=directory / "copy" / ".eventlog.json",
                             in_doubt=lambda result: _in_doubt_after_fsync(op, result),
                             may_poison=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("op", list(ops.OPS))
def test_a_fault_at_every_file_operation(procs: Processes, fast_tmp: Path, op: str, mode: str) -> None:
    faults = harness.walk_fault_points(
        lambda directory, at: one_fault(procs, op, directory, at, mode), fast_tmp, op)
    TALLY.setdefault(op, {})[mode] = faults
    print(f"file store {op}: {faults} faults ({mode})")
    # (cleanup without an archive and delete only rename and unlink: no write to cut short)
    assert faults >= 1 or (mode == "short-write" and op in ("cleanup", "delete")), \
        f"{op} made no file operation at all"
