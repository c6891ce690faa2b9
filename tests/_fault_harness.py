"""What the fault-point tests of the file backend (tests/test_file_fault_points.py) and of
SQLite (tests/test_sqlite_faults.py) share: the shim's build, the long-lived runner and
reader processes, the checks made after every injected fault, and the walk over fault
points k = 1, 2, 3, ... until the operation completes without reaching k.

The two tests differ only in how a store is named and what a failed call may leave (the
file backend's durable appends whose fsync failed are in doubt; SQLite has none), so
each passes those in and everything else is written once, here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from . import _fault_ops as ops
from . import _procs


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fault shim (tests/_fault_shim.c), compiled; skipped without a C compiler, except
    in CI, where the fault tests must run."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler to build the fault shim; CI=true, so these tests must run")
        pytest.skip("no C compiler to build the fault shim (tests/_fault_shim.c)")
    out = tmp_path_factory.mktemp("shim") / "fault_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out),
                    str(Path(__file__).with_name("_fault_shim.c")), "-ldl"], check=True)
    return out


class Processes:
    """The fault runner (with the shim preloaded) and a reader, both long-lived: starting a
    Python with eventlog imported for each of hundreds of fault points would cost more
    than the faults themselves."""

    def __init__(self, shim: Path) -> None:
        env = _procs.worker_env()
        env["LD_PRELOAD"] = str(shim)
        self.runner = subprocess.Popen([sys.executable, "-m", "tests._fault_runner"], env=env,
                                       cwd=_procs.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.reader = subprocess.Popen([sys.executable, str(_procs.WORKER), "reader"],
                                       env=_procs.worker_env(), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)

    @staticmethod
    def _ask(proc: subprocess.Popen[bytes], request: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"a helper process died ({proc.poll()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, request: dict[str, Any]) -> int:
        return int(self._ask(self.runner, request)["status"])

    def read(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._ask(self.reader, request)

    def close(self) -> None:
        for proc in (self.runner, self.reader):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)


def normal(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))  # tuples as lists, as the reader's JSON has them


def check_store(procs: Processes, op: str, where: str, before: Any, done: ops.Done | None,
                outcome: str, extra: dict[str, list[Any]], error: str, *, url: str,
                copy: str | None, archive: Path) -> None:
    """What a fresh process must find after ``op`` ran with a fault: no error, ``verify``
    ok (the store and any copy), every acknowledged event once and nothing else, and the
    next append at the seq after the last one, verifying too."""
    seen = procs.read({"url": url, "append": ops.SID, "copy": copy,
                       "archive": str(archive) if archive.exists() else None})
    assert "error" not in seen, f"{where}: a fresh process: {seen['error']}"
    assert seen["problems"] == [], f"{where}: verify: {seen['problems']}"
    assert seen.get("copy_problems", []) == [], f"{where}: the copy: {seen['copy_problems']}"
    wrong = ops.problems_after(op, before, seen["sessions"], done, outcome, extra=extra,
                               copied=seen.get("copied"), archived=seen.get("archived"), error=error)
    assert wrong == [], f"{where}: {wrong}"
    assert seen["appended"] == seen["sessions"][ops.SID][-1][0] + 1, where
    assert seen["problems_after"] == [], f"{where}: verify after the next append"


def walk_fault_points(one_fault: Callable[[Path, int], bool], directory: Path, op: str) -> int:
    """Fault the 1st, 2nd, 3rd, ... file operation of ``op`` until one run completes
    without reaching its fault point; the number of faults injected."""
    at = 0
    while True:
        at += 1
        assert at < 400, f"{op}: never completed"
        if not one_fault(directory / str(at), at):
            return at - 1


def print_tally(title: str, tally: dict[str, dict[str, int]]) -> None:
    if tally:
        print(f"\n{title}")
        for op, counts in tally.items():
            print(f"  {op:16} " + ", ".join(f"{mode} {n}" for mode, n in counts.items())
                  + f"; {sum(counts.values())} in all")
        print(f"  all operations: {sum(sum(c.values()) for c in tally.values())}")


def one_fault(procs: Processes, op: str, directory: Path, at: int, mode: str,
              options: dict[str, Any], *, backend: str, url: str, copy_url: str, copy_made: Path,
              in_doubt: Callable[[dict[str, Any]], bool] = lambda result: False,
              may_poison: bool = False) -> bool:
    """Run ``op`` on a fresh ``backend`` store in ``directory`` with its ``at``-th file
    operation faulted as ``options`` say, check everything, and say whether the fault was
    reached. ``copy_url`` is checked too once ``copy_made`` exists. ``in_doubt``: a raised
    call whose events may be there, all or none (as after a kill); ``may_poison``: after a
    failed fsync, the same store object may refuse the session with
    ``SessionPoisonedError`` instead of appending."""
    crash = int(options.get("crash", 0))
    directory.mkdir()
    status = procs.run({"op": op, "dir": str(directory.resolve()), "at": at, "backend": backend,
                        "errno": options.get("errno", 0), "sticky": options.get("sticky", False),
                        "crash": crash, "writes": options.get("writes", False)})
    before = json.loads((directory / "before.json").read_text())
    where = f"{op}, {mode} at file operation {at}"
    extra: dict[str, list[Any]] = {}
    error = ""
    done: ops.Done | None = None
    if status == 77:
        assert crash, where
        outcome, reached = "crashed", True
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
            if in_doubt(result):
                outcome = "crashed"  # all of it or none, as after a kill
        done = ops.Done(normal(result.get("events", {})), result.get("removed", []),
                        result.get("exit_code"), result.get("said", ""))
        same = result["next_append"]
        if isinstance(same, list):
            extra[ops.SID] = [same]
        else:
            assert may_poison and result.get("kind") == "fsync" \
                and same.startswith("SessionPoisonedError"), f"{where}: the same store: {same}"
    check_store(procs, op, where, before, done, outcome, extra, error, url=url,
                copy=copy_url if copy_made.exists() else None, archive=directory / "archive")
    if reached:
        shutil.rmtree(directory)  # passed: keep only a failing case's files
    return reached
