"""Worker processes: started fresh (never forked), so their memory and their count are their own.

The protocol is three lines: the parent sends the job as JSON, the child does its untimed
set-up and answers ``ready``; once every child is ready the parent sends ``go`` to all, and
each answers with one JSON line of what it measured. Start-up (interpreter, imports, data
generation) is therefore never inside a timing.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_bench_child.py")
REPO = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its stderr."""


def memory_kb() -> dict[str, int]:
    """This process's peak RSS in KiB (``peak_kb``), and its current RSS where the kernel says.

    On Linux the peak is ``VmHWM`` from /proc: ``ru_maxrss`` is carried across ``execve``, so a
    fresh worker would report its parent's size at the moment it was spawned (measured here:
    every worker "peaked" at the benchmark's own 49 MB).
    """
    found = {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        found["maxrss_kb"] //= 1024
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    found[key.lower() + "_kb"] = int(value.split()[0])
    except OSError:
        pass
    found["peak_kb"] = found.get("vmhwm_kb", found["maxrss_kb"])
    return found


def child_env() -> dict[str, str]:
    """The environment for workers: the checkout's eventlog first, as in the parent."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONSTARTUP", None)
    return env


def run_workers(jobs: list[dict[str, Any]], timeout: float = 900.0) -> list[dict[str, Any]]:
    """Run one worker per job, released together; returns their reports in job order.

    Each report gets ``released`` (monotonic time of the ``go``) added.
    """
    procs = [subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env()) for _ in jobs]

    def kill_all() -> None:
        for proc in procs:
            proc.kill()

    watchdog = threading.Timer(timeout, kill_all)
    watchdog.start()
    try:
        for proc, job in zip(procs, jobs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        for proc in procs:
            _expect(proc, "ready")
        released = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            report = json.loads(_expect(proc, "{"))
            report["released"] = released
            reports.append(report)
        for proc in procs:
            proc.communicate()
        return reports
    finally:
        watchdog.cancel()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _expect(proc: subprocess.Popen[str], start: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(start):
        proc.kill()
        _, err = proc.communicate()
        raise WorkerError(f"worker {proc.pid} failed (exit {proc.returncode}): "
                          f"{(line + err).strip()[-2000:] or 'no output'}")
    return line


def max_overlap(reports: list[dict[str, Any]]) -> int:
    """How many workers were appending at the same moment, at most (measured from their clocks:
    CLOCK_MONOTONIC is one clock for every process of a machine)."""
    edges = sorted([(r["start"], 1) for r in reports] + [(r["end"], -1) for r in reports],
                   key=lambda e: (e[0], e[1]))
    active = best = 0
    for _, step in edges:
        active += step
        best = max(best, active)
    return best
