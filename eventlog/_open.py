"""``eventlog.open``: a path or URL to a store."""

from __future__ import annotations

import os
from typing import Any

from ._errors import InvalidInputError
from ._store import EventLog

_STORE_OPTIONS = ("durability", "max_event_bytes", "snapshot_every")


def open(url: str | os.PathLike[str], **options: Any) -> EventLog:
    """Open (creating if missing) the store at ``url``.

    - a filesystem path, or ``file:///abs/path``: JSONL files (the default backend)

    Store options: ``durability`` ("os" or "fsync"), ``max_event_bytes``,
    ``snapshot_every``; the rest go to the backend (for files: ``mode``,
    ``lock_timeout``, ``segment_max_bytes``, ``segment_max_events``).
    """
    store = {k: options.pop(k) for k in _STORE_OPTIONS if k in options}
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"store location must be a non-empty path or URL, not {url!r}")
    scheme, sep, rest = url.partition("://")
    if not sep or (len(scheme) < 2 and os.sep == "\\"):
        return _files(url, options, store)
    if scheme == "file":
        if not rest.startswith("/"):
            raise InvalidInputError(f"{url!r}: a file URL needs an absolute path (file:///abs/path)")
        return _files(rest, options, store)
    raise InvalidInputError(f"{url!r}: unknown store scheme {scheme!r} (use a path or file:///)")


def _files(path: str, options: dict[str, Any], store: dict[str, Any]) -> EventLog:
    from ._files import FileBackend
    try:
        backend = FileBackend(path, **options)
    except TypeError as exc:
        raise InvalidInputError(f"unknown option for the file store: {exc}") from None
    return EventLog(backend, **store)



