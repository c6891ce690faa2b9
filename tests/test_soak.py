"""tools/soak.py for 30 seconds on each backend: writers, compactor, cleanup, churn and a
follower, SIGKILLed at random; nothing acknowledged lost or doubled, nothing damaged. And
the audit itself fails when an acknowledged event is gone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import _procs

SOAK = _procs.ROOT / "tools" / "soak.py"
SECONDS = 30


def soak(*args: str, timeout: float = SECONDS + 180) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(SOAK), *args], env=_procs.worker_env(),
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def figures(output: str) -> dict[str, int]:
    found = {name: int(n) for n, name in re.findall(r"(\d+) (events acknowledged|workers killed)", output)}
    found.update({name: int(n) for name, n in re.findall(
        r"(lost|duplicated|damaged|follower mismatches|untyped errors|false damage reports) (\d+)",
        output)})
    return found


@pytest.fixture
def redis_url() -> Iterator[str]:
    from . import _redis_support

    for prefix in _redis_support.run_prefix():
        yield f"redis://{_redis_support.HOST}:{_redis_support.PORT}/0?prefix={prefix}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A schema of the test's own on the shared server, dropped afterwards (or the URL
    EVENTLOG_SOAK_POSTGRES_URL names, left as it is)."""
    given = os.environ.get("EVENTLOG_SOAK_POSTGRES_URL")
    if given:
        yield given
        return
    from . import _pg_support  # skips (fails under CI=true) without psycopg or a server

    for schemas in _pg_support.schemas():
        yield f"{_pg_support.SERVER}?schema={schemas.fresh()}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "sqlite", "redis", "postgresql"])
def test_soak_loses_nothing(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = {"file": lambda: str(tmp_path / "store"),
           "sqlite": lambda: f"sqlite:///{tmp_path / 'store.db'}",
           "redis": lambda: request.getfixturevalue("redis_url"),
           "postgresql": lambda: request.getfixturevalue("postgres_url")}[backend]()
    code, output = soak(url, "--seconds", str(SECONDS), "--kill-every", "0.5",
                        "--work-dir", str(tmp_path / "work"))
    print(f"\n{backend}: {output}")
    got = figures(output)
    assert code == 0, output
    assert got["events acknowledged"] > 500 and got["workers killed"] > 10, output
    assert [got[k] for k in ("lost", "duplicated", "damaged", "follower mismatches",
                             "untyped errors", "false damage reports")] == [0] * 6, output


def test_the_audit_fails_when_acknowledged_events_are_gone(tmp_path: Path) -> None:
    """The audit counts against the ack files, not against verify: a session removed from
    under the store (which verify can't see) is every one of its acknowledged events lost."""
    store, work = tmp_path / "store", tmp_path / "work"
    code, output = soak(str(store), "--seconds", "3", "--kill-every", "0", "--work-dir", str(work))
    assert code == 0, output
    acked = [line for path in work.glob("*.acks") for line in path.read_text().splitlines()
             if line.startswith("A soak-1 ")]
    assert acked, output
    shutil.rmtree(store / "soak-1")
    code, output = soak(str(store), "--check-only", "--work-dir", str(work))
    assert code == 1, output
    assert figures(output)["lost"] == len(acked), output
