"""The processes the demo starts: ``agent`` (posts messages) and ``check`` (a fresh reader).

Run as ``python -m eventlog.cli._demo_procs agent|check ...`` by ``eventlog demo``; not an
interface of its own. Everything a process learns is written to a JSON file the demo
reads back, and everything ``check`` prints is computed from the store it opens.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

import eventlog

from ..store._state import MESSAGE, to_message
from ._terminal import format_message, human_bytes, local_time, safe

MAX_RETRIES = 10_000


def agent(store: str, name: str, peers: list[str], messages: int, sessions: list[str],
          result: Path) -> None:
    """Post ``messages`` messages round-robin into ``sessions``, once told to go on stdin.

    Every fourth message goes through an optimistic ``expected_seq`` loop (read the head,
    append only if it is unchanged, else retry), the way an agent that must see the
    latest state before it speaks would; the conflicts it meets are counted."""
    posted: dict[str, list[str]] = {sid: [] for sid in sessions}
    conflicts = 0
    with eventlog.open(store) as log:
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        for k in range(messages):
            sid = sessions[k % len(sessions)]
            to = None if k % 3 == 0 or not peers else peers[k % len(peers)]
            message = eventlog.ChatMessage(sender=name, recipient=to, session_id=sid,
                                           content=f"message {k + 1} of {messages} from {name}")
            if k % 4 == 3:
                stored, retries = _post_expecting_head(log, message)
                conflicts += retries
            else:
                stored = log.add_message(message)
            posted[sid].append(stored.id)
        seconds = time.perf_counter() - started
    result.write_bytes(orjson.dumps({"agent": name, "posted": posted, "conflicts": conflicts,
                                     "seconds": seconds, "pid": os.getpid()}))


def _post_expecting_head(log: eventlog.EventLog,
                         message: eventlog.ChatMessage) -> tuple[eventlog.ChatMessage, int]:
    for retries in range(MAX_RETRIES):
        head = log.get_session(message.session_id).last_seq
        try:
            return log.add_message(message, expected_seq=head), retries
        except eventlog.ConflictError:
            continue
    raise RuntimeError(f"no append after {MAX_RETRIES} conflicts")


def check(store: str, expected_path: Path, result: Path, tail: int) -> None:
    """From a process that wrote nothing: print the transcript tail and each session's status,
    and prove every posted message is there exactly once, in a gapless, verified log."""
    expected: dict[str, Any] = orjson.loads(expected_path.read_bytes())
    print(f"A fresh process (pid {os.getpid()}) opens the store and reads it back:")
    findings = {}
    with eventlog.open(store) as log:
        for sid, by_agent in expected.items():
            findings[sid] = _check_session(log, sid, by_agent, tail)
    result.write_bytes(orjson.dumps(findings))


def _check_session(log: eventlog.EventLog, sid: str, by_agent: dict[str, list[str]],
                   tail: int) -> dict[str, Any]:
    events = list(log.events(sid))
    messages = [to_message(sid, e) for e in events if e.type == MESSAGE]
    state = log.get_session(sid)
    print(f"\n  {sid}: last {min(tail, len(messages))} of {len(messages)} messages")
    for m in messages[-tail:]:
        print(f"    {format_message(m)}")
    print(f"  status: {len(state.participants)} participants "
          f"({safe(', '.join(state.participants))}), {state.message_count} messages, "
          f"last seq {state.last_seq}, {human_bytes(log.size(sid))} on disk")
    print(f"          created {local_time(state.created_at)}, "
          f"last activity {local_time(state.last_activity)}")

    seen = Counter(m.id for m in messages)
    wanted = {i for ids in by_agent.values() for i in ids}
    expected = sum(len(ids) for ids in by_agent.values())
    lost = len(wanted - seen.keys())
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    unexpected = len(seen.keys() - wanted)
    gapless = [e.seq for e in events] == list(range(1, len(events) + 1))
    in_order = all([m.id for m in messages if m.sender == agent] == ids
                   for agent, ids in by_agent.items())
    report = log.verify(sid)
    print(f"  proof:  expected {expected} messages, found {len(messages)}: lost {lost}, "
          f"duplicated {duplicated}, unexpected {unexpected}")
    print(f"          seqs 1..{len(events)} {'gapless' if gapless else 'NOT gapless'}; each agent's "
          f"messages {'in the order it sent them' if in_order else 'OUT OF ORDER'}; "
          f"verify {'ok' if report.ok else 'FAILED'} ({report.events_checked} events)")
    for problem in report.problems:
        print(f"    problem: {safe(problem)}")
    return {"expected": expected, "found": len(messages), "lost": lost, "duplicated": duplicated,
            "unexpected": unexpected, "gapless": gapless, "in_order": in_order,
            "verify_ok": report.ok, "events": len(events), "last_seq": state.last_seq}


def main(argv: list[str]) -> int:
    if argv[:1] == ["agent"] and len(argv) >= 7:
        store, name, peers, messages, result, *sessions = argv[1:]
        agent(store, name, [p for p in peers.split(",") if p], int(messages), sessions, Path(result))
        return 0
    if argv[:1] == ["check"] and len(argv) == 5:
        check(argv[1], Path(argv[2]), Path(argv[3]), int(argv[4]))
        return 0
    print("usage: python -m eventlog.cli._demo_procs agent|check ... (started by 'eventlog demo')",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
