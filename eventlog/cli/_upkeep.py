"""The commands that maintain a store: verify, compact, cleanup, and serve (the HTTP server)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from ..core._errors import CleanupError, CorruptLogError, LockTimeoutError, SessionNotFoundError, StorageError
from ..store._log import EventLog
from ._args import CliError, open_store, store_location, usage_error
from ._proof import read_checkpoint
from ._terminal import Progress, age, human_bytes, parse_duration, print_json, safe


def _named_or_all(log: EventLog, names: Sequence[str]) -> list[str]:
    listed = log.session_ids()
    for name in names:
        # A listed session that can't be opened is a damaged one (see ``EventLog.verify``).
        if not log.session_exists(name) and name not in listed:
            raise SessionNotFoundError(name)
    return list(names) if names else listed


def cmd_verify(args: argparse.Namespace) -> int:
    checkpoint = read_checkpoint(args)
    problems: list[str] = []
    checked = events = 0
    with open_store(args) as log:
        ids = [] if checkpoint is not None and not args.sessions else _named_or_all(log, args.sessions)
        if not ids and checkpoint is not None:
            # One call for the whole store: it also names the sessions deleted since.
            report = log.verify(checkpoint=checkpoint)
            checked, events = report.sessions_checked, report.events_checked
            problems.extend(report.problems)
        with Progress("verifying", len(ids)) as progress:
            for sid in ids:
                try:
                    report = log.verify(sid, checkpoint=checkpoint)
                except SessionNotFoundError:
                    if args.sessions:
                        raise
                    continue  # deleted since it was listed
                checked += 1
                events += report.events_checked
                problems.extend(report.problems)
                progress.advance()
    if args.json:
        print_json({"ok": not problems, "sessions_checked": checked, "events_checked": events,
                    "problems": problems})
    else:
        for problem in problems:
            print(f"problem: {safe(problem)}")
        verdict = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"verified {checked} session(s), {events} event(s): {verdict}")
    return 0 if not problems else 1


def cmd_compact(args: argparse.Namespace) -> int:
    if bool(args.sessions) == bool(args.all):
        raise usage_error("name the sessions to compact, or give --all (not both)")
    done = archived = before = after = 0
    problems: list[str] = []
    with open_store(args) as log:
        ids = _named_or_all(log, args.sessions)
        with Progress("compacting", len(ids)) as progress:
            for sid in ids:
                progress.advance()
                try:
                    report = log.compact(sid)
                except SessionNotFoundError:
                    if args.sessions:
                        raise
                    continue  # deleted since it was listed
                except (CorruptLogError, LockTimeoutError) as exc:
                    problems.append(str(exc))  # damaged, or busy: left as it is
                    continue
                except StorageError as exc:
                    if args.sessions:
                        raise
                    problems.append(f"session {sid!r}: {exc}")  # its files failed: left whole
                    continue
                done += 1
                archived += report.segments_archived
                before += report.bytes_before
                after += report.bytes_after
                if args.sessions:
                    print(f"{safe(sid)}: {human_bytes(report.bytes_before)} -> "
                          f"{human_bytes(report.bytes_after)}, "
                          f"{report.segments_archived} segment(s) archived")
    for problem in problems:
        print(f"problem: {safe(problem)}")
    left = f"; {len(problems)} session(s) left as they were" if problems else ""
    print(f"compacted {done} session(s): {human_bytes(before)} -> {human_bytes(after)}, "
          f"{archived} segment(s) archived{left}")
    return 1 if problems else 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    try:
        seconds = parse_duration(args.older_than)
    except ValueError as exc:
        raise usage_error(f"--older-than: {exc}") from None
    failed: dict[str, str] = {}
    with open_store(args) as log, Progress("cleaning up", None).spin_while():
        try:
            removed = log.cleanup_old_sessions(seconds / 86400, archive_dir=args.archive_dir,
                                               dry_run=args.dry_run)
        except CleanupError as exc:  # the others were removed: say which, and which not
            removed, failed = exc.removed, {sid: str(why) for sid, why in exc.failed.items()}
    if args.json:
        print_json({"dry_run": args.dry_run, "older_than_seconds": seconds, "sessions": removed,
                    "failed": failed})
        return 1 if failed else 0
    verb = "would remove" if args.dry_run else ("archived" if args.archive_dir else "removed")
    for sid in removed:
        print(f"{verb} {safe(sid)}")
    for sid, why in failed.items():
        print(f"failed {safe(sid)}: {safe(why)}")
    left = f"; {len(failed)} old session(s) left in place" if failed else ""
    print(f"{verb} {len(removed)} session(s) with no activity in the last {age(seconds)}{left}")
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        server = importlib.import_module("eventlog.server")
    except ImportError as exc:
        missing = f" ({exc.name} is missing)" if exc.name else ""
        raise CliError(f"'eventlog serve' needs the server extra{missing}: "
                       "pip install 'eventlog[server]'", 2) from None
    server.serve(store_location(args), host=args.host, port=args.port, read_only=args.read_only,
                 allow_delete=args.allow_delete, allow_redact=args.allow_redact,
                 token_file=args.token_file,
                 cors_origins=list(args.cors_origin or []))
    return 0
