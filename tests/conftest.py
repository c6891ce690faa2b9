"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
