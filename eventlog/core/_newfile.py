"""A small file (a key, a token) created whole or not at all, and never over another.

Written under a temporary name in the same folder, flushed to disk, then linked to its
name: ``link`` fails if the name exists (so two processes racing to make it keep the
first), and a write cut short by a full disk leaves nothing under the name, where an
``O_EXCL`` create written in place left a partial file that every later run then refused
to replace (``eventlog keygen``) or read as the real thing (a server's token file).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` with ``mode``; ``FileExistsError`` if it exists,
    another ``OSError`` if it can't be written, and then nothing is left behind."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, path)
    finally:
        os.unlink(temp)
