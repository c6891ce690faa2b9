"""Check an eventlog store against the README's "On-disk format" section, and nothing else.

Written from that section alone: it imports nothing from eventlog, and only the standard
library (and psycopg, only to read a PostgreSQL store), so it is a second, independent
reading of the format. If it and eventlog disagree about a store, one of them (or the
README) is wrong.

    python tools/checkstore.py chatlogs          # a file store directory
    python tools/checkstore.py chatlogs.db       # an SQLite store (or sqlite:///chatlogs.db)
    python tools/checkstore.py 'postgresql://user@host/db?schema=NAME'   # a PostgreSQL store
    python tools/checkstore.py chatlogs --json   # {"ok", "format", "version", "sessions", "problems"}

Exit status 0 when the store is sound, 1 when a problem was found (each is printed), 2 when
the store can't be read at all. It writes nothing (SQLite is opened read-only; only a WAL file
left by a store in use makes SQLite add its -shm index beside it; PostgreSQL is read in one
read-only transaction). Run it on a store no process is writing to: a live store can look
torn where a write is in flight.

The format version is dispatched in one place, ``FORMATS``: a new version adds its class
there (its record, digest, genesis, fold and redaction rules), beside the README's
description of it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sqlite3
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LEGACY_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
PLAIN_NAME = re.compile(r"[a-z0-9_-](?:[a-z0-9._-]*[a-z0-9_-])?")
ESCAPED_NAME = re.compile(r"~(?:[a-z0-9_-]|%[0-9a-f]{2})*")
LONG_NAME = re.compile(r"(~(?:[a-z0-9_-]|%[0-9a-f]{2})*)~([0-9a-f]{16})")
DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
           *(f"lpt{i}" for i in range(1, 10))}
SEGMENT = re.compile(r"seg-(\d{16})\.jsonl(\.gz)?")
SNAPSHOT = re.compile(r"snap-(\d{16})\.json")
QUARANTINE = re.compile(r"quarantine-\d+-seg-\d{16}\.jsonl\.bin")
HEX32 = re.compile(rb"[0-9a-f]{32}")
HEX64 = re.compile(rb"[0-9a-f]{64}")


class Damage(Exception):
    """One problem, found where reading can't go on."""


# The record format, by version --------------------------------------------------------------

@dataclass
class State:
    """A session's state, as the README's fold defines it."""

    participants: list[str] = field(default_factory=list)
    metadata: Any = field(default_factory=dict)
    created_at: float = 0.0
    last_activity: float | None = None
    message_count: int = 0
    forked_from: list[Any] | None = None
    rewinds: list[list[int]] = field(default_factory=list)

    def visible(self) -> tuple[Any, ...]:
        """What a rewind to this point restores (see the README's fold)."""
        return (list(self.participants), json.dumps(self.metadata), self.message_count,
                [list(r) for r in self.rewinds])


