"""``eventlog demo``: agent processes chat in shared sessions; a fresh process proves nothing
was lost; then compaction and a retention cleanup that really removes an old session.

Every line it prints is computed from what the processes did and what the store holds.
It writes only sessions named ``demo-<run>-*`` that it creates itself, and removes only
those: before cleaning up, it makes sure no other session in the store is anywhere near
the age the cleanup removes, and runs the cleanup elsewhere if one is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import eventlog

from ..store._log import EventLog
from ._args import CliError, open_location, positive, usage_error
from ._terminal import age, human_bytes, local_time

MAX_AGENTS = 64
OLD_DAYS = 40
RETENTION_DAYS = 30
TAIL = 6


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=positive, default=4, metavar="N",
                   help=f"agent processes (default 4, at most {MAX_AGENTS})")
    p.add_argument("--messages", type=positive, default=25, metavar="M",
                   help="messages each agent posts (default 25)")
    p.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS,
                   help="write there (default: a new temporary directory)")


@dataclass
class Outcome:
    """What the demo found, step by step, for the summary and the exit status."""

    posted: int = 0
    seconds: float = 0.0
    conflicts: int = 0
    findings: dict[str, Any] = field(default_factory=dict)
    compacted: tuple[int, int, bool] | None = None
    removed: list[str] = field(default_factory=list)
    old_gone: bool = False
    failures: list[str] = field(default_factory=list)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.agents > MAX_AGENTS:
        raise usage_error(f"--agents: at most {MAX_AGENTS} agent processes")
    given = getattr(args, "store", None)
    if given and given.startswith("memory:"):
        raise usage_error("the demo's agents are separate processes: give a store they can share "
                          "(a directory or a server URL), not memory://")
    location = given or tempfile.mkdtemp(prefix="eventlog-demo-")
    run = uuid.uuid4().hex[:6]
    sessions = [f"demo-{run}-team", f"demo-{run}-review"]
    names = [f"Agent-{i + 1}" for i in range(args.agents)]
    where = "given by --store" if given else "a new temporary directory, kept so you can look around"
    print(f"Store: {location} ({where})")
    outcome = Outcome()
    with open_location(location, create=True) as log:
        for sid in sessions:
            log.create_session(sid, names, {"demo": run})
        print(f"Created sessions {', '.join(sessions)}, each with participants {', '.join(names)}.\n")
        with tempfile.TemporaryDirectory(prefix="eventlog-demo-work-") as work:
            _run_agents(location, names, sessions, args.messages, Path(work), outcome)
            _check_in_fresh_process(location, Path(work), outcome)
        _show_compaction(log, sessions, outcome)
        _show_retention(log, run, sessions, outcome)
    _summary(location, names, args.messages, sessions, outcome)
    return 0 if not outcome.failures else 1


def _child_env() -> dict[str, str]:
    """The children import this very eventlog, whatever is installed elsewhere."""
    root = str(Path(eventlog.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _run_agents(location: str, names: list[str], sessions: list[str], messages: int,
                work: Path, outcome: Outcome) -> None:
    print(f"Starting {len(names)} agent processes; each posts {messages} messages into "
          f"{len(sessions)} shared sessions at the same time.")
    procs = []
    for name in names:
        peers = ",".join(n for n in names if n != name)
        cmd = [sys.executable, "-m", "eventlog.cli._demo_procs", "agent", location, name, peers,
               str(messages), str(work / f"{name}.json"), *sessions]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=_child_env()))
    try:
        for proc in procs:  # all started and holding the store open: now go at once
            assert proc.stdout is not None
            proc.stdout.readline()
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()  # communicate() below closes it
        errors = [(name, proc.communicate()[1], proc.returncode)
                  for name, proc in zip(names, procs, strict=True)]
        outcome.seconds = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, stderr, code in errors:
        if code != 0:
            last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise CliError(f"demo agent {name} failed (exit {code}): {last[0]}")
    expected: dict[str, dict[str, list[str]]] = {sid: {} for sid in sessions}
    pids = []
    for name in names:
        result = orjson.loads((work / f"{name}.json").read_bytes())
        pids.append(str(result["pid"]))
        outcome.conflicts += result["conflicts"]
        for sid, ids in result["posted"].items():
            expected[sid][name] = ids
            outcome.posted += len(ids)
    (work / "expected.json").write_bytes(orjson.dumps(expected))
    rate = outcome.posted / outcome.seconds if outcome.seconds else 0.0
    print(f"The agents (pids {', '.join(pids)}) posted {outcome.posted} messages in "
          f"{outcome.seconds:.2f} s ({rate:.0f} messages/s); {outcome.conflicts} expected_seq "
          "conflicts were met and retried.\n")


def _check_in_fresh_process(location: str, work: Path, outcome: Outcome) -> None:
    cmd = [sys.executable, "-m", "eventlog.cli._demo_procs", "check", location,
           str(work / "expected.json"), str(work / "found.json"), str(TAIL)]
    done = subprocess.run(cmd, capture_output=True, env=_child_env(), check=False)
    sys.stdout.write(done.stdout.decode(errors="replace"))
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise CliError(f"the demo's reading process failed (exit {done.returncode}): {last[0]}")
    outcome.findings = orjson.loads((work / "found.json").read_bytes())
    for sid, found in outcome.findings.items():
        if not (found["found"] == found["expected"] and found["lost"] == found["duplicated"]
                == found["unexpected"] == 0 and found["gapless"] and found["in_order"]
                and found["verify_ok"]):
            outcome.failures.append(f"{sid}: the read-back does not match what was posted")
    print()


def _show_compaction(log: EventLog, sessions: list[str], outcome: Outcome) -> None:
    print("Compaction: EventLog.compact(session) on each session.")
    before_total = after_total = 0
    all_ok = True
    for sid in sessions:
        history = list(log.events(sid))
        report = log.compact(sid)
        same = list(log.events(sid)) == history
        verified = log.verify(sid)
        all_ok = all_ok and same and verified.ok
        before_total += report.bytes_before
        after_total += report.bytes_after
        print(f"  {sid}: {human_bytes(report.bytes_before)} -> {human_bytes(report.bytes_after)}, "
              f"{report.segments_archived} segment(s) archived in {report.seconds * 1000:.0f} ms; "
              f"all {len(history)} events {'identical' if same else 'CHANGED'} after; "
              f"verify {'ok' if verified.ok else 'FAILED'}")
    outcome.compacted = (before_total, after_total, all_ok)
    if not all_ok:
        outcome.failures.append("compaction changed a session or broke its log")
    print()


def _show_retention(log: EventLog, run: str, created: list[str], outcome: Outcome) -> None:
    print(f"Retention: cleanup_old_sessions(days={RETENTION_DAYS}) removes sessions with no "
          f"activity for {RETENTION_DAYS} days.")
    now = time.time()
    margin = (RETENTION_DAYS - 1) * 86400
    others = [s.session_id for s in log.list_sessions()
              if s.session_id not in created and now - s.last_activity > margin]
    if others:
        # Never touch a session the demo did not create: clean up in a store of its own.
        with tempfile.TemporaryDirectory(prefix="eventlog-demo-retention-") as aside:
            print(f"  {len(others)} session(s) here that the demo did not create are "
                  f"{RETENTION_DAYS - 1}+ days old, so this step runs in a separate temporary "
                  f"store: {aside}")
            with eventlog.open(aside) as other:
                recent = f"demo-{run}-recent"
                other.create_session(recent, ["Agent-1"])
                _retention_in(other, run, [recent], now, outcome)
    else:
        _retention_in(log, run, list(created), now, outcome)
    print()


def _retention_in(log: EventLog, run: str, created: list[str], now: float, outcome: Outcome) -> None:
    old = f"demo-{run}-old"
    then = now - OLD_DAYS * 86400
    log.create_session(old, ["Agent-1", "Agent-2"], {"demo": run}, created_at=then)
    created.append(old)
    for i in range(3):
        log.add_message(eventlog.ChatMessage(sender=f"Agent-{i % 2 + 1}", session_id=old,
                                             content=f"an old message, number {i + 1}",
                                             timestamp=then + 60 * (i + 1)))
    state = log.get_session(old)
    print(f"  created {old}: created {local_time(state.created_at)}, {state.message_count} "
          f"messages, last activity {age(now - state.last_activity)} ago")
    would = log.cleanup_old_sessions(RETENTION_DAYS, dry_run=True)
    strangers = sorted(set(would) - set(created))
    if strangers:
        outcome.failures.append("retention would have removed sessions the demo did not create")
        print(f"  the dry run would also remove {', '.join(strangers)}, which the demo did not "
              "create: not cleaning up")
        return
    print(f"  dry run: would remove {', '.join(would) or 'nothing'}")
    outcome.removed = log.cleanup_old_sessions(RETENTION_DAYS)
    print(f"  cleanup_old_sessions(days={RETENTION_DAYS}) returned {outcome.removed}")
    try:
        log.get_session(old)
        print(f"  {old} still exists: the cleanup did NOT remove it")
    except eventlog.SessionNotFoundError as exc:
        outcome.old_gone = not log.session_exists(old)
        print(f"  {old} exists: {log.session_exists(old)}; get_session raises "
              f"{type(exc).__name__}: {exc}")
    kept = [sid for sid in created if sid != old and log.session_exists(sid)]
    print(f"  kept (recently active): {', '.join(kept) or 'none'}")
    if not outcome.old_gone or set(outcome.removed) != {old} or len(kept) != len(created) - 1:
        outcome.failures.append("retention did not remove exactly the old session")


def _summary(location: str, names: list[str], messages: int, sessions: list[str],
             outcome: Outcome) -> None:
    found = sum(f["found"] for f in outcome.findings.values())
    lost = sum(f["lost"] for f in outcome.findings.values())
    duplicated = sum(f["duplicated"] for f in outcome.findings.values())
    verified = all(f["verify_ok"] for f in outcome.findings.values())
    print("Summary:")
    print(f"  {len(names)} agent processes x {messages} messages = {outcome.posted} posted into "
          f"{len(sessions)} sessions in {outcome.seconds:.2f} s")
    print(f"  read back by a fresh process: {found} of {outcome.posted} found, {lost} lost, "
          f"{duplicated} duplicated, verify {'ok' if verified else 'FAILED'}")
    if outcome.compacted is not None:
        before, after, ok = outcome.compacted
        print(f"  compaction: {human_bytes(before)} -> {human_bytes(after)}, "
              f"{'nothing changed in the history' if ok else 'PROBLEMS'}")
    print(f"  retention: removed {', '.join(outcome.removed) or 'nothing'}; "
          f"{'gone from the store' if outcome.old_gone else 'NOT gone'}")
    for failure in outcome.failures:
        print(f"  FAILED: {failure}")
    print(f"  {'all checks passed' if not outcome.failures else 'some checks failed'}; "
          f"look around with: eventlog --store {location} sessions")
