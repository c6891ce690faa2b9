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
