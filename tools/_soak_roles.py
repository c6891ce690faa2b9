"""The soak test's workers (tools/soak.py): each runs in a forked process until it is killed.

Every worker writes what the store acknowledged to its own ack file, one line per fact,
each line in one ``os.write`` on an ``O_APPEND`` descriptor and fsynced before the worker
goes on: a line is proof of an acknowledgement, and a SIGKILL can only cut the line it
was writing (a line without its newline is not counted), never forge one. Lines:

    A <sid> <seq> <tag> <life>   an event acknowledged at seq; tag: data "tag" (messages: their id)
    C <sid> <life>               a session created (its metadata holds "life")
    D <sid> <life>               about to delete that life of the session
    F <sid> <seq> <tag>          a follower got this event
    E <kind> <message>           a typed error the store raised (refused, not lost)
    X <kind> <message>           anything else: a bug
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import eventlog
from eventlog import ChatMessage, EventLog

LONG_LIVED = [f"soak-{k}" for k in range(4)]  # created first, never deleted: the writers' sessions
CHURNED = [f"churn-{k}" for k in range(3)]  # deleted and created again, over and over
OLD_DAYS = 40  # sessions the churn worker backdates, for cleanup to archive and remove
CLEANUP_DAYS = 30
SNAPSHOT_EVERY = 50


class Acks:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def say(self, *words: object, sync: bool = True) -> None:
        os.write(self.fd, (" ".join(str(w).replace(" ", "_").replace("\n", "_")
                                    for w in words) + "\n").encode())
        if sync:
            os.fsync(self.fd)


def tag_of(data: Any) -> str:
    if isinstance(data, dict):
        found = data.get("tag", data.get("id"))
        if isinstance(found, str):
            return found
    return "-"


def _guarded(acks: Acks, step: Callable[[], None]) -> None:
    """One step of a worker's loop: typed errors are the store refusing (noted, not lost)."""
    try:
        step()
    except (eventlog.SessionNotFoundError, eventlog.SessionExistsError):
        pass  # churn: another worker's delete or create got there first
    except eventlog.EventLogError as exc:
        acks.say("E", type(exc).__name__, str(exc)[:300])
    except Exception as exc:
        acks.say("X", type(exc).__name__, "".join(traceback.format_exception(exc))[-600:])


def writer(url: str, name: str, life: int, acks: Acks, mode: str) -> None:
    """Appends to the long-lived sessions: ``single`` events, ``batch``es (append_many and
    add_messages) or ``fsync`` messages (durability="fsync")."""
    rng = random.Random(f"{name}-{life}")
    log = eventlog.open(url, snapshot_every=SNAPSHOT_EVERY)
    n = 0

    def step() -> None:
        nonlocal n
        n += 1
        sid = rng.choice(LONG_LIVED)
        tag = f"{name}-{life}-{n}"
        if mode == "single":
            event = log.append(sid, "soak.one", {"tag": tag})
            acks.say("A", sid, event.seq, tag, 0)
        elif mode == "fsync":
            message = log.add_message(ChatMessage(id=tag, sender=name, content=tag, session_id=sid),
                                      durability="fsync")
            acks.say("A", sid, message.seq, tag, 0)
        elif rng.random() < 0.5:
            events = log.append_many(sid, [("soak.batch", {"tag": f"{tag}.{k}",
                                                           "pad": "p" * rng.randint(0, 400)})
                                           for k in range(rng.randint(1, 8))])
            for event in events:
                acks.say("A", sid, event.seq, event.data["tag"], 0, sync=event is events[-1])
        else:
            messages = log.add_messages([ChatMessage(id=f"{tag}.{k}", sender=name, content="m",
                                                     session_id=sid) for k in range(rng.randint(1, 5))])
            for message in messages:
                acks.say("A", sid, message.seq, message.id, 0, sync=message is messages[-1])

    while True:
        _guarded(acks, step)


