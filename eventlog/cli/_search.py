"""``eventlog search``: the store's full-text search (``EventLog.search``) on the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core._records import Event
from ..store._search import SearchHit
from ..store._state import MESSAGE
from ._args import count, open_store, session_id
from ._terminal import iso_time, local_time, print_json, safe

SNIPPET = 60  # characters shown either side of the first match


def search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", metavar="TEXT", help="what to look for (any case; '' for filters only)")
    p.add_argument("--session", type=session_id, metavar="SESSION", help="only this session")
    p.add_argument("--sender", metavar="NAME", help="only messages from NAME")
    p.add_argument("--to", metavar="NAME", help="only messages to NAME ('*': to everyone)")
    p.add_argument("--type", action="append", metavar="TYPE", dest="types",
                   help="only events of this type (repeat; 'message' for messages)")
    p.add_argument("--newest-first", action="store_true", help="newest first (default: oldest first)")
    p.add_argument("--limit", type=count, default=50, metavar="N", help="at most N hits (default 50)")
    p.add_argument("--cursor", metavar="CURSOR", help="go on from where a previous search stopped")
    p.add_argument("--json", action="store_true", help="one JSON object per hit, then the cursor")


def cmd_search(args: argparse.Namespace) -> int:
    everyone = args.to == "*"
    hits: list[SearchHit] = []
    cursor = args.cursor
    with open_store(args) as log:
        while len(hits) < args.limit:
            page = log.search(args.query, session_id=args.session, sender=args.sender,
                              recipient=None if everyone else args.to, to_everyone=everyone,
                              types=args.types, descending=args.newest_first,
                              limit=min(1000, args.limit - len(hits)), cursor=cursor)
            hits.extend(page.hits)
            cursor = page.next_cursor
            if cursor is None:
                break
    if args.json:
        for hit in hits:
            print_json(_hit_json(hit))
        print_json({"next_cursor": cursor})
    else:
        for hit in hits:
            print(_hit_line(hit, args.query))
        if cursor is not None:
            print(f"eventlog: more hits; go on with --cursor {cursor}", file=sys.stderr)
        elif not hits:
            print("no match", file=sys.stderr)
    return 0 if hits else 1


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    event = hit.event
    return {"session_id": hit.session_id, "seq": event.seq, "type": event.type,
            "ts": iso_time(event.ts), "fields": list(hit.fields), "data": event.data}


def _hit_line(hit: SearchHit, query: str) -> str:
    event = hit.event
    head = f"{safe(hit.session_id)}  {local_time(event.ts)}  #{event.seq}"
    if event.type == MESSAGE and isinstance(event.data, dict):
        to = event.data.get("recipient")
        who = f"{safe(str(event.data.get('sender')))} -> {'all' if to is None else safe(str(to))}"
        return f"{head}  {who}: {snippet(str(event.data.get('content', '')), query)}"
    return f"{head}  [{safe(event.type)}] {snippet(_data_text(event), query)}"


def _data_text(event: Event) -> str:
    import orjson
    return orjson.dumps(event.data).decode()


def snippet(text: str, query: str, width: int = SNIPPET) -> str:
    """One line around the first (case-insensitive) match, with the match marked by
    ``[[ ]]`` when the output is not a terminal, and in bold when it is."""
    at = text.casefold().find(query.casefold()) if query else -1
    if at < 0 or len(text.casefold()) != len(text):  # casefold changed lengths: no marking
        shown = text[:2 * width]
        return _one_line(shown) + ("..." if len(text) > len(shown) else "")
    start, end = max(0, at - width), min(len(text), at + len(query) + width)
    bold = sys.stdout.isatty()
    left, right = ("\x1b[1m", "\x1b[0m") if bold else ("[[", "]]")
    middle = _one_line(text[at:at + len(query)])
    return ("..." if start else "") + _one_line(text[start:at]) + left + middle + right + \
        _one_line(text[at + len(query):end]) + ("..." if end < len(text) else "")


def _one_line(text: str) -> str:
    return safe(text).replace("\n", " ").replace("\t", " ")
