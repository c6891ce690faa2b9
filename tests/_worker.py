"""Worker processes for the multi-process, crash and fault tests (run by tests/_procs.py).

Every line a worker writes to its ack file goes out in one ``os.write`` on an
``O_APPEND`` descriptor, after the call it reports has returned: a line in the
file is proof of an acknowledged write, and a SIGKILL can only lose lines, never
forge one.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Callable

import eventlog


class Acks:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def say(self, *words: object) -> None:
        os.write(self.fd, (" ".join(map(str, words)) + "\n").encode())


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


def stress(url: str, sid: str, worker: str, count: str, mode: str, go: str, ack: str) -> None:
    """Append ``count`` events as fast as possible once ``go`` exists.

    mode ``plain``: append; ``expected``: read the head, append with expected_seq and
    retry on ConflictError; ``batch``: append_many batches of 3 (count rounded up).
    """
    acks = Acks(ack)
    with eventlog.open(url) as log:
        acks.say("ready")
        wait_for(go)
        conflicts = 0
        i = 0
        while i < int(count):
            if mode == "plain":
                event = log.append(sid, "stress.event", {"w": worker, "i": i})
                acks.say("ack", f"{worker}-{i}", event.seq)
                i += 1
            elif mode == "expected":
                last = log.get_session(sid).last_seq
                try:
                    event = log.append(sid, "stress.event", {"w": worker, "i": i}, expected_seq=last)
                except eventlog.ConflictError:
                    conflicts += 1
                    continue
                if event.seq != last + 1:
                    raise AssertionError(f"expected_seq={last} appended at seq {event.seq}")
                acks.say("ack", f"{worker}-{i}", event.seq)
                i += 1
            else:
                events = log.append_many(sid, [("stress.event", {"w": worker, "i": i + k})
                                               for k in range(3)])
                for k, event in enumerate(events):
                    acks.say("ack", f"{worker}-{i + k}", event.seq)
                i += 3
        acks.say("conflicts", conflicts)
        acks.say("done")


def steady(url: str, sid: str, worker: str, count: str, go: str, ack: str,
           kind: str = "event", stop: str = "") -> None:
    """Append ``count`` events once ``go`` exists, through faults: an append that raises
    ``StorageError`` (its fate unknown, or no server for a while) is reported as ``unsure``
    and the next one is tried, so the test knows which events may be stored at most once.
    ``kind`` ``message``: chat messages (content ``<worker>-<i>``), the guarded append;
    ``keyed``: events with the idempotency key ``<worker>-<i>``, the other guarded append;
    ``stop``: a path whose existence ends the run early."""
    acks = Acks(ack)
    with eventlog.open(url) as log:
        acks.say("ready")
        wait_for(go)
        for i in range(int(count)):
            if stop and os.path.exists(stop):
                break
            try:
                if kind == "message":
                    seq = log.add_message(eventlog.ChatMessage(
                        sender=worker, content=f"{worker}-{i}", session_id=sid)).seq
                elif kind == "keyed":
                    seq = log.append(sid, "stress.event", {"w": worker, "i": i},
                                     idempotency_key=f"{worker}-{i}").seq
                else:
                    seq = log.append(sid, "stress.event", {"w": worker, "i": i}).seq
            except eventlog.StorageError:
                acks.say("unsure", f"{worker}-{i}")
                time.sleep(0.05)
                continue
            acks.say("ack", f"{worker}-{i}", seq)
        acks.say("done")


def crash(url: str, sid: str, worker: str, ack: str, durability: str, seed: str) -> None:
    """Append forever (messages, events, batches, now and then a big batch) until killed."""
    rng = random.Random(int(seed))
    acks = Acks(ack)
    log = eventlog.open(url, durability=durability)
    acks.say("ready")
    n = 0
    while True:
        n += 1
        tag = f"{worker}-{n}"
        choice = rng.random()
        if choice < 0.3:
            message = log.add_message(eventlog.ChatMessage(id=tag, sender=worker, content=tag,
                                                           session_id=sid))
            acks.say("ack", tag, message.seq)
        elif choice < 0.6:
            event = log.append(sid, "crash.one", {"tag": tag})
            acks.say("ack", tag, event.seq)
        else:
            # Big batches span many pages, so a kill can cut the write itself.
            size, pad = (32, 1000) if choice > 0.99 else (rng.randint(2, 6), rng.randint(0, 300))
            events = log.append_many(sid, [("crash.batch", {"tag": tag, "k": k, "n": size,
                                                            "pad": "x" * pad})
                                           for k in range(size)])
            acks.say("ack", tag, ",".join(str(e.seq) for e in events))


def churn(url: str, worker: str, ack: str) -> None:
    """Create, write to and delete sessions until killed."""
    acks = Acks(ack)
    log = eventlog.open(url)
    acks.say("ready")
    n = 0
    while True:
        n += 1
        sid = f"{worker}-{n}"
        log.create_session(sid, participants=[worker])
        acks.say("created", sid)
        log.append_many(sid, [("churn", i) for i in range(3)])
        acks.say("appended", sid)
        if n % 3 == 0:
            log.delete_session(f"{worker}-{n - 1}")
            acks.say("deleted", f"{worker}-{n - 1}")


def append_slowly(url: str, sid: str, count: str, delay: str, ack: str) -> None:
    acks = Acks(ack)
    with eventlog.open(url) as log:
        for i in range(int(count)):
            event = log.append(sid, "follow.test", {"i": i})
            acks.say("ack", i, event.seq)
            time.sleep(float(delay))
        acks.say("done")


def follow(url: str, sid: str, after: str, count: str, timeout: str, ack: str) -> None:
    acks = Acks(ack)
    with eventlog.open(url) as log:
        events = log.follow(sid, after_seq=None if after == "none" else int(after),
                            timeout=float(timeout))
        acks.say("ready")
        got = 0
        try:
            for event in events:
                acks.say("event", event.seq, event.type, json.dumps(event.data, separators=(",", ":")))
                got += 1
                if got == int(count):
                    break
        except eventlog.SessionNotFoundError:
            acks.say("gone", got)
            return
        acks.say("done", got)


def fsize(url: str, sid: str, limit: str, batch: str, ack: str) -> None:
    """Append under RLIMIT_FSIZE until the limit bites; report what was acknowledged."""
    acks = Acks(ack)  # opened before the limit, and it stays small
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))
    with eventlog.open(url) as log:
        n = 0
        failures = 0
        while failures < 3:
            n += 1
            try:
                if int(batch) > 1:
                    events = log.append_many(sid, [("fsize.batch", {"n": n, "k": k, "pad": "y" * 700})
                                                   for k in range(int(batch))])
                    acks.say("ack", n, ",".join(str(e.seq) for e in events))
                else:
                    event = log.append(sid, "fsize.one", {"n": n, "pad": "y" * 700})
                    acks.say("ack", n, event.seq)
            except Exception as exc:
                failures += 1
                acks.say("error", type(exc).__name__, getattr(exc, "errno", None),
                         isinstance(exc, eventlog.StorageError))
        acks.say("done")


def _rows(log: eventlog.EventLog) -> dict[str, list[list[object]]]:
    return {sid: [[e.seq, e.type, e.ts, e.data] for e in log.events(sid)]
            for sid in log.session_ids()}


def _archived(directory: str) -> dict[str, list[list[object]]]:
    """The sessions ``cleanup --archive-dir`` wrote into ``directory``, read back through
    ``eventlog import``'s reader (digests and trailer checked)."""
    from pathlib import Path

    from eventlog.cli._terminal import Progress
    from eventlog.cli._transfer import _ExportReader

    found: dict[str, list[list[object]]] = {}
    for path in sorted(Path(directory).glob("*.jsonl")) if os.path.isdir(directory) else []:
        with path.open("rb") as stream, Progress("reading", None) as progress, \
                eventlog.open("memory://") as memory:
            reader = _ExportReader(str(path), stream, progress)
            assert reader.session_id is not None
            memory.import_events(reader.session_id, reader.events())
            found[path.stem] = _rows(memory)[reader.session_id]
    return found


