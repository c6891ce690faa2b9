"""EventLogSaver against LangGraph: its own conformance suite, real graphs, several processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="needs eventlog[langgraph]")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

import eventlog
from eventlog.integrations.langgraph import EventLogSaver


@pytest.mark.parametrize("url", ["files", "memory", "sqlite"])
def test_langgraph_conformance_suite_passes_in_full(tmp_path: Path, url: str) -> None:
    stores = {"files": str(tmp_path / "store"), "memory": f"memory://conformance-{tmp_path.name}",
              "sqlite": f"sqlite:///{tmp_path / 'store.db'}"}
    logs: list[eventlog.EventLog] = []

    @checkpointer_test(name=f"EventLogSaver-{url}")
    async def factory() -> AsyncIterator[EventLogSaver]:
        log = eventlog.open(stores[url])
        logs.append(log)
        yield EventLogSaver(log)
        log.close()

    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}/{test}: {error}")

    report = asyncio.run(validate(factory, progress=ProgressCallbacks(on_test_result=on_result)))
    assert not failures, "\n".join(failures)
    assert report.passed_all()
    # Every capability the suite knows was detected and run, none skipped.
    assert all(r.detected and r.passed for r in report.results.values()), report.results
    assert report.conformance_level() == "FULL"
