"""tools/bench.py runs end to end (a smoke test: it checks what the run reports, never its speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("append", "durable", "concurrent", "concurrent_durable", "replay", "stream", "tail", "sessions")


def test_quick_run_completes_and_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--quiet", "--json", str(out),
         "--workdir", str(tmp_path), "--compaction"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| workload | eventlog-file |" in proc.stdout
    assert "Targets" in proc.stdout

    report = json.loads(out.read_text())
    assert {"machine", "config", "columns", "skipped", "results", "targets", "notes"} <= report.keys()
    assert report["config"]["quick"] is True
    assert {"cpu", "cores", "python", "filesystem"} <= report["machine"].keys()
    for column in ("eventlog-file", "floor", "sqlite-wal", "json-rewrite"):
        assert column in report["columns"], report["skipped"]

    results = report["results"]
    for workload in WORKLOADS:
        cell = results[workload]["eventlog-file"]
        assert "error" not in cell, (workload, cell)
    assert results["append"]["eventlog-file"]["messages"] == report["config"]["sizes"]["messages"]
    assert results["append"]["eventlog-file"]["per_s"] > 0
    sizes = report["config"]["sizes"]
    for workload in ("concurrent", "concurrent_durable"):
        cell = results[workload]["eventlog-file"]
        if workload == "concurrent":
            assert cell["messages"] == sizes["procs"] * sizes["per_proc"]
        else:  # one writer, then all of them, twice
            assert cell["messages"] == 2 * (1 + sizes["procs"]) * sizes["durable_per_proc"]
            assert cell["x_single"] > 0
        assert (cell["lost"], cell["duplicated"], cell["damaged"], cell["failed"]) == (0, 0, 0, 0)
        assert cell["problems"] == []
        assert cell["writers"] == sizes["procs"]  # measured: distinct worker pids
    assert results["stream"]["eventlog-file"]["peak_rss_mb"] > 0
    assert results["tail"]["eventlog-file"]["tail_long_ms"] > 0
    compacted = results["compaction"]["eventlog-file"]
    assert "error" not in compacted and compacted["bytes_after"] < compacted["bytes_before"]
    # The other eventlog backends run workload 7 at their capped size, and say so.
    sqlite_sessions = results["sessions"]["eventlog-sqlite"]
    assert sqlite_sessions["sessions"] == sqlite_sessions["capped"] == sizes["capped_sessions"]
    assert results["sessions"]["eventlog-file"]["sessions"] == sizes["sessions"]

    statuses = {t["target"]: t["status"] for t in report["targets"]}
    assert statuses["concurrent append: 0 lost/duplicated/damaged, verify ok"] == "PASS"
    assert all(s in ("PASS", "MISS", "n/a", "info") for s in statuses.values())
    # The run cleans up after itself: nothing is left to be reused by the next run.
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]
