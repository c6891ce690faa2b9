"""``eventlog sessions``: the session catalog on the command line, filtered and paged."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..core._errors import InvalidInputError, SessionNotFoundError
from ..core._records import ChatSession
from ..core._validate import loads_strict
from ._args import open_store, positive, store_location
from ._listing import Listing, list_store, session_json
from ._terminal import human_bytes, local_time, parse_duration, print_json, safe, shorten, table

ORDERS = ("session_id", "last_activity", "created_at")


def sessions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=positive, metavar="N",
                   help="show one page of N sessions, and the --cursor that continues it")
    p.add_argument("--cursor", metavar="CURSOR", help="continue a listing where its last page ended")
    p.add_argument("--participant", metavar="NAME", help="only sessions NAME takes part in")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", default=[],
                   help="only sessions whose metadata KEY is VALUE (JSON if it parses as JSON, "
                        "else the text; repeat for more keys)")
    p.add_argument("--prefix", metavar="TEXT", help="only sessions whose id starts with TEXT")
    p.add_argument("--since", metavar="DURATION", type=_duration,
                   help="only sessions active within DURATION (2h, 7d)")
    p.add_argument("--order", choices=ORDERS, default="session_id",
                   help="sort by this (default: session_id)")
    p.add_argument("--descending", action="store_true", help="the other way round (newest first)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metadata(pairs: list[str]) -> dict[str, Any] | None:
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--meta takes KEY=VALUE, not {pair!r}")
        try:
            found[key] = loads_strict(value)
        except InvalidInputError:
            found[key] = value  # not JSON: the text itself
    return found


def _query(args: argparse.Namespace) -> dict[str, Any]:
    since = None if args.since is None else time.time() - args.since
    return {"participant": args.participant, "metadata": _metadata(args.meta),
            "prefix": args.prefix, "active_after": since, "order": args.order,
            "descending": args.descending}


def cmd_sessions(args: argparse.Namespace) -> int:
    narrowed = (args.limit is not None or args.cursor is not None or args.participant
                or args.meta or args.prefix is not None or args.since is not None
                or args.order != "session_id" or args.descending)
    next_cursor = None
    with open_store(args) as log:
        if narrowed:
            query = _query(args)
            if args.limit is not None or args.cursor is not None:
                page = log.page_sessions(args.limit or 100, args.cursor, **query)
                found, next_cursor = page.sessions, page.next_cursor
            else:
                found = log.list_sessions(**query)
            listing = Listing(_sized(log, found), [])
        else:
            # Every session, each read from its log (not the catalog): this listing names the
            # damaged ones, as stats and verify do.
            listing = list_store(log)
    if args.json:
        rows = ([session_json(s, size) for s, size in listing.sessions]
                + [{"session_id": sid, "error": why} for sid, why in listing.damaged])
        print_json({"sessions": rows, "next_cursor": next_cursor}
                   if args.limit is not None or args.cursor is not None else rows)
        return listing.report_damage()
    rows_shown = [[safe(s.session_id), shorten(safe(", ".join(s.participants)), 40),
                   str(s.message_count), local_time(s.last_activity), human_bytes(size)]
                  for s, size in listing.sessions]
    rows_shown += [[safe(sid), "(damaged: see eventlog verify)", "?", "?", "?"]
                   for sid, _ in listing.damaged]
    if rows_shown:
        print(table(["SESSION", "PARTICIPANTS", "MESSAGES", "LAST ACTIVITY", "SIZE"], rows_shown,
                    right=(2, 4)))
    elif not narrowed:
        print(f"no sessions in {store_location(args)}", file=sys.stderr)
    else:
        print("no sessions match", file=sys.stderr)
    if next_cursor is not None:
        print(f"more: add --cursor {next_cursor}", file=sys.stderr)
    return listing.report_damage()


def reindex_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a line")


def cmd_reindex(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        count = log.reindex()
    if args.json:
        print_json({"sessions": count})
    else:
        print(f"reindexed {count} session(s)")
    return 0


def _sized(log: Any, sessions: list[ChatSession]) -> list[tuple[ChatSession, int]]:
    found = []
    for s in sessions:
        try:
            found.append((s, log.size(s.session_id)))
        except SessionNotFoundError:
            continue  # deleted meanwhile
    return found
