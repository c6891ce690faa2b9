"""Soak test: every kind of worker on one store at once, SIGKILLed at random, then an audit.

    python tools/soak.py ./soak-store --seconds 600
    python tools/soak.py sqlite:///soak.db --seconds 30
    python tools/soak.py 'redis://127.0.0.1:6379/0?prefix=soak:' --seconds 30 --kill-every 0.5

For ``--seconds``, forked workers run against the store named by URL (any backend other
than ``memory://``; it must hold no sessions, since cleanup removes old ones): writers
appending single events, batches (append_many, add_messages) and fsynced messages to four
shared sessions; a compactor; a cleanup run with an archive directory; a churner deleting
and creating sessions again (and backdating some for cleanup); and a follower. Every
``--kill-every`` seconds on average one of them is SIGKILLed and started again. Each
worker writes what the store acknowledged to its own ack file, fsynced after each ack,
outside the store, so a killed worker's acknowledgements count too.

Then a fresh store is audited: every acknowledged event must be at its seq (or, for a
session cleanup removed, in its archive; for a session the churner deleted, gone), no
event twice, ``verify`` ok, every archive readable, and the follower's stream the store's.
It prints acknowledged, killed, lost, duplicated, damaged and follower mismatches, and
exits 1 on any loss, duplicate, damage, follower mismatch, untyped error or damage
reported by an operation on a store that verifies (2: bad usage).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_TOOLS = Path(__file__).resolve().parent
if str(_TOOLS.parent) not in sys.path:
    sys.path.insert(0, str(_TOOLS.parent))  # soak the checkout's eventlog

import _soak_check as check  # noqa: E402
import _soak_roles as roles  # noqa: E402

import eventlog  # noqa: E402

WORKERS = [("single-1", "single"), ("single-2", "single"), ("batch-1", "batch"), ("fsync-1", "fsync"),
           ("compactor", "compactor"), ("cleanup", "cleanup"), ("churn", "churn"),
           ("follower", "follower")]


@dataclass
class Worker:
    name: str
    role: str
    pid: int = 0
    life: int = 0


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/soak.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="an empty store (path or URL; not memory://)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the workers run (30)")
    p.add_argument("--kill-every", type=float, default=1.0,
                   help="mean seconds between SIGKILLs of a random worker (1.0; 0: none)")
    p.add_argument("--work-dir", help="where ack files and cleanup's archive go (default: a "
                   "temporary directory, removed afterwards unless something was wrong)")
    p.add_argument("--seed", type=int, default=None, help="for the kill schedule")
    p.add_argument("--check-only", action="store_true",
                   help="run no workers: audit the store against the ack files in --work-dir")
    return p.parse_args(argv)


def start(worker: Worker, url: str, work: Path, resume: int = 0) -> None:
    worker.life += 1
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the soak, not its workers
            acks = roles.Acks(str(work / f"{worker.name}.acks"))
            roles.ROLES[worker.role](url, worker.name, worker.life, acks,
                                     archive_dir=str(work / "archive"), resume=resume)
            code = 0
        finally:
            os._exit(code)
    worker.pid = pid


def kill(worker: Worker) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    os.waitpid(worker.pid, 0)


def _last_followed(work: Path) -> int:
    followed = check.read_acks(work).followed
    return followed[0][-1][1] if followed else 0


class WalWatch:
    """For an SQLite store: the largest its write-ahead log got, sampled as the soak runs."""

    def __init__(self, url: str) -> None:
        self.path = f"{url[len('sqlite:///'):]}-wal" if url.startswith("sqlite:///") else None
        self.largest = 0

    def sample(self) -> None:
        if self.path is not None:
            try:
                self.largest = max(self.largest, os.path.getsize(self.path))
            except OSError:
                pass


def run(url: str, work: Path, seconds: float, kill_every: float, rng: random.Random,
        wal: WalWatch) -> tuple[int, int]:
    """Run the workers for ``seconds``, killing one now and then; return (kills, deaths)."""
    workers = [Worker(name, role) for name, role in WORKERS]
    for worker in workers:
        start(worker, url, work)
    kills = deaths = 0
    now = time.monotonic()
    deadline = now + seconds

    def next_kill(after: float) -> float:
        return after + rng.expovariate(1 / kill_every) if kill_every > 0 else deadline

    kill_at = next_kill(now)
    try:
        while (now := time.monotonic()) < deadline:
            time.sleep(max(0.0, min(deadline, kill_at, now + 0.25) - now))
            wal.sample()
            for worker in workers:  # one that ended by itself is a bug: count it, start it again
                pid, _status = os.waitpid(worker.pid, os.WNOHANG)
                if pid:
                    deaths += 1
                    start(worker, url, work, _last_followed(work))
            if time.monotonic() >= kill_at and kill_at < deadline:
                victim = rng.choice(workers)
                kill(victim)
                kills += 1
                start(victim, url, work, _last_followed(work) if victim.role == "follower" else 0)
                kill_at = next_kill(time.monotonic())
    finally:
        for worker in workers:
            kill(worker)
    return kills, deaths


def prepare(url: str) -> None:
    with eventlog.open(url) as log:
        found = log.session_ids()
        if found:
            raise SystemExit(f"soak: {url} holds {len(found)} session(s); give it an empty store "
                             "(cleanup would remove old sessions that are not the soak's)")
        for sid in roles.LONG_LIVED:
            log.create_session(sid, participants=["soak"], metadata={"life": "0"})


def report(acked: check.Acked, held: check.Held, verdict: check.Verdict, kills: int, deaths: int,
           seconds: float) -> int:
    # Damage reported by an operation (or a cleanup that gave up on a session) while the
    # store verifies: since issue 13 (item 4), another life of an id is SessionNotFoundError,
    # so a CorruptLogError here is a false report, a bug like any other.
    false_damage = acked.refused["CorruptLogError"] + acked.refused["CleanupError"]
    bad = (len(verdict.lost) + len(held.duplicated) + len(held.damaged)
           + len(verdict.follower_mismatches) + len(acked.untyped) + deaths + false_damage)
    stored = sum(len(events) for events in held.events.values())
    print(f"soak: {seconds:g} s; {verdict.acknowledged} events acknowledged; {kills} workers killed; "
          f"{len(held.events)} sessions, {stored} events in the store; "
          f"{len(held.archived)} sessions archived by cleanup")
    print(f"lost {len(verdict.lost)}, duplicated {len(held.duplicated)}, damaged {len(held.damaged)}, "
          f"follower mismatches {len(verdict.follower_mismatches)} (of {verdict.followed} followed), "
          f"untyped errors {len(acked.untyped)}, workers that died by themselves {deaths}, "
          f"false damage reports {false_damage}")
    refused = ", ".join(f"{kind} {n}" for kind, n in acked.refused.most_common()) or "none"
    print(f"refused with a typed error (not lost): {refused}")
    if false_damage and not held.damaged:
        print(f"  {false_damage} CorruptLogError(s) or CleanupError(s) raised by operations on a "
              "store that verifies: damage reported where there is none (a session deleted and "
              "created again mid-call is SessionNotFoundError: issue 13, item 4)")
    for kind, example in acked.refused_example.items():
        print(f"  e.g. {kind}: {example}")
    for title, items in (("lost", verdict.lost), ("duplicated", held.duplicated),
                         ("damaged", held.damaged), ("follower", verdict.follower_mismatches),
                         ("untyped", acked.untyped)):
        for item in items[:10]:
            print(f"  {title}: {item}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.url.startswith("memory:"):
        print("soak: a memory:// store lives in one process; its workers could not share it",
              file=sys.stderr)
        return 2
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="eventlog-soak-") if temporary else args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    kills = deaths = 0
    wal = WalWatch(args.url)
    if not args.check_only:
        prepare(args.url)
        kills, deaths = run(args.url, work, args.seconds, args.kill_every, random.Random(args.seed),
                            wal)
    acked = check.read_acks(work)
    held = check.read_store(args.url, work / "archive")
    verdict = check.judge(acked, held)
    code = report(acked, held, verdict, kills, deaths, 0 if args.check_only else args.seconds)
    if wal.largest:
        print(f"largest SQLite write-ahead log seen: {wal.largest / 2**20:.1f} MiB")
    if temporary and code == 0:
        shutil.rmtree(work, ignore_errors=True)
    elif code:
        print(f"ack files and archive kept in {work}")
    return code


if __name__ == "__main__":
    sys.exit(main())
