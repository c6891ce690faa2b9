"""Where a command's ``-o FILE`` goes: standard output, or a file that appears whole or not
at all (written aside under a hidden name, then renamed over FILE), the temporary file
removed whatever stops the write. ``export`` and ``checkpoint`` share it: checkpoint's own
copy once left its temporary file behind when a write failed."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from ..core._errors import EventLogError
from ._args import CliError


@contextmanager
def output_file(path: str | os.PathLike[str] | None) -> Iterator[IO[bytes]]:
    """Standard output (``path`` None), or ``path`` written whole or not at all."""
    if path is None:
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CliError(f"can't write {path}: it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise CliError(f"can't write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp, path)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass  # the error that stopped the write is the one to report
        if isinstance(exc, OSError) and not isinstance(exc, EventLogError):
            # The temporary file's name means nothing to the user: name the path given.
            raise CliError(f"can't write {path}: {exc.strerror or exc}") from None
        raise
