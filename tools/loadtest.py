"""Load test of ``eventlog serve``: concurrent HTTP writers on one session, live SSE listeners.

    python tools/loadtest.py                      # starts its own server on a temporary store
    python tools/loadtest.py --clients 8 --messages 250 --listeners 2
    python tools/loadtest.py --url http://127.0.0.1:8765 --token-file ~/.config/eventlog/token

Each client posts ``--messages`` messages, one request each, to the same session. Each
listener follows the session's SSE stream from its creation. It reports requests per second
and latency percentiles, and checks that every listener saw every message exactly once, in
seq order with no gap, and each client's messages in the order it posted them. Exits 1 if a
check fails. Traffic goes only to the server named (loopback by default); every loop is bounded.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Listener:
    seqs: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def listen(url: str, sid: str, expected: int, listener: Listener, deadline: float) -> None:
    try:
        with httpx.Client(timeout=httpx.Timeout(10, read=30)) as client, client.stream(
                "GET", f"{url}/api/sessions/{sid}/stream", params={"after_seq": 1}) as response:
            response.raise_for_status()
            data: list[str] = []
            for line in response.iter_lines():
                listener.connected.set()
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    event = orjson.loads("\n".join(data))
                    data = []
                    listener.seqs.append(event["seq"])
                    listener.ids.append(event["data"]["id"])
                    if len(listener.seqs) >= expected or time.monotonic() > deadline:
                        return
    except Exception as exc:  # reported, and fails the run
        listener.error = f"{type(exc).__name__}: {exc}"
    finally:
        listener.connected.set()


def post(url: str, sid: str, token: str, client_no: int, count: int, sent: list[str],
         latencies: list[float], errors: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, headers=headers) as client:
        for n in range(count):
            message_id = f"c{client_no}-{n}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            r = client.post(f"{url}/api/sessions/{sid}/messages",
                            json={"id": message_id, "sender": f"client-{client_no}",
                                  "content": f"message {n} from client {client_no}"})
            latencies.append(time.perf_counter() - started)
            if r.status_code != 201:
                errors.append(f"client {client_no}: {r.status_code} {r.text[:200]}")
                return
            sent.append(message_id)


def start_server(store: str, token: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, EVENTLOG_TOKEN=token,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "eventlog.server", "--store", store, "--port", "0",
                             "--log-level", "warning"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"at (http://\S+)/ ", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, match.group(1)
        if not line:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(url: str, token: str, clients: int, messages: int, listeners: int) -> bool:
    sid = "load-" + uuid.uuid4().hex[:10]
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{url}/api/sessions", json={"session_id": sid},
                        headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
    total = clients * messages
    deadline = time.monotonic() + 300
    watchers = [Listener() for _ in range(listeners)]
    listen_threads = [threading.Thread(target=listen, args=(url, sid, total, w, deadline)) for w in watchers]
    for t in listen_threads:
        t.start()
    for w in watchers:
        w.connected.wait(30)

    sent: list[list[str]] = [[] for _ in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    posters = [threading.Thread(target=post, args=(url, sid, token, n, messages, sent[n], latencies, errors))
               for n in range(clients)]
    started = time.perf_counter()
    for t in posters:
        t.start()
    for t in posters:
        t.join()
    elapsed = time.perf_counter() - started
    for t in listen_threads:
        t.join(max(1.0, deadline - time.monotonic()))
    delivered = time.perf_counter() - started

    ok = not errors
    print(f"session {sid}: {clients} clients x {messages} messages = {total} POSTs, "
          f"{listeners} SSE listeners")
    print(f"posted in {elapsed:.2f} s: {len(latencies) / elapsed:.0f} requests/s")
    if latencies:
        p50, p95, p99, top = (1000 * v for v in (statistics.median(latencies), percentile(latencies, 0.95),
                                                 percentile(latencies, 0.99), max(latencies)))
        print(f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {top:.1f}")
    print(f"every listener had every event {delivered - elapsed:.2f} s after the last POST returned")
    for error in errors[:5]:
        print("POST failed:", error)
    everything = {m for client_ids in sent for m in client_ids}
    for n, w in enumerate(watchers):
        in_order = w.seqs == list(range(2, 2 + total))
        once = len(w.ids) == len(set(w.ids)) and set(w.ids) == everything
        per_client = all([m for m in w.ids if m.startswith(f"c{c}-")] == sent[c] for c in range(clients))
        good = in_order and once and per_client and w.error is None and len(w.seqs) == total
        ok = ok and good
        print(f"listener {n + 1}: {len(w.seqs)} events, seqs 2..{1 + total} in order without gaps: "
              f"{in_order}, each message once: {once}, each client's in its order: {per_client}"
              + (f", error: {w.error}" if w.error else ""))
    with httpx.Client(timeout=120) as client:
        session = client.get(f"{url}/api/sessions/{sid}").json()
        report = client.get(f"{url}/api/sessions/{sid}/verify").json()
    final = session["last_seq"] == total + 1 and session["message_count"] == total and report["ok"]
    print(f"session afterwards: last_seq {session['last_seq']}, {session['message_count']} messages, "
          f"verify ok: {report['ok']}")
    ok = ok and final
    print("PASS" if ok else "FAIL")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start one on a temporary store)")
    parser.add_argument("--token-file", help="the server's token file (with --url; else EVENTLOG_TOKEN)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=250, help="messages per client")
    parser.add_argument("--listeners", type=int, default=2)
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 64 and 1 <= args.messages <= 10_000 and 0 <= args.listeners <= 16):
        parser.error("keep it bounded: 1-64 clients, 1-10000 messages each, 0-16 listeners")
    if args.url:
        token = (Path(args.token_file).read_text().strip() if args.token_file
                 else os.environ.get("EVENTLOG_TOKEN", ""))
        return 0 if run(args.url.rstrip("/"), token, args.clients, args.messages, args.listeners) else 1
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as store:
        proc, url = start_server(store, token)
        try:
            return 0 if run(url, token, args.clients, args.messages, args.listeners) else 1
        finally:
            proc.send_signal(2)
            proc.wait(15)


if __name__ == "__main__":
    sys.exit(main())
