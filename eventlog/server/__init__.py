"""``eventlog serve``: an HTTP API and a live web viewer over any store.

Needs the optional extra: ``pip install 'eventlog[server]'`` (Starlette and uvicorn).
"""

from __future__ import annotations

import sys

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    _NEEDS = "eventlog.server needs the server extra: pip install 'eventlog[server]'"
    # ``python -m eventlog.server`` imports this package before its __main__ (runpy sets
    # argv[0] to "-m" meanwhile): a person ran it, so one line, not a traceback.
    if sys.argv[:1] == ["-m"]:
        sys.exit(f"python -m eventlog.server: {_NEEDS}")
    raise ImportError(_NEEDS) from None

from ._app import create_app
from ._context import DEFAULT_MAX_BODY_BYTES
from ._serve import serve
from ._token import default_token_file, load_token

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "default_token_file", "load_token", "serve"]
