"""Moving histories in and out: ``export``, ``import`` and ``copy``.

An export keeps every event exactly (seq, type, ts, data), so importing it elsewhere
gives an identical history; the jsonl form puts one header line first, naming the
session, then the events one per line exactly as ``replay`` prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson

from ..core._codec import FORMAT_VERSIONS, ChainReader, Head
from ..core._errors import (
    CorruptLogError,
    InvalidInputError,
    SessionExistsError,
    SessionNotFoundError,
)
from ..core._frames import header_version, parse_header, parse_trailer
from ..core._records import ChatSession, Event, keyed_event
from ..core._validate import loads_strict
from ..store._log import EventLog
from ._args import CliError, open_location, open_store, session_id, store_location, usage_error
from ._export import EXPORT_FORMAT, EXPORTERS, HEADER_KEY
from ._output import output_file
from ._terminal import Progress, safe

EVENT_KEYS = frozenset(("seq", "type", "ts", "data"))
KEYED_EVENT_KEYS = frozenset(("seq", "type", "ts", "data", "key"))


# export -------------------------------------------------------------------------------------

def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id)
    p.add_argument("--format", choices=("jsonl", "json", "markdown"), default="jsonl",
                   help="jsonl (default) and json keep every event exactly; markdown is for people")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")


def cmd_export(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        events = log.events(args.session)
        first = next(events, None)  # before creating a file: an unknown session fails cleanly
        if first is None:
            raise CliError(f"session {args.session!r} holds no events to export")
        with output_file(args.output) as out:
            EXPORTERS[args.format](args.session, _chain(first, events), out)
    return 0


def _chain(first: Event, rest: Iterator[Event]) -> Iterator[Event]:
    yield first
    yield from rest


# import -------------------------------------------------------------------------------------

def import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a jsonl or json export ('-': standard input)")
    p.add_argument("--session", type=session_id, metavar="ID",
                   help="import under this id (default: the id in the export)")


class _ExportReader:
    """Reads an export (jsonl with or without its header line, or json) as events; also a
    session archived by ``cleanup --archive-dir`` (a sealed segment), checking its digests."""

    def __init__(self, name: str, stream: IO[bytes], progress: Progress) -> None:
        self.name = name
        self.stream = stream
        self.progress = progress
        self.session_id: str | None = None
        self.count = 0
        self._first: tuple[int, Any] | None = None
        self._document: list[Any] | None = None
        self._segment: Head | None = None
        self._version: int | None = None
        self._sealed: Head | None = None
        self._lineno = 0
        self._read_start()

    def _fail(self, where: str, why: str) -> CliError:
        return CliError(f"{self.name}{where}: {why}")

    def _read_start(self) -> None:
        line = self._next_line()
        if line is None:
            raise self._fail("", "empty file, nothing to import")
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = self._read_document(line)  # a pretty-printed json export
        else:
            obj = self._decode(line)
        if isinstance(obj, dict) and HEADER_KEY in obj:
            if obj[HEADER_KEY] != EXPORT_FORMAT or not isinstance(obj.get("session_id"), str):
                raise self._fail(f" line {self._lineno}", "not an eventlog export header this "
                                 "version can read")
            self.session_id = obj["session_id"]
            if "events" in obj:
                if not isinstance(obj["events"], list):
                    raise self._fail("", "'events' is not a list")
                self._document = obj["events"]
        elif (start := parse_header(line)) is not None and isinstance(obj.get("session"), str):
            if start.seq != 0:
                raise self._fail("", "a segment that does not start the session's history")
            self.session_id = obj["session"]
            self._segment = start
            self._version = header_version(line)
        else:
            self._first = (self._lineno, obj)

    def _read_document(self, first: bytes) -> Any:
        rest = self.stream.read()
        self.progress.advance(len(rest))
        return self._decode(first + rest, "")

    def _decode(self, raw: bytes, where: str | None = None) -> Any:
        """JSON read as strictly as append checks it: an integer past 64 bits or a key given
        twice is refused, not turned into a float or its last value (see ``loads_strict``)."""
        try:
            return loads_strict(raw)
        except InvalidInputError as exc:
            raise self._fail(f" line {self._lineno}" if where is None else where, str(exc)) from None

    def _next_line(self) -> bytes | None:
        for line in self.stream:
            self._lineno += 1
            self.progress.advance(len(line))
            if line.strip():
                return line
        return None

    def events(self) -> Iterator[Event]:
        if self._segment is not None:
            assert self.session_id is not None
            if self._version not in FORMAT_VERSIONS:
                raise self._fail(" line 1", f"format version {self._version!r} is not one this "
                                 "eventlog reads")
            assert self._version is not None
            chain = ChainReader(self.session_id, self._segment, self._version)
            for event in chain.read(self._segment_records()):
                self.count += 1
                yield event
            if chain.torn_at is not None:
                raise self._fail(f" line {chain.torn_at[1]}", "not a record")
            if self._sealed != chain.head:
                # The trailer names the last record: without it, a cut file would pass.
                raise self._fail("", "the archive is incomplete (its trailer is missing or "
                                 "does not match its last record)")
            return
        if self._document is not None:
            for index, obj in enumerate(self._document):
                yield self._event(f" event {index + 1}", obj)
            return
        if self._first is not None:
            yield self._event(f" line {self._first[0]}", self._first[1])
        while (line := self._next_line()) is not None:
            yield self._event(f" line {self._lineno}", self._decode(line))

    def _segment_records(self) -> Iterator[tuple[str, int, bytes]]:
        while (line := self._next_line()) is not None:
            line = line.rstrip(b" \n")  # records of a batch end with a space
            sealed = parse_trailer(line)
            if sealed is None:
                if line.startswith(b'{"seq":'):
                    self._decode(line)  # the chain reads it with orjson: check it first
                yield self.name, self._lineno, line
            else:
                self._sealed = sealed

    def _event(self, where: str, obj: Any) -> Event:
        if not isinstance(obj, dict) or (obj.keys() != EVENT_KEYS and (
                obj.keys() != KEYED_EVENT_KEYS or type(obj["key"]) is not str)):
            raise self._fail(where, "not an event (an object with exactly seq, type, ts and data, "
                                    "and a string key if it was appended with one)")
        seq, kind, ts = obj["seq"], obj["type"], obj["ts"]
        if type(seq) is not int or type(kind) is not str or type(ts) not in (int, float):
            raise self._fail(where, "seq must be an integer, type a string and ts a number")
        self.count += 1
        return keyed_event(seq, kind, ts, obj["data"], obj.get("key"))


def cmd_import(args: argparse.Namespace) -> int:
    with _input(args.file) as (stream, size), Progress("importing", size, unit="bytes") as progress:
        reader = _ExportReader("standard input" if args.file == "-" else args.file, stream, progress)
        sid = args.session or reader.session_id
        if sid is None:
            raise usage_error(f"{reader.name} does not name its session (no export header): "
                              "give --session ID")
        with open_store(args, create=True) as log:
            if log.session_exists(sid):
                raise CliError(f"session {sid!r} already exists in {store_location(args)}; "
                               "import it under another id with --session ID")
            try:
                state = log.import_events(sid, reader.events())
            except InvalidInputError as exc:  # the file's content, not the command line
                raise CliError(f"{reader.name}: {exc}; nothing was imported") from None
    print(f"imported {reader.count} events into session {safe(sid)} ({state.message_count} messages)")
    return 0


@contextmanager
def _input(path: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if path == "-":
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as stream:
        stat = os.fstat(stream.fileno())
        yield stream, stat.st_size if stat.st_size else None


# copy ---------------------------------------------------------------------------------------

def copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC", help="the store to copy from (path or URL)")
    p.add_argument("target", metavar="DST", help="the store to copy into (path or URL)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out sessions DST already has (default: refuse, copy nothing)")


def cmd_copy(args: argparse.Namespace) -> int:
    copied = skipped = events = 0
    problems: list[str] = []
    damaged: list[str] = []
    with open_location(args.source, create=False) as src, \
            open_location(args.target, create=True) as dst:
        ids = src.session_ids()
        existing = [sid for sid in ids if dst.session_exists(sid)]
        if existing and not args.skip_existing:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise CliError(f"{len(existing)} session(s) already exist in {args.target} ({shown}); "
                           "nothing was copied (--skip-existing copies the others)")
        with Progress("copying", len(ids)) as progress:
            for sid in ids:
                progress.advance()
                if sid in existing:
                    skipped += 1
                    continue
                try:
                    state = _copy_session(src, dst, sid, args.skip_existing)
                except (CorruptLogError, InvalidInputError) as exc:
                    # A damaged source session is not copied (the import takes back what it
                    # wrote), and it never stops the copy of the others.
                    damaged.append(f"{sid}: {exc}")
                    continue
                if state is None:
                    skipped += 1
                    continue
                problems.extend(dst.verify(sid).problems)
                copied += 1
                events += state.last_seq
    for problem in damaged:
        print(f"damaged: {safe(problem)}")
    for problem in problems:
        print(f"problem: {safe(problem)}")
    verdict = "the copy verifies" if not problems else f"{len(problems)} problem(s) in the copy"
    left = f"; {len(damaged)} damaged session(s) not copied" if damaged else ""
    print(f"copied {copied} session(s), {events} event(s), from {args.source} to {args.target}; "
          f"skipped {skipped} existing{left}; {verdict}")
    return 0 if not problems and not damaged else 1


def _copy_session(src: EventLog, dst: EventLog, sid: str, skip_existing: bool) -> ChatSession | None:
    """Copy one session whole; None if it is gone from SRC or (``skip_existing``) in DST."""
    try:
        return dst.import_events(sid, src.events(sid))
    except SessionNotFoundError:
        return None  # deleted from SRC since it was listed
    except SessionExistsError:
        if not skip_existing:
            raise
        return None
