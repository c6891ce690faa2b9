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
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _fault_harness as harness
from . import _fault_ops as ops
from ._fault_harness import Processes, normal, shim

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
    """Run ``op`` with the ``at``-th file operation faulted; check everything; True if the
    fault was reached."""
    options = MODES[mode]
    crash = int(options.get("crash", 0))
    directory.mkdir()
    status = procs.run({"op": op, "dir": str(directory.resolve()), "at": at, "backend": "file",
                        "errno": options.get("errno", 0), "sticky": options.get("sticky", False),
                        "crash": crash, "writes": options.get("writes", False)})
    before = json.loads((directory / "before.json").read_text())
    where = f"{op}, {mode} at file operation {at}"
    extra: dict[str, list[Any]] = {}
    error = ""
    if status == 77:
        assert crash, where
        outcome, done, reached = "crashed", None, True
    else:
        assert status == 0, f"{where}: the child exited with {status}"
        result = json.loads((directory / "result.json").read_text())
        reached = result["fired"] > 0
        outcome = result["outcome"]
        error = result.get("error", "")
        assert outcome in ("ok", "error"), f"{where}: {error}"
        if outcome == "error":
            assert reached, f"{where}: raised without a fault: {error}"
            assert result["storage"], f"{where}: not a StorageError: {error}"
            if _in_doubt_after_fsync(op, result):
                outcome = "crashed"  # all of it or none, as after a kill
        done = ops.Done(normal(result.get("events", {})), result.get("removed", []),
                        result.get("exit_code"), result.get("said", ""))
        same = result["next_append"]
        if isinstance(same, list):
            extra[ops.SID] = [same]
        else:
            assert result.get("kind") == "fsync" and same.startswith("SessionPoisonedError"), \
                f"{where}: the same store: {same}"
    copy = directory / "copy"
    harness.check_store(procs, op, where, before, done, outcome, extra, error,
                        url=str(directory / "store"),
                        copy=str(copy) if (copy / ".eventlog.json").exists() else None,
                        archive=directory / "archive")
    if reached:
        shutil.rmtree(directory)  # passed: keep only a failing case's files
    return reached


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
