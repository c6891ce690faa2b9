"""The commands that look at and write to a store (sessions, show, tail, replay, stats, create,
post), and the table of every command with its arguments and example."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..core._errors import CorruptLogError, InvalidInputError, SessionNotFoundError
from ..core._records import ChatMessage, ChatSession
from ..core._validate import loads_strict
from ..store._log import EventLog
from ..store._state import MESSAGE, to_message
from ._main import CliError, Handler, count, open_store, session_id, store_location, usage_error
from ._terminal import (
    format_message,
    human_bytes,
    iso_time,
    local_time,
    print_json,
    safe,
    shorten,
    table,
)


def session_json(s: ChatSession, size: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "session_id": s.session_id, "participants": s.participants,
        "message_count": s.message_count, "last_seq": s.last_seq,
        "created_at": iso_time(s.created_at), "last_activity": iso_time(s.last_activity),
        "metadata": s.metadata}
    if size is not None:
        found["size_bytes"] = size
    return found


def message_json(m: ChatMessage) -> dict[str, Any]:
    return {"seq": m.seq, "id": m.id, "timestamp": iso_time(m.timestamp), "sender": m.sender,
            "recipient": m.recipient, "content": m.content, "message_type": m.message_type,
            "metadata": m.metadata}


@dataclass
class Listing:
    """Every session with its size, and the ones that could not be read (id, why)."""

    sessions: list[tuple[ChatSession, int]]
    damaged: list[tuple[str, str]]

    def report_damage(self) -> int:
        """Name the damaged sessions in one line on stderr; the exit status to end with."""
        if not self.damaged:
            return 0
        names = ", ".join(sid for sid, _ in self.damaged)
        print(f"eventlog: {len(self.damaged)} session(s) could not be read ({names}); "
              "'eventlog verify' shows why", file=sys.stderr)
        return 1


def list_store(log: EventLog) -> Listing:
    """Like ``list_sessions``, but one damaged session does not hide the others, and one
    deleted meanwhile is left out."""
    listing = Listing([], [])
    for sid in log.session_ids():
        try:
            listing.sessions.append((log.get_session(sid), log.size(sid)))
        except SessionNotFoundError:
            continue
        except CorruptLogError as exc:
            listing.damaged.append((sid, str(exc)))
    return listing


# Looking ------------------------------------------------------------------------------------

def cmd_sessions(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        listing = list_store(log)
    if args.json:
        print_json([session_json(s, size) for s, size in listing.sessions]
                   + [{"session_id": sid, "error": why} for sid, why in listing.damaged])
        return listing.report_damage()
    rows = [[s.session_id, shorten(safe(", ".join(s.participants)), 40), str(s.message_count),
             local_time(s.last_activity), human_bytes(size)] for s, size in listing.sessions]
    rows += [[sid, "(damaged: see eventlog verify)", "?", "?", "?"] for sid, _ in listing.damaged]
    if rows:
        print(table(["SESSION", "PARTICIPANTS", "MESSAGES", "LAST ACTIVITY", "SIZE"], rows,
                    right=(2, 4)))
    else:
        print(f"no sessions in {store_location(args)}", file=sys.stderr)
    return listing.report_damage()


def cmd_show(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        messages = log.get_messages(args.session, limit=args.limit)
    if args.json:
        print_json([message_json(m) for m in messages])
    else:
        for m in messages:
            print(format_message(m))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    try:
        with open_store(args) as log:
            # Take the head first: the messages printed and the ones followed then meet exactly.
            last = log.get_session(args.session).last_seq
            for m in log.get_messages(args.session, limit=args.n, before_seq=last + 1):
                print(format_message(m), flush=True)
            if args.follow:
                for event in log.follow(args.session, after_seq=last):
                    if event.type == MESSAGE:
                        print(format_message(to_message(args.session, event)), flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user stops ``tail -f``: a normal end.
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ._export import event_json  # the one JSON form of an event: export's
    out = sys.stdout.buffer
    sys.stdout.flush()
    with open_store(args) as log:
        for event in log.events(args.session, after_seq=args.after_seq):
            out.write(orjson.dumps(event_json(event)) + b"\n")
    out.flush()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        listing = list_store(log)
    listed = listing.sessions
    acts = [s.last_activity for s, _ in listed]
    stats: dict[str, Any] = {
        "store": store_location(args), "sessions": len(listed),
        "events": sum(s.last_seq for s, _ in listed),
        "messages": sum(s.message_count for s, _ in listed),
        "bytes": sum(size for _, size in listed),
        "oldest_activity": min(acts, default=None), "newest_activity": max(acts, default=None),
        "damaged_sessions": len(listing.damaged)}
    if args.json:
        for key in ("oldest_activity", "newest_activity"):
            stats[key] = None if stats[key] is None else iso_time(stats[key])
        print_json(stats)
        return listing.report_damage()
    for key, value in stats.items():
        if key == "bytes":
            value = human_bytes(value)
        elif key.endswith("_activity"):
            value = "-" if value is None else local_time(value)
        print(f"{key.replace('_', ' ') + ':':18}{value}")
    return listing.report_damage()


# Writing ------------------------------------------------------------------------------------

def cmd_create(args: argparse.Namespace) -> int:
    metadata = None
    if args.metadata is not None:
        try:
            metadata = loads_strict(args.metadata)
        except InvalidInputError as exc:
            raise usage_error(f"--metadata: {exc}") from None
    with open_store(args, create=True) as log:
        created = log.create_session(args.session, args.participant or [], metadata)
    print(created.session_id)
    return 0


def read_stdin_text() -> str:
    raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"standard input is not UTF-8 text: {exc}") from None
    # Like the shell's $(...): the newline that ends the last line is not part of the message.
    return text[:-1] if text.endswith("\n") else text


def cmd_post(args: argparse.Namespace) -> int:
    text = read_stdin_text() if args.text == "-" else args.text
    with open_store(args) as log:
        stored = log.add_message(ChatMessage(sender=args.sender, recipient=args.to, content=text,
                                             session_id=args.session, message_type=args.type))
    print(f"posted to {stored.session_id} as seq {stored.seq}")
    return 0


# The command table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    examples: tuple[str, ...]
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    takes_store: bool = True
    description: str = ""


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (ISO 8601 times) for programs")


def _one_session(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id, help="the session id")


def _show_args(p: argparse.ArgumentParser) -> None:
    _one_session(p)
    p.add_argument("--limit", type=count, metavar="N", help="only the newest N messages")
    _json_flag(p)


def _tail_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=count, default=10, metavar="N", help="how many messages (default 10)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new messages until Ctrl-C")
    _one_session(p)


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", nargs="?", type=session_id,
                   help="the new session's id (default: a random one)")
    p.add_argument("--participant", "-p", action="append", metavar="NAME", help="repeat for each")
    p.add_argument("--metadata", metavar="JSON", help="a JSON object kept with the session")


def _post_args(p: argparse.ArgumentParser) -> None:
    _one_session(p)
    p.add_argument("--sender", required=True, metavar="NAME")
    p.add_argument("--to", metavar="NAME", help="the recipient (default: everyone)")
    p.add_argument("--type", default="text", metavar="TYPE", help="message type (default: text)")
    p.add_argument("text", metavar="TEXT", help="the message; '-' reads it from standard input")


def _replay_args(p: argparse.ArgumentParser) -> None:
    _one_session(p)
    p.add_argument("--after-seq", type=count, default=0, metavar="N", help="start after seq N")


def _sessions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sessions", metavar="SESSION", nargs="*", type=session_id)


def _verify_args(p: argparse.ArgumentParser) -> None:
    _sessions_args(p)
    _json_flag(p)


def _compact_args(p: argparse.ArgumentParser) -> None:
    _sessions_args(p)
    p.add_argument("--all", action="store_true", help="compact every session")


def _cleanup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="no activity for this long: 90s, 15m, 12h, 7d, 1d12h")
    p.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    p.add_argument("--archive-dir", metavar="DIR", help="move the sessions there instead of deleting")
    _json_flag(p)


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=count, default=8765, help="port (default 8765)")
    p.add_argument("--read-only", action="store_true", help="serve no write route at all")
    p.add_argument("--allow-delete", action="store_true", help="allow deleting sessions over HTTP")
    p.add_argument("--token-file", metavar="FILE", help="the bearer token for writes")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="allow this origin (repeat)")


def _commands() -> list[Command]:
    from ._demo import cmd_demo, demo_args
    from ._history import cmd_fork, cmd_rewind, fork_args, rewind_args
    from ._search import cmd_search, search_args
    from ._transfer import cmd_copy, cmd_export, cmd_import, copy_args, export_args, import_args
    from ._upkeep import cmd_cleanup, cmd_compact, cmd_serve, cmd_verify
    return [
        Command("demo", "run several agent processes chatting, then prove nothing was lost",
                ("eventlog demo --agents 4 --messages 25",), demo_args, cmd_demo, takes_store=False),
        Command("sessions", "list sessions: participants, messages, last activity, size",
                ("eventlog sessions --store ./chatlogs",), _json_flag, cmd_sessions),
        Command("show", "print a session's transcript", ("eventlog show team --limit 20",),
                _show_args, cmd_show),
        Command("tail", "print the last messages; -f keeps following new ones",
                ("eventlog tail -n 5 -f team",), _tail_args, cmd_tail),
        Command("create", "create a session and print its id",
                ("eventlog create team --participant Agent-1 --participant Agent-2",),
                _create_args, cmd_create),
        Command("post", "post a message to a session",
                ("eventlog post team --sender Agent-1 --to Agent-2 'build is green'",
                 "git log -1 | eventlog post team --sender ci -"), _post_args, cmd_post),
        Command("fork", "copy a session's history (up to a seq) into a new session; print its id",
                ("eventlog fork team team-b --at-seq 40",), fork_args, cmd_fork),
        Command("rewind", "hide a session's events after a seq (they stay in replay and export)",
                ("eventlog rewind team --to-seq 40 --reason 'wrong turn'",), rewind_args,
                cmd_rewind),
        Command("search", "find events by text in one session or all (exit 1: no match)",
                ("eventlog search 'disk full'", "eventlog search timeout --session team --sender Agent-1",
                 "eventlog search '' --session team --type tool.result --newest-first --limit 5"),
                search_args, cmd_search),
        Command("replay", "print the raw events as JSON lines (seq, type, ts, data)",
                ("eventlog replay team --after-seq 100 | jq .data",), _replay_args, cmd_replay),
        Command("verify", "check digests, seq continuity and snapshots (exit 1 on problems)",
                ("eventlog verify", "eventlog verify team review"), _verify_args, cmd_verify),
        Command("compact", "seal, snapshot and compress session logs",
                ("eventlog compact --all", "eventlog compact team"), _compact_args, cmd_compact),
        Command("cleanup", "remove sessions with no activity for a while",
                ("eventlog cleanup --older-than 30d --dry-run",), _cleanup_args, cmd_cleanup),
        Command("export", "write a session to a file (jsonl, json or markdown)",
                ("eventlog export team -o team.jsonl", "eventlog export team --format markdown"),
                export_args, cmd_export),
        Command("import", "create a session from an exported jsonl or json file",
                ("eventlog import team.jsonl --session team-copy",), import_args, cmd_import),
        Command("stats", "sessions, events, bytes, oldest and newest activity",
                ("eventlog stats --json",), _json_flag, cmd_stats),
        Command("copy", "copy every session from one store to another (any backends)",
                ("eventlog copy ./chatlogs sqlite:///chatlogs.db --skip-existing",),
                copy_args, cmd_copy, takes_store=False),
        Command("serve", "serve the HTTP API and the live web viewer (eventlog[server])",
                ("eventlog serve --store ./chatlogs --port 8765 --read-only",),
                _serve_args, cmd_serve),
    ]


COMMANDS = _commands()
