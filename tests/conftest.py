"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Where a file store lives (not created yet: the store creates it)."""
    return tmp_path / "store"


@pytest.fixture
def file_log(root: Path) -> Iterator[eventlog.EventLog]:
    """A fresh file store."""
    with eventlog.open(root) as store:
        yield store


@pytest.fixture
def umask() -> Iterator[int]:
    """A known umask (022) for tests that check file modes."""
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fsync free, for tests that repeat a durable step hundreds of times and check
    what the files hold (fsync changes nothing a process can see without a power cut)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A temporary directory in memory (/dev/shm) when there is one, for tests that create and
    remove files by the thousand: on some disks each unlink or rmdir costs milliseconds. What
    they check (the bytes in the files) is the same on every file system."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="eventlog-test-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """One real Redis Cluster (three masters, three replicas) on loopback for the whole test
    run, stopped and its files removed at the end; skips without redis-server (fails under
    CI=true). See tests/_redis_cluster.py."""
    from ._redis_cluster import Cluster
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
