"""The bearer token writes need: from a token file, ``EVENTLOG_TOKEN``, or made once and kept.

A made token is written to a new file with mode 0600 (its directory 0700) and shown once,
on stderr; afterwards it is only read back. A token file others can read is refused, as
ssh refuses such a key, because anyone who can read it can write to every session.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path
from typing import TextIO

from ..core._errors import InvalidInputError
from ..core._newfile import write_new_file

MIN_TOKEN = 16


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "eventlog" / "token"


def load_token(token_file: str | os.PathLike[str] | None = None, *, out: TextIO | None = None) -> str:
    """``token_file`` if given, else ``EVENTLOG_TOKEN`` if set, else the default token file."""
    if token_file is None:
        env = os.environ.get("EVENTLOG_TOKEN", "").strip()
        if env:
            return _checked(env, "EVENTLOG_TOKEN")
        path = default_token_file()
    else:
        path = Path(token_file)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        write_new_file(path, f"{token}\n".encode(), 0o600)
    except FileExistsError:  # another server made it meanwhile: use that one
        return _read(path)
    print(f"eventlog: made a bearer token for writes, kept in {path} (mode 0600); "
          f"it is shown only this once:\n\n    {token}\n", file=out or sys.stderr, flush=True)
    return token


def _read(path: Path) -> str:
    with open(path) as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidInputError(f"token file {path} can be read by others "
                                    f"(mode {stat.S_IMODE(mode):04o}): run chmod 600 {path}")
        return _checked(file.read().strip(), f"token file {path}")


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise InvalidInputError(f"{where}: a token must be at least {MIN_TOKEN} characters, no spaces")
    return token
