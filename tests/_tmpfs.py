"""A small tmpfs of a test's own, for real full disks (mounting needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """``where`` (made here) as a tmpfs mounted with ``options`` (``size=2m``...), unmounted
    after. Skipped when it can't be mounted, except as root under CI=true, where the real
    full disk must be tried."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = f"can't mount a tmpfs ({done.stderr.strip() or 'not root'})"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"{why}; CI=true and root, so the real full disk must be tried")
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Fill the file system holding ``directory`` to the last byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