class FormatV1:
    """Format version 1: records, the digest chain, the fold, snapshots."""

    version = 1
    SUFFIX = 40  # ,"h":"<32 hex>"}
    CHECK = 76  # ,"check":"<64 hex>"}
    KEYS = ("seq", "type", "ts", "data", "h")
    KEYED = ("seq", "type", "ts", "data", "k", "h")  # an idempotency key: "k", a string
    SNAPSHOT_KEYS = ("eventlog_snapshot", "session_id", "seq", "h", "participants", "metadata",
                     "created_at", "last_activity", "message_count", "position", "check")

    def genesis(self, session_id: str) -> str:
        return hashlib.sha256(b"eventlog/1\0" + session_id.encode()).hexdigest()[:32]

    def looks_like_record(self, line: bytes) -> bool:
        return line.startswith(b'{"seq":') or (
            len(line) >= self.SUFFIX and line[-self.SUFFIX:-34] == b',"h":"' and line[-2:] == b'"}'
            and not line.startswith(b'{"sealed":'))

    def record(self, line: bytes, prev: str) -> dict[str, Any]:
        """The record ``line`` holds, checked against the chain from ``prev``; else ``Damage``."""
        if not (line.startswith(b'{"seq":') and len(line) > self.SUFFIX
                and line[-self.SUFFIX:-34] == b',"h":"' and HEX32.fullmatch(line[-34:-2])
                and line[-2:] == b'"}'):
            raise Damage("not a record line")
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise Damage(f"not valid JSON ({exc})") from None
        if not isinstance(obj, dict) or (tuple(obj) != self.KEYS and (
                tuple(obj) != self.KEYED or type(obj["k"]) is not str)):
            raise Damage("not a record object (seq, type, ts, data, h; or with k before h)")
        if type(obj["seq"]) is not int or type(obj["type"]) is not str \
                or type(obj["ts"]) not in (int, float):
            raise Damage("seq must be an integer, type a string, ts a number")
        body = line[:-self.SUFFIX] + b"}"
        if self.digest(prev, body, obj) != obj["h"]:
            raise Damage("h does not match: the record was altered, or one before it is missing")
        return obj

    def digest(self, prev: str, body: bytes, obj: dict[str, Any]) -> str:
        return hashlib.sha256(prev.encode() + body).hexdigest()[:32]

    def redactions(self, chain: Chain, obj: dict[str, Any], where: str) -> None:
        """Version 1 has no redaction."""

    def fold(self, state: State, event: dict[str, Any]) -> None:
        data, kind, ts = event["data"], event["type"], event["ts"]
        if kind == "session.created":
            state.participants = list(data.get("participants") or [])
            state.metadata = dict(data.get("metadata") or {})
            state.created_at = ts
        elif kind == "message":
            state.message_count += 1
            for who in (data["sender"], data.get("recipient")):
                if who is not None and who not in state.participants:
                    state.participants.append(who)
        elif kind == "session.participant_joined":
            if data["participant"] not in state.participants:
                state.participants.append(data["participant"])
        elif kind == "session.participant_left" and data["participant"] in state.participants:
            state.participants.remove(data["participant"])
        elif kind == "session.forked":
            state.forked_from = [data["parent"], data["seq"]]
        state.last_activity = ts if state.last_activity is None else max(state.last_activity, ts)

    def snapshot(self, blob: bytes, session_id: str) -> dict[str, Any]:
        """A snapshot's members, its check verified; else ``Damage``."""
        if len(blob) <= self.CHECK or blob[-self.CHECK:-66] != b',"check":"' \
                or not HEX64.fullmatch(blob[-66:-2]) or blob[-2:] != b'"}':
            raise Damage("does not end in its check member")
        if hashlib.sha256(blob[:-self.CHECK] + b"}").hexdigest().encode() != blob[-66:-2]:
            raise Damage("check does not match")
        try:
            obj = json.loads(blob)
        except ValueError as exc:
            raise Damage(f"not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise Damage("not a snapshot object")
        keys = tuple(obj)
        optional = tuple(k for k in ("forked_from", "rewinds") if k in obj)
        if keys != (*self.SNAPSHOT_KEYS[:9], *optional, *self.SNAPSHOT_KEYS[9:]):
            raise Damage("not a snapshot object")
        if obj["eventlog_snapshot"] != 1 or obj["session_id"] != session_id:
            raise Damage("of another format version or session")
        return obj

    def same_state(self, snap: dict[str, Any], state: State, head: tuple[int, str]) -> bool:
        return (snap["seq"], snap["h"]) == head and snap["participants"] == state.participants \
            and snap["metadata"] == state.metadata and snap["created_at"] == state.created_at \
            and snap["last_activity"] == state.last_activity \
            and snap["message_count"] == state.message_count \
            and snap.get("forked_from") == state.forked_from \
            and snap.get("rewinds", []) == state.rewinds


class FormatV2(FormatV1):
    """Format version 2: the chain covers a hash of each record's data, so a record's data
    can be redacted (replaced by a tombstone) and its digest still checks."""

    version = 2
    DATA = b',"data":'

    def digest(self, prev: str, body: bytes, obj: dict[str, Any]) -> str:
        # The first ,"data": is the member: seq and ts are numbers, type a string (where a
        # bare quote can't stand); data runs to the body's end, or to its "k" member.
        start = body.index(self.DATA) + len(self.DATA)
        tail = b"}"
        if "k" in obj:
            tail = b',"k":' + json.dumps(obj["k"], ensure_ascii=False,
                                         separators=(",", ":")).encode() + b"}"
        if not body.endswith(tail):
            raise Damage("the members after data are not as written")
        end = len(body) - len(tail)
        stated = self.tombstone(obj["data"])
        hashed = stated if stated is not None else hashlib.sha256(body[start:end]).hexdigest()
        chain_body = body[:start] + b'"' + hashed.encode() + b'"' + body[end:]
        return hashlib.sha256(prev.encode() + chain_body).hexdigest()[:32]

    @staticmethod
    def tombstone(data: Any) -> str | None:
        """The sha256 a tombstone stands in for, or None if ``data`` is not one."""
        if not (isinstance(data, dict) and list(data) == ["redacted"]):
            return None
        inner = data["redacted"]
        if not (isinstance(inner, dict) and sorted(inner) == ["reason", "seq", "sha256"]
                and type(inner["reason"]) is str and type(inner["seq"]) is int
                and type(inner["sha256"]) is str and HEX64.fullmatch(inner["sha256"].encode())):
            return None
        return str(inner["sha256"])

    def fold(self, state: State, event: dict[str, Any]) -> None:
        if event["type"] == "message" and self.tombstone(event["data"]) is not None:
            # A redacted message still counts; who sent it is gone with its data.
            state.message_count += 1
            state.last_activity = (event["ts"] if state.last_activity is None
                                   else max(state.last_activity, event["ts"]))
            return
        super().fold(state, event)

    def redactions(self, chain: Chain, obj: dict[str, Any], where: str) -> None:
        """Tombstones must be named by the redaction event they point to, and a redaction
        event's seqs must hold tombstones pointing to it."""
        data = obj["data"]
        if self.tombstone(data) is not None:
            chain.tombstones[obj["seq"]] = (data["redacted"]["seq"], data["redacted"]["reason"])
        if obj["type"] == "session.forked" and isinstance(data, dict):
            # A fork copies tombstones whose redaction the source made after the fork's seq.
            for seq, (by, _reason) in list(chain.tombstones.items()):
                if type(data.get("seq")) is int and by > data["seq"]:
                    del chain.tombstones[seq]
        if obj["type"] != "session.redacted":
            return
        if not (isinstance(data, dict) and isinstance(data.get("seqs"), list)
                and type(data.get("reason")) is str):
            chain.problem(where, f"seq {obj['seq']}: a session.redacted event without seqs and reason")
            return
        for seq in data["seqs"]:
            if chain.tombstones.pop(seq, None) != (obj["seq"], data["reason"]):
                chain.problem(where, f"seq {obj['seq']} redacts seq {seq!r}, which does not hold "
                              "its tombstone")


FORMATS: dict[int, FormatV1] = {1: FormatV1(), 2: FormatV2()}
"""Every format version this checker knows: the one place a version is dispatched."""


def format_of(version: object, where: str) -> FormatV1:
    found = FORMATS.get(version) if type(version) is int else None
    if found is None:
        raise Damage(f"{where}: format version {version!r} is not one this checker knows "
                     f"({', '.join(map(str, FORMATS))})")
    return found


# A session's chain, whatever holds it -------------------------------------------------------

class Chain:
    """Walks one session's records in order: digests, seqs, the fold, and the snapshots."""

    def __init__(self, fmt: FormatV1, session_id: str, report: Report) -> None:
        self.fmt = fmt
        self.session_id = session_id
        self.report = report
        self.seq = 0
        self.h = fmt.genesis(session_id)
        self.state = State()
        self.visible: list[tuple[Any, ...]] = [State().visible()]  # by seq: for rewinds
        self.snapshots: dict[int, dict[str, Any]] = {}  # seq -> snapshot, checked on the way
        self.tombstones: dict[int, tuple[int, str]] = {}  # seq -> its redaction's (seq, reason)
        self.broken = False

    @property
    def head(self) -> tuple[int, str]:
        return self.seq, self.h

    def problem(self, where: str, why: str) -> None:
        self.report.problem(f"session {self.session_id!r}, {where}: {why}")

    def rewind(self, obj: dict[str, Any]) -> None:
        """A session.rewound event: the state at its to_seq comes back (participants,
        metadata, message count); created_at, forked_from and last_activity go on."""
        to_seq = obj["data"]["to_seq"]
        if type(to_seq) is not int or not 1 <= to_seq < obj["seq"]:
            raise Damage(f"a rewind's to_seq must be from 1 to {obj['seq'] - 1}")
        people, metadata, count, rewinds = self.visible[to_seq]
        self.state.participants, self.state.metadata = list(people), json.loads(metadata)
        self.state.message_count = count
        self.state.rewinds = [*rewinds, [to_seq, obj["seq"]]]
        last = self.state.last_activity
        self.state.last_activity = obj["ts"] if last is None else max(last, obj["ts"])

    def take(self, line: bytes, where: str) -> bool:
        """One record line; False (and a problem reported once) if the chain breaks."""
        if self.broken:
            return False
        try:
            obj = self.fmt.record(line, self.h)
            if obj["seq"] != self.seq + 1:
                raise Damage(f"seq {obj['seq']} where {self.seq + 1} was due")
            if self.seq == 0 and obj["type"] != "session.created":
                raise Damage("seq 1 is not session.created")
            if obj["type"] == "session.rewound":
                self.rewind(obj)
            else:
                self.fmt.fold(self.state, obj)
            self.fmt.redactions(self, obj, where)
            self.visible.append(self.state.visible())
        except Damage as exc:
            self.problem(where, f"seq {self.seq + 1}: {exc}")
            self.broken = True
            return False
        except (KeyError, TypeError, AttributeError) as exc:
            self.problem(where, f"seq {self.seq + 1}: data its type does not allow ({exc!r})")
            self.broken = True
            return False
        self.seq, self.h = obj["seq"], obj["h"]
        snap = self.snapshots.pop(self.seq, None)
        if snap is not None and not self.fmt.same_state(snap, self.state, self.head):
            self.problem(f"snapshot at seq {self.seq}", "does not equal the fold of events 1 to "
                         f"{self.seq}")
        return True

    def add_snapshot(self, blob: bytes, where: str, named_seq: int | None = None) -> None:
        try:
            snap = self.fmt.snapshot(blob, self.session_id)
        except Damage as exc:
            self.problem(where, f"snapshot damaged: {exc}")
            return
        if named_seq is not None and snap["seq"] != named_seq:
            self.problem(where, f"snapshot holds seq {snap['seq']}, not the seq its name says")
        self.snapshots[snap["seq"]] = snap

    def finish(self) -> None:
        if not self.broken:
            if self.seq == 0:
                self.problem("log", "holds no records")
            for seq, (by, _reason) in sorted(self.tombstones.items()):
                self.problem(f"seq {seq}", f"a tombstone that the redaction event it names "
                             f"(seq {by}) does not name")
            for seq in sorted(self.snapshots):
                self.problem(f"snapshot at seq {seq}", f"past the end of the log (seq {self.seq})")
        self.report.sessions[self.session_id] = {"events": self.seq, "head": list(self.head),
                                                 "broken": self.broken}


@dataclass
class Report:
    kind: str
    version: int | None = None
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


# The file backend ---------------------------------------------------------------------------

def check_file_store(root: Path) -> Report:
    report = Report("file")
    try:
        marker = json.loads((root / ".eventlog.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise Damage(f"{root}: no readable .eventlog.json ({exc})") from None
    if not isinstance(marker, dict) or marker.get("format") != "eventlog-jsonl":
        raise Damage(f"{root}/.eventlog.json: not an eventlog-jsonl marker")
    fmt = format_of(marker.get("version"), f"{root}/.eventlog.json")
    report.version = fmt.version
    for entry in sorted(os.listdir(root)):
        if entry.startswith(".") or not (root / entry).is_dir():
            continue
        sid = session_of(root / entry)
        if sid is None:
            report.problem(f"{entry!r}: a directory whose name is not a session id's")
            continue
        check_file_session(fmt, root / entry, sid, report)
    return report


def valid_id(sid: str) -> bool:
    """1 to 255 characters, valid Unicode (no lone surrogate), no control character."""
    try:
        sid.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 1 <= len(sid) <= 255 and CONTROL.search(sid) is None


def name_of(sid: str) -> str:
    """A session id's directory name (plain, escaped or long)."""
    if (PLAIN_NAME.fullmatch(sid) and len(sid) <= 255
            and sid.split(".", 1)[0] not in DEVICES):
        return sid
    name = "~" + "".join(c if c in "abcdefghijklmnopqrstuvwxyz0123456789_-" else
                         "".join(f"%{b:02x}" for b in c.encode("utf-8")) for c in sid)
    if len(name) <= 255:
        return name
    cut = name[:200]
    if "%" in cut[-2:]:
        cut = cut[:cut.rindex("%")]
    return cut + "~" + hashlib.blake2b(sid.encode("utf-8"), digest_size=8).hexdigest()


def session_of(directory: Path) -> str | None:
    """The id a session directory's name stands for, or None if it stands for none."""
    name = directory.name
    if LONG_NAME.fullmatch(name):
        try:
            sid = (directory / "id").read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    elif ESCAPED_NAME.fullmatch(name):
        try:
            sid = bytes(int(t[1:], 16) if t[0] == "%" else ord(t)
                        for t in re.findall(r"%[0-9a-f]{2}|[a-z0-9_-]", name[1:])).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    elif PLAIN_NAME.fullmatch(name) and name.split(".", 1)[0] not in DEVICES:
        sid = name
    elif LEGACY_ID.fullmatch(name):
        return name  # a directory named by its id, as stores before issue 15 did
    else:
        return None
    return sid if valid_id(sid) and name_of(sid) == name else None


def check_file_session(fmt: FormatV1, directory: Path, sid: str, report: Report) -> None:
    chain = Chain(fmt, sid, report)
    names = sorted(os.listdir(directory))
    page = read_lock_page(directory / "lock", chain) if "lock" in names else None
    if page is None and "lock" not in names:
        chain.problem("lock", "missing")
    segments: dict[int, set[str]] = {}
    for name in names:
        if (match := SEGMENT.fullmatch(name)) is not None:
            segments.setdefault(int(match.group(1)), set()).add(name)
        elif (match := SNAPSHOT.fullmatch(name)) is not None:
            chain.add_snapshot((directory / name).read_bytes(), name, int(match.group(1)))
        elif not (name == "lock" or name.startswith(".") or QUARANTINE.fullmatch(name)):
            report.notes.append(f"session {sid!r}: {name} is not part of the format")
    if not segments:
        chain.problem("log", "no segment files")
    firsts = sorted(segments)
    for i, first in enumerate(firsts):
        newest = i == len(firsts) - 1
        plain, packed = f"seg-{first:016d}.jsonl", f"seg-{first:016d}.jsonl.gz"
        archived = None
        if packed in segments[first]:
            archived = read_archive(fmt, directory / packed, first, chain)
        if plain in segments[first]:
            content, name = (directory / plain).read_bytes(), plain
            if archived is not None and archived != content:
                chain.problem(packed, f"does not hold the same bytes as {plain}")
        elif archived is not None:
            content, name = archived, packed
        else:
            break  # the archive is damaged: reported
        if chain.seq + 1 != first and not chain.broken:
            chain.problem(name, f"starts at seq {first}, but the log before it ends at seq "
                          f"{chain.seq}")
            chain.broken = True
        if chain.broken:
            break
        read_segment(content, name, first, newest, chain)
    if page is not None and not chain.broken:
        seq, digest = page
        if seq > chain.seq:
            chain.problem("lock", f"its page was published at seq {seq}, but the log ends at "
                          f"seq {chain.seq}: records are missing")
        elif seq == chain.seq and digest != chain.h:
            chain.problem("lock", f"its page holds another h for seq {seq} than the log")
    chain.finish()


def read_lock_page(path: Path, chain: Chain) -> tuple[int, str] | None:
    data = path.read_bytes()
    if len(data) != 64:
        chain.problem("lock", f"{len(data)} bytes, not 64")
        return None
    generation, _first, _size, seq = struct.unpack("<4Q", data[:32])
    if generation == 0 or generation & 1:
        return None  # not published: nothing to check
    return seq, data[32:48].hex()


def read_segment(content: bytes, name: str, first: int, newest: bool, chain: Chain) -> None:
    """One segment's bytes: its header, records, batches, trailer, and (newest only) torn tail."""
    lines = content.split(b"\n")
    rest = lines.pop()  # after the last newline: a write in flight, or cut short
    if not lines:
        chain.problem(name, "no header line")
        chain.broken = True
        return
    expect_header(lines[0], name, first, chain)
    batch: list[tuple[int, bytes]] = []  # members of a batch whose last record is not read yet
    torn: int | None = None  # the line a torn tail starts at
    sealed = False
    for number, line in enumerate(lines[1:], 2):
        if chain.broken:
            return
        where = f"{name} line {number}"
        if sealed:
            chain.problem(where, "something follows the trailer")
            chain.broken = True
        elif line.startswith(b'{"seq":') and line.endswith(b" "):
            if torn is None:
                batch.append((number, line[:-1]))  # a batch member: its space is no part of it
        elif line.startswith(b'{"seq":'):
            if torn is not None:
                chain.problem(where, f"a record after a torn tail (from line {torn})")
                chain.broken = True
                return
            for member_number, member in batch:
                chain.take(member, f"{name} line {member_number}")
            batch = []
            chain.take(line, where)
        elif chain.fmt.looks_like_record(line):
            chain.problem(where, "looks like a record but is not one")
            chain.broken = True
        elif line.startswith(b'{"sealed":') and torn is None and not batch:
            expect_trailer(line, where, chain)
            sealed = True
        elif torn is None:
            torn = batch[0][0] if batch else number
            batch = []
    if chain.broken:
        return
    if batch and torn is None:
        torn = batch[0][0]
    if rest and torn is None:
        torn = len(lines) + 1
    if sealed and torn is not None:
        chain.problem(name, f"something follows the trailer (from line {torn})")
        chain.broken = True
    elif not sealed and not newest:
        chain.problem(name, "not the newest segment, but not sealed (no trailer)")
        chain.broken = True
    elif torn is not None:
        chain.report.notes.append(f"session {chain.session_id!r}, {name}: a torn tail from line "
                                  f"{torn} (no part of the log; the next writer cuts it off)")


def expect_header(line: bytes, name: str, first: int, chain: Chain) -> None:
    try:
        header = json.loads(line)
        ok = list(header) == ["eventlog", "session", "first_seq", "prev"]
    except (ValueError, TypeError):
        ok = False
    if not ok:
        chain.problem(f"{name} line 1", "not a segment header")
        chain.broken = True
        return
    if header["eventlog"] != chain.fmt.version:
        chain.problem(f"{name} line 1", f"format version {header['eventlog']!r}, but the store is "
                      f"version {chain.fmt.version}")
    if header["session"] != chain.session_id or header["first_seq"] != first:
        chain.problem(f"{name} line 1", "the header names another session or first seq than the "
                      "file's name and directory")
        chain.broken = True
    elif header["prev"] != chain.h or first != chain.seq + 1:
        chain.problem(f"{name} line 1", f"the header does not continue the log (its prev is not "
                      f"the h of seq {first - 1})")
        chain.broken = True


def expect_trailer(line: bytes, where: str, chain: Chain) -> None:
    try:
        trailer = json.loads(line)
        ok = list(trailer) == ["sealed", "h"]
    except (ValueError, TypeError):
        ok = False
    if not ok:
        chain.problem(where, "not a trailer")
        chain.broken = True
    elif (trailer["sealed"], trailer["h"]) != chain.head:
        chain.problem(where, f"the trailer (seq {trailer['sealed']}) does not match the last "
                      f"record (seq {chain.seq})")
        chain.broken = True


# Archives ------------------------------------------------------------------------------------

def gzip_extra(data: bytes, at: int) -> tuple[dict[bytes, bytes], int]:
    """The FEXTRA subfields of the gzip member header at ``at``, and where its payload starts."""
    if data[at:at + 3] != b"\x1f\x8b\x08" or len(data) < at + 12:
        raise Damage(f"no gzip member header at byte {at}")
    flags = data[at + 3]
    if not flags & 4:
        raise Damage(f"the gzip member at byte {at} has no extra field")
    if flags & ~4:
        raise Damage(f"the gzip member at byte {at} has flags other than FEXTRA")
    (xlen,) = struct.unpack_from("<H", data, at + 10)
    extra = data[at + 12:at + 12 + xlen]
    if len(extra) != xlen:
        raise Damage(f"the gzip member at byte {at} is cut short")
    fields: dict[bytes, bytes] = {}
    pos = 0
    while pos < xlen:
        if pos + 4 > xlen:
            raise Damage(f"the gzip member at byte {at}: a damaged extra field")
        (length,) = struct.unpack_from("<H", extra, pos + 2)
        fields[extra[pos:pos + 2]] = extra[pos + 4:pos + 4 + length]
        if pos + 4 + length > xlen:
            raise Damage(f"the gzip member at byte {at}: a damaged extra field")
        pos += 4 + length
    return fields, at + 12 + xlen


def member_header(extra: bytes) -> bytes:
    """A member's gzip header as the spec fixes it: MTIME 0, XFL 0, OS 255."""
    if extra:
        return b"\x1f\x8b\x08\x04" + bytes(5) + b"\xff" + struct.pack("<H", len(extra)) + extra
    return b"\x1f\x8b\x08\x00" + bytes(5) + b"\xff"


def padding_set(raw: bytes) -> bool:
    """Whether the deflate stream ``raw`` (which inflates whole) ends in padding bits that
    are set. Deflate fills a byte from its low bit up, so the padding is the top bits of the
    last byte, never read. Flip that byte's bits from the top: a padding bit leaves the byte's
    output and the end of the stream as they were; the first bit that changes either is the
    last one read (the end-of-block code's last bit, or a stored block's last data bit: its
    flip always changes the output), and every bit below it is read too. A lower read bit may
    flip into another parse that still ends the stream (another match distance), so "still
    ends" alone would call healthy streams damaged."""
    before = zlib.decompressobj(-15)
    before.decompress(raw[:-1])
    whole = before.copy()
    expected = whole.decompress(raw[-1:])
    for bit in range(7, -1, -1):
        trial = before.copy()
        try:
            same = trial.decompress(bytes([raw[-1] ^ 1 << bit])) == expected
        except zlib.error:
            return False
        if not (same and trial.eof and not trial.unused_data):
            return False
        if raw[-1] >> bit & 1:
            return True
    return False


def inflate_member(data: bytes, start: int, end: int, header: bytes) -> bytes:
    """One whole gzip member, ``data[start:end]``: its CRC-32 and size checked, its header
    ``header`` exactly, and its deflate stream's final padding bits zero (no CRC covers them)."""
    if data[start:start + len(header)] != header:
        raise Damage(f"the gzip member at byte {start} has another header than the spec's")
    inflater = zlib.decompressobj(31)
    try:
        out = inflater.decompress(data[start:end])
    except zlib.error as exc:
        raise Damage(f"the gzip member at byte {start} is damaged ({exc})") from None
    if not inflater.eof or inflater.unused_data:
        raise Damage(f"the gzip member at byte {start} does not end where the index says")
    if padding_set(data[start + len(header):end - 8]):
        raise Damage(f"the gzip member at byte {start} ends in padding bits that are set")
    return out


def read_archive(fmt: FormatV1, path: Path, first: int, chain: Chain) -> bytes | None:
    """The segment bytes an archive holds, after checking its structure and index; None
    (and a problem reported) if it is damaged."""
    data = path.read_bytes()
    try:
        pointer, _ = gzip_extra(data, 0)
        if len(pointer.get(b"EL", b"")) != 9:
            raise Damage("member 0 has no EL subfield of 9 bytes")
        version, index_at = struct.unpack("<BQ", pointer[b"EL"])
        if version != 1:
            raise Damage(f"archive version {version} is not 1")
        if data[:25] != member_header(b"EL" + struct.pack("<HBQ", 9, version, index_at)):
            raise Damage("member 0's gzip header is not the spec's")
        fields, payload = gzip_extra(data, index_at)
        index = fields.get(b"EI")
        if index is None:
            raise Damage("the index member has no EI subfield")
        if data[index_at:payload] != member_header(b"EI" + struct.pack("<H", len(index)) + index):
            raise Damage("the index member's gzip header is not the spec's")
        if data[payload:] != b"\x03\x00" + bytes(8):
            raise Damage("the index member's payload is not empty, or something follows it")
        if len(index) < 45:
            raise Damage("the index is too short")
        version, count, size, sha = struct.unpack_from("<BIQ32s", index)
        if version != 1 or count < 1 or len(index) != 45 + 40 * count:
            raise Damage("the index's version or length is wrong")
        columns = [struct.unpack_from(f"<{count}Q", index, 45 + 8 * count * c) for c in range(3)]
        u_offs, c_offs, seqs = columns
        digests = [index[45 + 24 * count + 16 * i:45 + 24 * count + 16 * (i + 1)].hex()
                   for i in range(count)]
        if c_offs[0] != 0 or u_offs[0] != 0:
            raise Damage("the index does not start at the first member")
        parts: list[bytes] = []
        for i in range(count):
            end = c_offs[i + 1] if i + 1 < count else index_at
            if end <= c_offs[i]:
                raise Damage(f"member {i}'s offsets in the file are out of order")
            header = data[:25] if i == 0 else member_header(b"")
            part = inflate_member(data, c_offs[i], end, header)  # it must end exactly at ``end``
            if u_offs[i] != sum(map(len, parts)):
                raise Damage(f"member {i}'s offset in the segment is wrong")
            if not part.endswith(b"\n"):
                raise Damage(f"member {i} does not end with a whole line")
            parts.append(part)
        content = b"".join(parts)
        if len(content) != size or hashlib.sha256(content).digest() != sha:
            raise Damage("the content's size or SHA-256 differs from the index's")
        check_member_heads(content, u_offs, seqs, digests, first, chain)
    except (Damage, struct.error) as exc:
        chain.problem(path.name, f"archive damaged: {exc}")
        chain.broken = True
        return None
    return content


def check_member_heads(content: bytes, u_offs: tuple[int, ...], seqs: tuple[int, ...],
                       digests: list[str], first: int, chain: Chain) -> None:
    """Each index entry's head must be the chain's just before the member's first line."""
    try:
        header = json.loads(content[:content.index(b"\n")])
        seq, h = header["first_seq"] - 1, header["prev"]
    except (ValueError, TypeError, KeyError):
        raise Damage("member 0 does not start with a segment header") from None
    starts = dict(zip(u_offs, range(len(u_offs)), strict=True))
    pos = 0
    for line in content.split(b"\n")[:-1]:
        member = starts.get(pos)
        if member is not None and (seqs[member], digests[member]) != (seq, h):
            raise Damage(f"index entry {member} does not match the chain head before it")
        record = line.removesuffix(b" ")
        if record.startswith(b'{"seq":'):
            # Read without JSON: a damaged record is the chain check's to report.
            seq_text = record[7:record.find(b",")]
            if seq_text.isdigit():
                seq, h = int(seq_text), record[-34:-2].decode("ascii", "replace")
        pos += len(line) + 1


# The SQLite backend --------------------------------------------------------------------------

def check_sqlite_store(path: Path) -> Report:
    report = Report("sqlite")
    if not path.is_file():
        raise Damage(f"{path}: no such file")
    try:
        # Without a -wal file everything is in the database file, and immutable=1 reads it
        # leaving no trace; with one (a store in use, or its last process killed) SQLite must
        # read the WAL too, and may add the -shm index beside it.
        wal = Path(f"{path}-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
        meta = dict(db.execute("SELECT key, value FROM eventlog_meta").fetchall())
    except sqlite3.Error as exc:
        raise Damage(f"{path}: not an eventlog SQLite store ({exc})") from None
    try:
        if meta.get("format") != "eventlog-sqlite":
            raise Damage(f"{path}: eventlog_meta does not name the eventlog-sqlite format")
        version: object = meta.get("version")
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        fmt = format_of(version, f"{path}: eventlog_meta")
        report.version = fmt.version
        db.execute("BEGIN")  # one read transaction: the whole store as of one moment
        sessions = db.execute("SELECT gen, id, seq, h, sealed, archived FROM sessions ORDER BY id")
        for gen, sid, seq, h, sealed, archived in sessions.fetchall():
            check_sqlite_session(fmt, db, gen, sid, (seq, h), (sealed, archived), report)
    finally:
        db.close()
    return report


class Query(Protocol):
    """What the row stores' checks ask of a database: SQLite's connection, or ``PgQuery``."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


def check_sqlite_session(fmt: FormatV1, db: Query, gen: int, sid: str,
                         head: tuple[int, str], marks: tuple[int, int], report: Report) -> None:
    chain = Chain(fmt, sid, report)
    sealed, archived = marks
    if not valid_id(sid):
        chain.problem("sessions", "not a valid session id")
    if not 0 <= archived <= sealed <= head[0]:
        chain.problem("sessions", f"archived ({archived}) <= sealed ({sealed}) <= seq ({head[0]}) "
                      "does not hold")
    for seq, blob in db.execute("SELECT seq, blob FROM snapshots WHERE session = ? ORDER BY seq",
                                (gen,)):
        chain.add_snapshot(bytes(blob), f"snapshot row {seq}", seq)
    for seq, line, where in sqlite_lines(db, gen, archived, chain):
        if chain.seq + 1 != seq:
            chain.problem(where, f"seq {seq} stored where {chain.seq + 1} was due")
            chain.broken = True
        if chain.broken or not chain.take(line, where):
            break
    if not chain.broken and chain.head != tuple(head):
        chain.problem("sessions", f"the stored head (seq {head[0]}) is not the last record "
                      f"(seq {chain.seq})")
    chain.finish()


def sqlite_lines(db: Query, gen: int, archived: int,
                 chain: Chain) -> Iterator[tuple[int, bytes, str]]:
    """(seq, line, where) of every record: the archive chunks through ``archived``, then rows."""
    expected = 1
    for first, last, blob in db.execute("SELECT first, last, blob FROM archive WHERE session = ? "
                                        "ORDER BY first", (gen,)):
        where = f"archive chunk {first}-{last}"
        try:
            lines = zlib.decompress(blob).split(b"\n")
        except zlib.error as exc:
            chain.problem(where, f"does not inflate ({exc})")
            chain.broken = True
            return
        if first != expected or last > archived or len(lines) != last - first + 1:
            chain.problem(where, f"does not hold seqs {expected} on, up to the archived mark "
                          f"({archived}), one line each")
            chain.broken = True
            return
        for seq, line in enumerate(lines, first):
            yield seq, line, where
        expected = last + 1
    if expected != archived + 1:
        chain.problem("archive", f"the chunks end at seq {expected - 1}, the archived mark is "
                      f"{archived}")
        chain.broken = True
        return
    below = db.execute("SELECT count(*) FROM events WHERE session = ? AND seq <= ?",
                       (gen, archived)).fetchone()[0]
    if below:
        chain.problem("events", f"{below} row(s) at or below the archived mark {archived}")
    for seq, line in db.execute("SELECT seq, line FROM events WHERE session = ? AND seq > ? "
                                "ORDER BY seq", (gen, archived)):
        yield seq, bytes(line), f"events row {seq}"


# The PostgreSQL backend ----------------------------------------------------------------------
# The same tables as SQLite's, in the store's schema (?schema=, default eventlog); the meta
# table's ``version`` is the tables' version, and ``records`` the record format's.

PG_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PgQuery:
    """SQLite's ``?`` parameters on a psycopg connection whose search_path is the store's schema."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)


def split_postgres_url(url: str) -> tuple[str, str]:
    """The server's URL without ``schema=``, and the schema (default ``eventlog``)."""
    base, _, query = url.partition("?")
    schema, kept = "eventlog", []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        if key == "schema":
            schema = value
        else:
            kept.append(part)
    if not PG_SCHEMA.fullmatch(schema):
        raise Damage(f"{schema!r} is not a schema name eventlog uses")
    return base + ("?" + "&".join(kept) if kept else ""), schema


def check_postgres_store(url: str) -> Report:
    try:
        import psycopg  # only here: every other store needs nothing beyond the standard library
    except ImportError:
        raise Damage("reading a PostgreSQL store needs psycopg (pip install psycopg)") from None
    server, schema = split_postgres_url(url)
    report = Report("postgres")
    try:
        conn = psycopg.connect(server, connect_timeout=10)
    except psycopg.Error as exc:
        raise Damage(f"can't connect to {server}: {str(exc).strip()}") from None
    try:
        # One read-only transaction: the whole store as of one moment, nothing written.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(f'SET LOCAL search_path TO "{schema}"')
        try:
            meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM eventlog_meta").fetchall())
        except psycopg.Error as exc:
            raise Damage(f"schema {schema}: not an eventlog PostgreSQL store ({str(exc).strip()})") from None
        if meta.get("format") != "eventlog-postgres":
            raise Damage(f"schema {schema}: eventlog_meta does not name the eventlog-postgres format")
        # Versions 2 and 3 added a function, the catalog's keys and its marks: nothing the
        # checker reads.
        if meta.get("version") not in ("1", "2", "3"):
            raise Damage(f"schema {schema}: tables of version {meta.get('version')!r}, this checker "
                         "reads versions 1 to 3")
        version: object = meta.get("records", "1")
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        fmt = format_of(version, f"schema {schema}: eventlog_meta records")
        report.version = fmt.version
        db = PgQuery(conn)
        sessions = conn.execute("SELECT gen, id, seq, h, sealed, archived FROM sessions ORDER BY id")
        for gen, sid, seq, h, sealed, archived in sessions.fetchall():
            check_sqlite_session(fmt, db, gen, sid, (seq, h), (sealed, archived), report)
    finally:
        conn.close()
    return report


# Running it ----------------------------------------------------------------------------------

def check(location: str) -> Report:
    """Check the store at ``location``: a directory, an SQLite file, an sqlite:/// URL, or a
    postgresql:// (postgres://) URL."""
    if location.startswith(("postgresql://", "postgres://")):
        return check_postgres_store(location)
    if location.startswith("sqlite:///"):
        return check_sqlite_store(Path(location[len("sqlite:///"):]))
    path = Path(location)
    if path.is_dir():
        return check_file_store(path)
    return check_sqlite_store(path)


def render(report: Report) -> Iterable[str]:
    for sid, found in report.sessions.items():
        yield f"{sid}: {found['events']} record(s), head h {found['head'][1]}"
    for note in report.notes:
        yield f"note: {note}"
    for problem in report.problems:
        yield f"problem: {problem}"
    verdict = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
    yield (f"checked {len(report.sessions)} session(s) of a {report.kind} store, format version "
           f"{report.version}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a file store directory, an SQLite file, sqlite:///path, or "
                        "postgresql://user@host/db?schema=NAME")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        report = check(args.store)
    except (Damage, OSError) as exc:
        print(f"checkstore: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not report.problems, "format": report.kind, "version": report.version,
                          "sessions": report.sessions, "problems": report.problems,
                          "notes": report.notes}, indent=2))
    else:
        for line in render(report):
            print(line)
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