def compactor(url: str, name: str, life: int, acks: Acks) -> None:
    rng = random.Random(f"{name}-{life}")
    log = eventlog.open(url)

    def step() -> None:
        if rng.random() < 0.2:
            report = log.compact()
            for problem in report.problems:
                acks.say("E", "CompactionProblem", problem[:300])
        else:
            log.compact(rng.choice(LONG_LIVED + CHURNED))
        time.sleep(rng.uniform(0.02, 0.2))

    while True:
        _guarded(acks, step)


def cleaner(url: str, name: str, life: int, acks: Acks, archive_dir: str) -> None:
    rng = random.Random(f"{name}-{life}")
    log = eventlog.open(url)

    def step() -> None:
        log.cleanup_old_sessions(CLEANUP_DAYS, archive_dir=archive_dir)
        time.sleep(rng.uniform(0.05, 0.5))

    while True:
        _guarded(acks, step)


def churner(url: str, name: str, life: int, acks: Acks) -> None:
    """Deletes and creates again the churned sessions, writing a little to each life; and
    creates backdated sessions for cleanup to archive and remove."""
    rng = random.Random(f"{name}-{life}")
    log = eventlog.open(url, snapshot_every=SNAPSHOT_EVERY)
    n = 0

    def step() -> None:
        nonlocal n
        n += 1
        token = f"{name}-{life}-{n}"
        if rng.random() < 0.3:
            _backdated(log, acks, f"old-{token}", token)
            return
        sid = rng.choice(CHURNED)
        if log.session_exists(sid):
            acks.say("D", sid, _life_of(log, sid))
            log.delete_session(sid)
        log.create_session(sid, participants=[name], metadata={"life": token})
        acks.say("C", sid, token)
        batch = [("churn", {"tag": f"{token}.{k}"}) for k in range(rng.randint(1, 4))]
        for event in log.append_many(sid, batch):
            acks.say("A", sid, event.seq, event.data["tag"], token, sync=False)
        os.fsync(acks.fd)

    while True:
        _guarded(acks, step)


def _backdated(log: EventLog, acks: Acks, sid: str, token: str) -> None:
    old = time.time() - OLD_DAYS * 86400
    log.create_session(sid, participants=["old"], metadata={"life": token}, created_at=old)
    acks.say("C", sid, token)
    for message in log.add_messages([ChatMessage(id=f"{token}.{k}", sender="old", content="x",
                                                 session_id=sid, timestamp=old + k) for k in range(2)]):
        acks.say("A", sid, message.seq, message.id, token, sync=False)
    os.fsync(acks.fd)


def _life_of(log: EventLog, sid: str) -> str:
    created = next(iter(log.events(sid)))
    return str(created.data.get("metadata", {}).get("life", "-"))


def follower(url: str, name: str, life: int, acks: Acks, resume: int) -> None:
    """Follows the first long-lived session from where its previous life stopped."""
    log = eventlog.open(url)
    sid = LONG_LIVED[0]
    while True:
        try:
            for event in log.follow(sid, after_seq=resume, timeout=1.0):
                acks.say("F", sid, event.seq, tag_of(event.data), sync=False)
                resume = event.seq
        except eventlog.EventLogError as exc:
            acks.say("E", type(exc).__name__, str(exc)[:300])
            time.sleep(0.05)
        except Exception as exc:
            acks.say("X", type(exc).__name__, "".join(traceback.format_exception(exc))[-600:])
            time.sleep(0.05)


ROLES: dict[str, Callable[..., None]] = {
    "single": lambda url, name, life, acks, **kw: writer(url, name, life, acks, "single"),
    "batch": lambda url, name, life, acks, **kw: writer(url, name, life, acks, "batch"),
    "fsync": lambda url, name, life, acks, **kw: writer(url, name, life, acks, "fsync"),
    "compactor": lambda url, name, life, acks, **kw: compactor(url, name, life, acks),
    "cleanup": lambda url, name, life, acks, **kw: cleaner(url, name, life, acks, kw["archive_dir"]),
    "churn": lambda url, name, life, acks, **kw: churner(url, name, life, acks),
    "follower": lambda url, name, life, acks, **kw: follower(url, name, life, acks, kw["resume"]),
}
