"""Running worker processes (tests/_worker.py) for the multi-process tests.

Workers are separate interpreters started with ``subprocess`` rather than
``multiprocessing`` children: a SIGKILL then hits a process that shares nothing
with the test runner, and each worker imports the eventlog of this checkout.
Workers report through an ack file (one ``os.write`` per line, so a kill never
leaves half a line that looks whole) instead of a pipe, which would fill up and
stall a fast writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_worker.py"


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=worker_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ack_lines(path: Path) -> list[list[str]]:
    """Complete lines of an ack file, split on spaces."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]  # bytes after the last newline: a line cut by a kill
    return [line.decode().split(" ") for line in lines]


def wait_for_line(path: Path, word: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line and line[0] == word for line in ack_lines(path)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before {word!r}: {stderr_of(proc)}")
        time.sleep(0.002)
    raise AssertionError(f"worker did not report {word!r} within {timeout} s")


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")


def finish(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait for a worker and fail with its stderr if it did not exit cleanly."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker timed out: {stderr_of(proc)}") from None
    if proc.returncode != 0:
        raise AssertionError(f"worker exited with {proc.returncode}: {stderr_of(proc)}")
    if proc.stderr is not None:
        proc.stderr.close()


class Spawner:
    """A worker that forks workers (see ``spawner`` in _worker.py): for tests that start and
    kill writers many times."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "spawner"], env=worker_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().strip()
        assert answer, f"the spawner died ({self.proc.poll()})"
        return answer

    def start(self, *args: object) -> int:
        return int(self._ask(" ".join(["start", *map(str, args)])))

    def kill(self, pid: int) -> None:
        """SIGKILL a worker and wait until it is gone."""
        assert self._ask(f"kill {pid}") == "dead"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for_ready(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(line == ["ready"] for line in ack_lines(path)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker became ready in {path}")
        time.sleep(0.001)
