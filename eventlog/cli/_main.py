"""The ``eventlog`` command line: the parser, the store it works on, and how errors end a run.

argparse rather than click or typer: it is in the standard library, so the library that
agents import keeps orjson as its only dependency, and it already gives subcommands, help
and exit status 2 for usage errors. What click would add (colours, prompts, a test runner)
this tool does not need: ``run(argv)`` is directly callable from tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from ..core._errors import EventLogError, InvalidInputError
from ._args import CliError, Handler, usage_error
from ._commands import COMMANDS


class _Parser(argparse.ArgumentParser):
    """Raises instead of printing usage and exiting, so ``run`` reports one line."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')", 2)


# The parser ----------------------------------------------------------------------------------

def _add_store(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    parser.add_argument("--store", metavar="PATH|URL", default=default,
                        help="the store: a directory or URL (default: $EVENTLOG_STORE, else ./chatlogs)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eventlog", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Look at, follow, check and maintain eventlog session logs.",
        epilog="examples:\n  eventlog demo\n  eventlog sessions\n  eventlog tail -f team\n\n"
               "'eventlog COMMAND --help' shows each command's options and an example.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"eventlog {__version__}")
    _add_store(parser, default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.summary, description=command.description or command.summary,
            epilog="example:\n" + "\n".join(f"  {line}" for line in command.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.takes_store:
            _add_store(sub)
        command.arguments(sub)
        sub.set_defaults(handler=command.handler)
    return parser


def run(argv: Sequence[str]) -> int:
    """Run one command; return its exit status. Errors end as one line on stderr."""
    try:
        parser = build_parser()
        args = parser.parse_args(list(argv))
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            raise usage_error("choose a command (see 'eventlog --help')")
        return handler(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except InvalidInputError as exc:
        return _fail(str(exc), 2)
    except EventLogError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (``eventlog replay s | head``); don't let the final flush complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except Exception as exc:
        if os.environ.get("EVENTLOG_DEBUG"):
            traceback.print_exc()
        return _fail(f"internal error: {type(exc).__name__}: {exc} "
                     "(set EVENTLOG_DEBUG=1 to see where)", 1)


def _fail(message: str, code: int) -> int:
    sys.stdout.flush()
    print(f"eventlog: {message}", file=sys.stderr)
    return code
