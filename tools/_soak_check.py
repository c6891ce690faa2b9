"""The soak test's final accounting (tools/soak.py): what the workers' ack files say was
acknowledged, against what a fresh store holds (and cleanup's archive directory)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from _soak_roles import tag_of

import eventlog

Key = tuple[str, str]  # (session id, life)


@dataclass
class Acked:
    """Everything the ack files say, complete lines only."""

    events: list[tuple[str, int, str, str]] = field(default_factory=list)  # sid, seq, tag, life
    deleting: set[Key] = field(default_factory=set)
    followed: list[list[tuple[str, int, str]]] = field(default_factory=list)  # per follower file
    refused: Counter[str] = field(default_factory=Counter)
    refused_example: dict[str, str] = field(default_factory=dict)
    untyped: list[str] = field(default_factory=list)


def read_acks(directory: Path) -> Acked:
    acked = Acked()
    for path in sorted(directory.glob("*.acks")):
        followed: list[tuple[str, int, str]] = []
        data = path.read_bytes()
        for line in data.split(b"\n")[:-1]:  # after the last newline: a line cut by a kill
            words = line.decode().split(" ")
            kind = words[0]
            if kind == "A":
                acked.events.append((words[1], int(words[2]), words[3], words[4]))
            elif kind == "D":
                acked.deleting.add((words[1], words[2]))
            elif kind == "F":
                followed.append((words[1], int(words[2]), words[3]))
            elif kind == "E":
                acked.refused[words[1]] += 1
                acked.refused_example.setdefault(words[1], " ".join(words[2:])[:200])
            elif kind == "X":
                acked.untyped.append(" ".join(words[1:]))
        if followed:
            acked.followed.append(followed)
    return acked


@dataclass
class Held:
    """What the store (and the archive directory) holds."""

    events: dict[str, dict[int, str]] = field(default_factory=dict)  # sid -> seq -> tag
    lives: dict[str, str] = field(default_factory=dict)
    archived: dict[str, dict[int, str]] = field(default_factory=dict)
    duplicated: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def read_store(url: str, archive_dir: Path) -> Held:
    held = Held()
    with eventlog.open(url) as log:
        for sid in log.session_ids():
            try:
                events = list(log.events(sid))
            except eventlog.SessionNotFoundError:
                continue
            except eventlog.EventLogError as exc:
                held.damaged.append(f"{sid}: {exc}")
                continue
            held.lives[sid] = str(events[0].data.get("metadata", {}).get("life", "-"))
            held.events[sid] = {e.seq: tag_of(e.data) for e in events}
            for tag, count in Counter(tag_of(e.data) for e in events[1:]).items():
                if count > 1:
                    held.duplicated.append(f"{sid}: {tag} stored {count} times")
        held.damaged += log.verify().problems
    held.archived = read_archive(archive_dir, held)
    return held


def read_archive(directory: Path, held: Held) -> dict[str, dict[int, str]]:
    """The sessions cleanup moved into ``directory``, each read back through ``eventlog
    import``'s reader (digests and trailer checked): session id -> seq -> tag."""
    from eventlog.cli._terminal import Progress
    from eventlog.cli._transfer import _ExportReader

    found: dict[str, dict[int, str]] = defaultdict(dict)
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        try:
            with path.open("rb") as stream, Progress("reading", None) as progress:
                reader = _ExportReader(str(path), stream, progress)
                for event in reader.events():
                    found[str(reader.session_id)][event.seq] = tag_of(event.data)
        except Exception as exc:  # a damaged archive: counted as damage
            held.damaged.append(f"archive {path.name}: {exc}")
    return dict(found)


@dataclass
class Verdict:
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    follower_mismatches: list[str] = field(default_factory=list)
    followed: int = 0


def judge(acked: Acked, held: Held) -> Verdict:
    verdict = Verdict(acknowledged=len(acked.events))
    for sid, seq, tag, life in acked.events:
        if held.lives.get(sid) == life:
            if held.events[sid].get(seq) != tag:
                verdict.lost.append(f"{sid} seq {seq} ({tag}): the store has "
                                    f"{held.events[sid].get(seq, 'nothing')} there")
        elif sid.startswith("old-") and held.archived.get(sid, {}).get(seq) == tag:
            continue  # cleanup archived it, then removed it
        elif (sid, life) not in acked.deleting:
            verdict.lost.append(f"{sid} seq {seq} ({tag}), life {life}: gone, and never deleted")
    for followed in acked.followed:
        previous = 0
        for sid, seq, tag in followed:
            verdict.followed += 1
            if seq != previous + 1:
                verdict.follower_mismatches.append(f"{sid}: seq {seq} followed seq {previous}")
            if held.events.get(sid, {}).get(seq) != tag:
                verdict.follower_mismatches.append(f"{sid} seq {seq}: followed {tag}, stored "
                                                   f"{held.events.get(sid, {}).get(seq)}")
            previous = seq
    return verdict
