"""Runs one store operation under an injected file-system fault, in a forked child, for
tests/test_sqlite_faults.py and tests/test_file_fault_points.py. Started with the fault
shim (tests/_fault_shim.c) preloaded.

Reads JSON requests on stdin, one a line: ``{"op", "dir", "at", "errno", "sticky", "crash",
"writes", "backend"}`` (``crash``: 0, or 1 to exit before the call, 2 right after it;
``writes``: only writes count, and the ``at``-th is cut short; ``backend``: "sqlite" or
"file"). For each it forks a child that fills a fresh store in ``dir`` (no fault), writes
what the store holds to ``dir/before.json``, arms the shim to fail the ``at``-th file
operation under ``dir`` (or exit there, status 77, as if SIGKILLed), runs the operation,
disarms, tries one more append through the same store object, and writes the outcome to
``dir/result.json``. It answers with the child's exit status.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import traceback
from pathlib import Path

import eventlog
from tests import _fault_ops as ops

SHIM = ctypes.CDLL(None)  # the preloaded shim's functions are in the global scope
SHIM.fault_calls.restype = ctypes.c_long
SHIM.fault_fired.restype = ctypes.c_long
SHIM.fault_kind.restype = ctypes.c_char_p


def store_url(directory: Path, backend: str = "sqlite") -> str:
    """Where the runner's store is (a fresh process reads it there too)."""
    return str(directory / "store") if backend == "file" else f"sqlite:///{directory / 'store.db'}"


def copy_url(directory: Path, backend: str = "sqlite") -> str:
    return str(directory / "copy") if backend == "file" else f"sqlite:///{directory / 'copy.db'}"


def context(directory: Path, backend: str = "sqlite") -> ops.Context:
    return ops.Context(store_url(directory, backend), directory / "archive",
                       copy_url(directory, backend))


def _rows(log: eventlog.EventLog) -> dict[str, list[object]]:
    return {sid: [ops.row(e) for e in log.events(sid)] for sid in log.session_ids()}


def _dump(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def run_child(request: dict[str, object]) -> None:
    directory = Path(str(request["dir"]))
    # The answers go to the runner's stdout: what the operation prints (copy) goes to a file.
    out = os.open(directory.parent / f"{directory.name}.out", os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(out, 1)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - for as long as the child lives
    op = str(request["op"])
    backend = str(request.get("backend", "sqlite"))
    log = eventlog.open(store_url(directory, backend), snapshot_every=ops.snapshot_every(op))
    ops.populate(log)
    _dump(directory / "before.json", _rows(log))
    result: dict[str, object] = {}
    crash = request["crash"]  # False or True (before the call) from the SQLite test; 0, 1, 2
    SHIM.fault_arm(int(str(request["at"])), int(str(request["errno"])), int(bool(request["sticky"])),
                   int(crash) if isinstance(crash, int) else 0, str(directory).encode(),
                   int(bool(request.get("writes"))))
    try:
        done = ops.OPS[op](log, context(directory, backend))
        result.update(outcome="ok", events=done.events, removed=done.removed,
                      exit_code=done.exit_code, said=done.said)
    except eventlog.EventLogError as exc:
        result.update(outcome="error", error=f"{type(exc).__name__}: {exc}",
                      storage=isinstance(exc, eventlog.StorageError))
    except BaseException as exc:  # reported: the test fails on any untyped error
        result.update(outcome="untyped", error="".join(traceback.format_exception(exc)))
    finally:
        SHIM.fault_disarm()
    result.update(calls=SHIM.fault_calls(), fired=SHIM.fault_fired(),
                  kind=SHIM.fault_kind().decode())
    try:
        result["next_append"] = ops.row(log.append(ops.SID, "same.store", 1))
    except Exception as exc:  # reported to the test
        result["next_append"] = f"{type(exc).__name__}: {exc}"
    log.close()
    _dump(directory / "result.json", result)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run_child(request)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