def reader() -> None:
    """A fresh process's view of stores, on request: reads JSON lines ``{"url", "copy",
    "archive", "append"}`` on stdin; answers each with one JSON line holding every session's
    events (``sessions``; ``copied`` for the ``copy`` URL; ``archived`` for an archive
    directory), ``verify``'s problems, and with ``append``, the seq an append to that
    session got afterwards (and verify's problems after it). Each request opens the stores
    anew, so nothing carries over from one to the next."""
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, object] = {}
        try:
            with eventlog.open(request["url"]) as log:
                answer["sessions"] = _rows(log)
                answer["problems"] = log.verify().problems
                if request.get("append"):
                    answer["appended"] = log.append(request["append"], "after.fault", 1).seq
                    answer["problems_after"] = log.verify().problems
            if request.get("copy"):
                with eventlog.open(request["copy"]) as copy:
                    answer["copied"] = _rows(copy)
                    answer["copy_problems"] = copy.verify().problems
            if request.get("archive"):
                answer["archived"] = _archived(request["archive"])
        except Exception as exc:  # reported to the test, which fails on it
            answer["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(answer), flush=True)


def spawner() -> None:
    """Fork workers on request, each ready in milliseconds (a new interpreter takes a good part
    of a second on a busy machine). Reads ``start CMD ARGS...`` (answers the child's pid) and
    ``kill PID`` (SIGKILLs and reaps it, answers ``dead``) on stdin. The spawner itself never
    opens a store, so each child starts clean."""
    for line in sys.stdin:
        words = line.split()
        if words[0] == "start":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    COMMANDS[words[1]](*words[2:])
                    code = 0
                finally:
                    os._exit(code)
            print(pid, flush=True)
        else:
            os.kill(int(words[1]), signal.SIGKILL)
            os.waitpid(int(words[1]), 0)
            print("dead", flush=True)


COMMANDS: dict[str, Callable[..., None]] = {
    "stress": stress, "crash": crash, "churn": churn, "append-slowly": append_slowly,
    "follow": follow, "fsize": fsize, "spawner": spawner, "reader": reader, "steady": steady,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
