"""``eventlog fork`` and ``eventlog rewind``: the history operations of ``EventLog``."""

from __future__ import annotations

import argparse

from ._main import count, open_store, session_id


def fork_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id, help="the session to fork")
    p.add_argument("new", metavar="NEW", nargs="?", type=session_id,
                   help="the new session's id (default: a random one)")
    p.add_argument("--at-seq", type=count, metavar="N",
                   help="copy events 1..N (default: all of them)")


def cmd_fork(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        forked = log.fork(args.session, args.new, at_seq=args.at_seq)
    print(forked.session_id)
    return 0


def rewind_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id)
    p.add_argument("--to-seq", type=count, required=True, metavar="N",
                   help="keep events 1..N visible; what came after is hidden (not deleted)")
    p.add_argument("--reason", metavar="TEXT", help="why, kept in the rewind event")


def cmd_rewind(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        event = log.rewind(args.session, args.to_seq, reason=args.reason)
    print(f"rewound {args.session} to seq {args.to_seq} (the rewind is seq {event.seq})")
    return 0
