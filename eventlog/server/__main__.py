"""``python -m eventlog.server --store URL``: the same server ``eventlog serve`` runs."""

from __future__ import annotations

import argparse
import sys

from ..core._errors import EventLogError
from ._serve import serve

EXAMPLE = """example:
  python -m eventlog.server --store chatlogs --port 8765
  curl -s localhost:8765/api/sessions
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eventlog.server", epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve an eventlog store over HTTP, with a live web viewer at /.")
    parser.add_argument("--store", required=True, help="path or URL of the store")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (8765; 0 picks a free one)")
    parser.add_argument("--read-only", action="store_true", help="serve no write route at all")
    parser.add_argument("--allow-delete", action="store_true", help="serve DELETE /api/sessions/ID")
    parser.add_argument("--allow-redact", action="store_true",
                        help="serve POST /api/sessions/ID/redact (behind the token)")
    parser.add_argument("--token-file", help="file holding the bearer token for writes "
                        "(default: EVENTLOG_TOKEN, else ~/.config/eventlog/token, made if missing)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow this browser origin (repeatable; none by default)")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    try:
        serve(args.store, host=args.host, port=args.port, read_only=args.read_only,
              allow_delete=args.allow_delete, allow_redact=args.allow_redact,
              token_file=args.token_file,
              cors_origins=args.cors_origin, log_level=args.log_level)
    except (EventLogError, OSError) as exc:
        print(f"eventlog serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
