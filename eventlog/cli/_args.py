"""What every command shares: how a run ends with an error (``CliError``), the handler type,
where the store is and how it is opened, and the small argument types. Commands import this,
never ``_main`` (which imports the commands to build its parser), so the imports go one way:
``_main`` -> ``_commands`` -> the command modules -> ``_args``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ..core._errors import InvalidInputError, StoreNotFoundError
from ..store._log import EventLog

DEFAULT_STORE = "chatlogs"
Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """Ends a run with one line on stderr and exit status ``code`` (2: usage, 1: failure)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def usage_error(message: str) -> CliError:
    return CliError(message, 2)


# The store ----------------------------------------------------------------------------------

def store_location(args: argparse.Namespace) -> str:
    """``--store``, else ``$EVENTLOG_STORE``, else ``./chatlogs``."""
    return str(getattr(args, "store", None) or os.environ.get("EVENTLOG_STORE") or DEFAULT_STORE)


def open_location(location: str, *, create: bool) -> EventLog:
    """Open a store; a command that only reads (``create=False``) refuses a location that
    holds no store, on every backend, rather than create an empty one in the wrong place."""
    import eventlog
    try:
        return eventlog.open(location, create=create)
    except StoreNotFoundError as exc:
        raise CliError(f"no store at {location}: {exc.reason} "
                       "(give --store PATH|URL or set EVENTLOG_STORE)") from None


def open_store(args: argparse.Namespace, *, create: bool = False) -> EventLog:
    return open_location(store_location(args), create=create)


# Argument types -------------------------------------------------------------------------------

def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive(text: str) -> int:
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("it must be at least 1")
    return value


def session_id(text: str) -> str:
    from ..core._validate import check_session_id
    try:
        return check_session_id(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
